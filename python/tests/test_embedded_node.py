"""The embedded node (a ``kvasir serve`` child, kvasir/_embedded.py) lives as long as the process that made it, not as
long as the thread: PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, and engines often build their
connector (and so the store and its node) on a worker thread that finishes long before the engine does."""

import threading
import time

from kvasir import KvStore
from kvasir.cluster import EmbeddedNode


def test_an_embedded_node_made_on_a_thread_that_ends_outlives_that_thread(cli):
    made, failed = [], []

    def make():
        try:
            made.append(EmbeddedNode("32MiB", "127.0.0.1:0", None, None, "default", None))
        except BaseException as ex:   # noqa: BLE001 - reported below
            failed.append(ex)

    t = threading.Thread(target=make)
    t.start()
    t.join(60)
    assert not failed, failed
    node = made[0]
    try:
        time.sleep(1.0)   # the parent-death signal, had it been armed by that thread, has arrived by now
        assert node.proc.poll() is None, f"the node exited ({node.proc.returncode}) when the thread that made it ended"
        with KvStore(node.addr, transport="tcp") as store:
            assert store.put("alive", b"yes") == 0
            assert store.get("alive") == b"yes"
    finally:
        node.close()
    assert node.proc.poll() is not None


def test_an_embedded_node_is_still_stopped_when_its_process_dies(cli, tmp_path):
    import subprocess
    import sys
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from kvasir.cluster import EmbeddedNode;"
        "n = EmbeddedNode('32MiB', '127.0.0.1:0', None, None, 'default', None);"
        "print(n.proc.pid, flush=True); time.sleep(120)"), root], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(child.stdout.readline())
        child.kill()
        child.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    break   # exited, not yet reaped by init
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            raise AssertionError("the embedded node outlived the process that made it")
    finally:
        if child.poll() is None:
            child.kill()
