"""A transfer engine's shared-memory files (docs/transfer.md § Same host shared memory) outlive no engine: the files
of a process killed outright (SIGKILL, the OOM killer: no cleanup runs) are removed by the next engine that makes
one on the host, and the files of a live engine, or of one merely stopped, are never removed."""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kvasir.transfer import Engine
from kvasir.transfer._shm import SHM_DIR, SharedFile, remove_dead_files

pytestmark = pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="needs /dev/shm")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A child that allocates one shared region, prints its file's path, and waits to be killed.
CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from kvasir.transfer import Engine
    e = Engine("lo", 1, 1, 0)
    ok, mr, buf = e.alloc_shared(1 << 20)
    assert ok, e.last_error
    import glob, os
    mine = [p for p in glob.glob("/dev/shm/kvasir-xfer-*") if f"-{os.getpid()}-" in p]
    print(mine[0], flush=True)
    time.sleep(120)
""")


def _child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD, ROOT], stdout=subprocess.PIPE, text=True)
    path = proc.stdout.readline().strip()
    assert path.startswith(SHM_DIR + "/kvasir-xfer-"), path
    assert os.path.exists(path)
    return proc, path


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_the_files_of_an_engine_killed_outright_are_removed_by_the_next_engine_that_makes_one():
    proc, path = _child()
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert os.path.exists(path), "the killed engine's file is there until someone removes it"
        with Engine("lo", 1, 1, 0) as e:
            ok, _, _ = e.alloc_shared(4096)
            assert ok, e.last_error
            assert not os.path.exists(path), "a new engine's first shared file did not remove the dead engine's"
    finally:
        _stop(proc)


def test_the_files_of_a_live_or_stopped_engine_are_never_removed():
    proc, path = _child()
    try:
        assert remove_dead_files() >= 0
        assert os.path.exists(path), "a live engine's file was removed"
        proc.send_signal(signal.SIGSTOP)
        try:
            assert remove_dead_files() >= 0
            assert os.path.exists(path), "a stopped engine's file was removed"
        finally:
            proc.send_signal(signal.SIGCONT)
    finally:
        _stop(proc)
    assert remove_dead_files() >= 1 or not os.path.exists(path)
    assert not os.path.exists(path)


def test_a_file_being_made_is_never_seen_unlocked_and_a_closed_one_leaves_nothing():
    f = SharedFile(8192, b"\x01" * 16, 7)
    try:
        assert os.path.exists(f.path)
        assert remove_dead_files() >= 0
        assert os.path.exists(f.path), "a file this process holds was removed"
        assert not glob.glob(os.path.join(SHM_DIR, ".kvasir-xfer-*")), "a temporary name was left behind"
    finally:
        f.close()
    assert not os.path.exists(f.path)
    assert f._fd == -1, "the lock file descriptor outlived the file"
