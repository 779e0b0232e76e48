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
