"""Two engines in two network namespaces joined by a veth pair (one side a peer process started with
`ip netns exec`), with and without a 1 ms netem delay on the link. Needs root and network namespaces;
the namespace and the link are created and removed by the test."""

import hashlib
import os
import subprocess

import numpy as np
import pytest

from kvasir.transfer import Engine
from transfer_helpers import Peer, pattern, random_bytes, wait_notif

MiB = 1 << 20


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise AssertionError(f"ip {' '.join(args)} failed: {r.stderr.strip()}")
    return r


@pytest.fixture
def link():
    """(namespace, host-side interface, host address, namespace address); removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"kvx-{tag}", f"kvxh{tag}", f"kvxn{tag}"
    made = _ip("netns", "add", ns, check=False)
    if made.returncode:
        pytest.skip(f"this machine forbids network namespaces: ip netns add: {made.stderr.strip()}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", "10.231.77.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", "10.231.77.2/24", "dev", ns_if)
        _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, host_if, "10.231.77.1", "10.231.77.2"
    finally:
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", ns, check=False)


def _delay(ns, host_if):
    """netem 1 ms each way on the veth pair; skips where the kernel has no sch_netem."""
    r = subprocess.run(["tc", "qdisc", "add", "dev", host_if, "root", "netem", "delay", "1ms"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode:
        pytest.skip(f"tc netem is not available on this kernel: {r.stderr.strip()}")
    ns_if = host_if.replace("kvxh", "kvxn")
    _ip("netns", "exec", ns, "tc", "qdisc", "add", "dev", ns_if, "root", "netem", "delay", "1ms")


@pytest.mark.parametrize("delay", [False, True], ids=["veth", "veth-netem-1ms"])
def test_engines_in_two_namespaces_transfer_byte_exact_across_the_link(link, delay):
    ns, host_if, host_ip, ns_ip = link
    if delay:
        _delay(ns, host_if)
    peer = Peer("python", "--host", ns_ip, "--region-bytes", str(32 * MiB), netns=ns)
    try:
        with Engine(host_if, 2, 2, 0) as eng:       # an interface name, resolved to its address
            assert eng.ip == host_ip
            ok, conn = eng.add_remote_endpoint(peer.metadata)
            assert ok, eng.last_error
            if delay:   # a 2 ms round trip is no short path: the lanes keep the kernel's autotuning (_paths.py)
                assert eng._session(conn).socket_buffers == [None] * 4
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
