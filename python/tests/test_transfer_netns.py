"""Two engines in two network namespaces (one side a peer process started with `ip netns exec`) joined by a veth
pair, and by a link delayed 1 ms each way: netem on the veth pair where the kernel has sch_netem, else the tun delay
line of delay_line.py (this CI machine's kernel has no netem). Needs root and network namespaces; the namespace and
the links are created and removed by the test."""

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kvasir.transfer import Engine, _paths
from delay_line import DelayLine, VethPair
from transfer_helpers import Peer, pattern, random_bytes, wait_notif

MiB = 1 << 20


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise AssertionError(f"ip {' '.join(args)} failed: {r.stderr.strip()}")
    return r


@pytest.fixture
def namespace():
    """A fresh network namespace's name; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    ns = f"kvx-{os.getpid() % 100000}"
    made = _ip("netns", "add", ns, check=False)
    if made.returncode:
        pytest.skip(f"this machine forbids network namespaces: ip netns add: {made.stderr.strip()}")
    try:
        yield ns
    finally:
        _ip("netns", "del", ns, check=False)


@contextlib.contextmanager
def _veth(ns, delay_ms=0):
    """(host-side interface, host address, namespace address) of a veth pair into ``ns``, with netem ``delay_ms``
    each way when asked (None when this kernel has no sch_netem); removed afterwards."""
    tag = f"{os.getpid() % 100000}"
    pair = VethPair(ns, f"kvxh{tag}", f"kvxn{tag}", "10.231.77", delay_ms)
    try:
        yield None if delay_ms and not pair.delayed else (pair.host_if, pair.host_ip, pair.ns_ip)
    finally:
        pair.close()


@contextlib.contextmanager
def _link(ns, delayed):
    """The veth pair, or a link delayed 1 ms each way: netem on the veth pair, else the tun delay line."""
    if not delayed:
        with _veth(ns) as link:
            yield link
        return
    with _veth(ns, delay_ms=1) as link:
        if link is not None:
            yield link
            return
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no sch_netem and no /dev/net/tun: no way to delay a link on this machine")
    with DelayLine(ns, delay_ms=1.0) as line:
        yield line.host_if, line.host_ip, line.ns_ip


@pytest.mark.parametrize("delay", [False, True], ids=["veth", "delayed-1ms"])
def test_engines_in_two_namespaces_transfer_byte_exact_across_the_link(namespace, delay):
    with _link(namespace, delay) as (host_if, host_ip, ns_ip):
        _exchange(namespace, host_if, host_ip, ns_ip, delay)


def _exchange(ns, host_if, host_ip, ns_ip, delay):
    peer = Peer("python", "--host", ns_ip, "--region-bytes", str(32 * MiB), netns=ns)
    try:
        with Engine(host_if, 2, 2, 0) as eng:       # an interface name, resolved to its address
            assert eng.ip == host_ip
            ok, conn = eng.add_remote_endpoint(peer.metadata)
            assert ok, eng.last_error
            if delay:   # a 2 ms round trip is no short path: the lanes keep the kernel's autotuning (_paths.py)
                assert eng._session(conn).socket_buffers == [None] * 4
                # The link is as slow as it claims: a delay short of it (0.2 ms each way) still passes the check above.
                rtts = [_paths.round_trip_micros(lane.sock) for lane in eng._session(conn).lanes]
                assert all(r is not None and r >= 1800 for r in rtts), f"the lanes' round trips are {rtts} us, not >= 2 ms"
            _, note = wait_notif(eng, "the peer's advertisement")
            blob = note[len(b"advert:"):]
            src = random_bytes(32 * MiB, 11)
            _, mr = eng.reg(src)
            assert eng.write(conn, mr, src, src.nbytes, blob), eng.last_error
            eng.send_notif(conn, f"sha:0:{src.nbytes}".encode())
            _, sha = wait_notif(eng, "the peer's sha", timeout=60)
            assert sha == b"sha:" + hashlib.sha256(src.tobytes()).hexdigest().encode()
            mine = np.zeros(8 * MiB, dtype=np.uint8)
            _, mmr = eng.reg(mine)
            _, my_blob = eng.advertise(conn, mmr, mine.ctypes.data, mine.nbytes)
            eng.send_notif(conn, f"fill:{mine.nbytes}:3|".encode() + my_blob)
            assert wait_notif(eng, "filled", timeout=60)[1] == f"filled:{mine.nbytes}".encode()
            assert np.array_equal(mine, pattern(mine.nbytes, 3))
            eng.send_notif(conn, b"bye")
            peer.event("bye")
            assert peer.proc.wait(timeout=20) == 0
    finally:
        peer.stop()


def test_the_delay_lines_forwarder_and_devices_go_when_the_process_that_made_it_is_killed(namespace):
    """A test killed outright (SIGKILL, an OOM kill) runs no cleanup: the forwarder must not outlive it holding the tun
    devices (and the namespace, which a device inside keeps alive after ``ip netns del``). Before, it forwarded on."""
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun")
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys, time; sys.path.insert(0, {here!r}); from delay_line import DelayLine\n"
            f"line = DelayLine({namespace!r}, 1.0, tag='k1', subnet='10.231.81').__enter__()\n"
            "print(line._proc.pid, flush=True); time.sleep(120)")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    forwarder = None
    try:
        forwarder = int(owner.stdout.readline())
        assert os.path.exists("/sys/class/net/kvdhk1")
        owner.kill()
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (_alive(forwarder) or os.path.exists("/sys/class/net/kvdhk1")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(forwarder), "the forwarder outlived the process that made it"
        assert not os.path.exists("/sys/class/net/kvdhk1")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
        owner.stdout.close()
        if forwarder is not None and _alive(forwarder):
            os.kill(forwarder, signal.SIGKILL)


def _alive(pid):
    """Whether process ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
