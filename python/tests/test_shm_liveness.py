"""Two nodes on one host, the second in its own PID namespace (unshare --pid) but sharing /dev/shm, as a node in a
container with a shared IPC namespace or an engine sidecar: the second node's start must not delete the first
node's arena (it cannot see the first node's process, only the flock the first node holds on its arena's lock
file), and a same-host client of the first node keeps moving bytes through shared memory."""
import glob
import os
import signal
import subprocess

import pytest

from conftest import Node, wait_until

UNSHARE = ["unshare", "--pid", "--mount-proc", "--kill-child=SIGTERM"]


def unshare_allowed():
    try:
        r = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare could not run ({e})"
    return None if r.returncode == 0 else f"unshare --pid is not permitted here: {r.stderr.strip()}"


def arenas():
    return set(glob.glob("/dev/shm/kvasir-*.arena"))


@pytest.fixture
def first_node(cli):
    n = Node("--memory", "32MiB", "--shm", "on")
    yield n
    n.stop()


def test_a_node_in_another_pid_namespace_leaves_a_live_nodes_arena_alone(first_node):
    why = unshare_allowed()
    if why:
        pytest.skip(why)
    from kvasir import KvStore
    mine = [a for a in arenas() if a.startswith(f"/dev/shm/kvasir-{first_node.proc.pid}-")]
    assert len(mine) == 1, f"the first node's arena: {sorted(arenas())}"
    arena = mine[0]
    with KvStore(first_node.address, transport="shm", request_timeout=10) as s:
        assert s.put("before", b"x" * 65536) == 0
        before = arenas()
        other = Node("--memory", "32MiB", "--shm", "on", wrap=UNSHARE)   # its start sweeps /dev/shm
        try:
            assert os.path.exists(arena), "the node in the other PID namespace deleted the first node's arena"
            assert os.path.exists(arena + ".token") and os.path.exists(arena + ".lock")
            theirs = {a for a in arenas() - before if a.startswith("/dev/shm/kvasir-1-")}   # pid 1 in its namespace
            assert len(theirs) == 1, "the second node has no arena of its own"
            assert s.put("after", b"y" * 65536) == 0
            assert s.get("before") == b"x" * 65536 and s.get("after") == b"y" * 65536
            assert s.transport == "shm"
        finally:
            other.stop()
        # unshare exits at SIGTERM and passes it on to the node, which then stops cleanly and removes its files
        wait_until(lambda: not (arenas() & theirs), "the second node to remove its arena at its clean stop")
    assert os.path.exists(arena)


def test_a_killed_nodes_arena_is_removed_by_the_next_node_to_start_and_a_live_nodes_is_kept(cli):
    # SIGKILL runs nothing in the process: its arena, token and lock file stay in /dev/shm (tmpfs: memory) until a node
    # starting on this host finds the lock unheld and removes them; a live node's files, lock held, stay.
    def own_arena(n):
        mine = [a for a in arenas() if a.startswith(f"/dev/shm/kvasir-{n.proc.pid}-")]
        assert len(mine) == 1, f"node {n.proc.pid}'s arena: {sorted(arenas())}"
        return mine[0]

    live = Node("--memory", "16MiB", "--shm", "on")
    killed = Node("--memory", "16MiB", "--shm", "on")
    try:
        live_arena, dead_arena = own_arena(live), own_arena(killed)
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait(timeout=10)
        assert all(os.path.exists(dead_arena + s) for s in ("", ".token", ".lock")), "SIGKILL cleaned up after all?"
        following = Node("--memory", "16MiB", "--shm", "on")   # its start sweeps /dev/shm
        try:
            left = [dead_arena + s for s in ("", ".token", ".lock") if os.path.exists(dead_arena + s)]
            assert not left, f"the killed node's files survived the next start: {left}"
            assert all(os.path.exists(live_arena + s) for s in ("", ".token", ".lock")), "a live node's files were removed"
            assert own_arena(following) != live_arena
        finally:
            following.stop()
    finally:
        live.stop()
        killed.stop()


# -- a client lets go of a dead node's arena (docs/operations.md § Shared-memory arena files) --

def _arena_of(n):
    mine = [a for a in arenas() if a.startswith(f"/dev/shm/kvasir-{n.proc.pid}-")]
    assert len(mine) == 1, f"node {n.proc.pid}'s arena: {sorted(arenas())}"
    return mine[0]


def _files_of(arena):
    return [arena + s for s in ("", ".token", ".lock") if os.path.exists(arena + s)]


def _mapped(arena):
    """Whether this process maps ``arena`` (a deleted file shows in /proc/self/maps as "PATH (deleted)")."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        return any(arena in line for line in f)


def _remove_leftovers(arena):
    for f in _files_of(arena):
        os.unlink(f)


def test_a_client_that_finds_its_node_killed_unmaps_the_arena_and_removes_the_dead_nodes_files(cli):
    # SIGKILL runs nothing in the node: its arena stays in /dev/shm (memory), and deleting the file would free nothing
    # while this client maps it. The client that finds the node gone unmaps the arena and removes the files.
    from kvasir import KvStore, errors as E
    node = Node("--memory", "32MiB", "--shm", "on")
    arena = _arena_of(node)
    try:
        with KvStore(node.address, transport="shm", connect_timeout=2, request_timeout=5) as s:
            assert s.put("a", b"x" * 70000) == 0
            assert s.get("a") == b"x" * 70000
            assert _mapped(arena), "the client maps the node's arena"
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(timeout=10)
            assert len(_files_of(arena)) == 3, "SIGKILL cleaned up after all?"
            codes = []

            def let_go():
                codes.append(s.put("b", b"y" * 70000))   # fails: the connection broke, then no reconnect
                return not _files_of(arena) and not _mapped(arena)
            wait_until(let_go, "the client to unmap the killed node's arena and remove its files")
            assert all(c in (E.UNAVAILABLE, E.TIMEOUT) for c in codes), codes
    finally:
        node.stop()
        _remove_leftovers(arena)


def test_a_client_whose_node_is_only_stopped_keeps_its_arena_and_uses_it_again_once_the_node_resumes(cli):
    # SIGSTOP: the node holds its arena's lock but answers nothing (requests time out, reconnects fail), as a node that
    # is merely slow. Its files stay, and so does the client's mapping.
    from kvasir import KvStore, errors as E
    node = Node("--memory", "32MiB", "--shm", "on")
    arena = _arena_of(node)
    try:
        with KvStore(node.address, transport="shm", connect_timeout=1, request_timeout=1) as s:
            assert s.put("a", b"x" * 70000) == 0
            node.proc.send_signal(signal.SIGSTOP)
            try:
                codes = []

                def unreachable():
                    codes.append(s.put("b", b"y" * 70000))
                    return codes[-1] == E.UNAVAILABLE   # a reconnect failed (after the first put's timeout)
                wait_until(unreachable, "a put that finds the stopped node unreachable", timeout=30)
                assert len(_files_of(arena)) == 3, "a live node's files were removed"
                assert _mapped(arena), "the client unmapped a live node's arena"
            finally:
                node.proc.send_signal(signal.SIGCONT)
            wait_until(lambda: s.put("c", b"z" * 70000) == 0, "a put through the resumed node")
            assert s.get("a") == b"x" * 70000 and s.transport == "shm"
            assert len(_files_of(arena)) == 3
    finally:
        node.proc.send_signal(signal.SIGCONT)
        node.stop()
    assert not _files_of(arena), "the node's clean stop left files"


def test_a_client_of_a_node_killed_and_started_again_on_its_port_keeps_the_new_nodes_arena(cli):
    # The restarted node (same address, new arena) is live: the client lets go of the old arena only.
    from kvasir import KvStore
    first = Node("--memory", "16MiB", "--shm", "on")
    old = _arena_of(first)
    second = None
    try:
        with KvStore(first.address, transport="shm", connect_timeout=2, request_timeout=5) as s:
            assert s.put("a", b"x" * 70000) == 0
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
            second = Node("--memory", "16MiB", "--shm", "on", port=first.port)   # its start removes the old files
            new = _arena_of(second)
            wait_until(lambda: s.put("b", b"y" * 70000) == 0, "a put through the restarted node")
            assert s.transport == "shm" and s.get("b") == b"y" * 70000
            assert not _mapped(old), "the client still maps the killed node's arena"
            assert _mapped(new) and len(_files_of(new)) == 3
            assert not _files_of(old)
        assert len(_files_of(new)) == 3, "closing the client removed a live node's arena"
    finally:
        first.stop()
        if second is not None:
            second.stop()
        _remove_leftovers(old)


def test_the_rule_leaves_a_held_arena_removes_it_once_the_lock_is_free_and_then_finds_it_absent(tmp_path):
    # kvasir.arena_files.try_remove_if_dead, lock by lock: a flock held on the lock file (another open file, as the node's
    # is) means live; once it is dropped the files go; a lock file that is gone (or never was) means absent, nothing removed.
    import fcntl
    from kvasir import arena_files
    arena = str(tmp_path / "kvasir-4999999-rule.arena")
    for suffix, data in (("", b"\0" * 4096), (".token", b"t" * 16), (".lock", b"")):
        with open(arena + suffix, "wb") as f:
            f.write(data)
    holder = os.open(arena + ".lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert arena_files.try_remove_if_dead(arena) == arena_files.LIVE
        assert len(_files_of(arena)) == 3, "a live node's files were touched"
    finally:
        os.close(holder)   # as the kernel does for a killed node: the lock goes, the files stay
    assert arena_files.try_remove_if_dead(arena) == arena_files.REMOVED
    assert not _files_of(arena)
    assert arena_files.try_remove_if_dead(arena) == arena_files.ABSENT
    with open(arena, "wb") as f:   # an arena without a lock file (a node too old to take one) is never removed
        f.write(b"\0")
    assert arena_files.try_remove_if_dead(arena) == arena_files.ABSENT
    assert os.path.exists(arena)


def test_a_node_run_with_dotnet_file_locking_switched_off_still_holds_its_arena_lock(cli):
    # DOTNET_SYSTEM_IO_DISABLEFILELOCKING=1 turns off the flock .NET's FileShare takes. The liveness lock is taken with
    # flock directly, so such a node's arena still looks live: to this process's flock (Python's, the same lock) and to
    # every other node's sweep and client. Before, such a node held no lock, and the next node to start removed its arena.
    from kvasir import arena_files
    node = Node("--memory", "16MiB", "--shm", "on", env={"DOTNET_SYSTEM_IO_DISABLEFILELOCKING": "1"})
    try:
        arena = _arena_of(node)
        assert arena_files.try_remove_if_dead(arena) == arena_files.LIVE
        assert len(_files_of(arena)) == 3
    finally:
        node.stop()
    assert not _files_of(arena)
