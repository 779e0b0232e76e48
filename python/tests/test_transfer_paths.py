"""Lane socket buffers chosen by the path (kvasir.transfer._paths, docs/transfer.md § Threads): two real engines on
127.0.0.1; 512 KiB on a short path (loopback or a round trip of <= 100 us), the kernel's autotuning elsewhere (the
1 ms link is in test_transfer_netns.py), 0 = autotuning everywhere, a size = fixed."""

import socket
import sys

import numpy as np
import pytest

from kvasir.transfer import Engine, _paths
from transfer_helpers import connected, random_bytes

LINUX = sys.platform.startswith("linux")


def _kernel_buffers(engine, conn_id):
    return [(lane.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
             lane.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)) for lane in engine._session(conn_id).lanes]


def _move(a, b, ca, cb, size=5 << 20):
    src = random_bytes(size, 5)
    dst = np.zeros(size, dtype=np.uint8)
    _, smr = a.reg(src)
    _, dmr = b.reg(dst)
    _, blob = b.advertise(cb, dmr, dst.ctypes.data, size)
    assert a.write(ca, smr, src.ctypes.data, size, blob), a.last_error
    assert np.array_equal(src, dst)


def test_by_default_every_loopback_lane_on_both_sides_gets_512KiB():
    with Engine("lo", 2, 2, 0) as a, Engine("lo", 2, 2, 0) as b:
        ca, cb = connected(a, b)
        _move(a, b, ca, cb)
        for engine, conn in ((a, ca), (b, cb)):
            assert engine._session(conn).socket_buffers == [_paths.SHORT_PATH_BYTES] * 4
            doubled = 2 * _paths.SHORT_PATH_BYTES if LINUX else _paths.SHORT_PATH_BYTES
            assert _kernel_buffers(engine, conn) == [(doubled, doubled)] * 4


def test_socket_buffer_0_leaves_every_lane_to_the_kernel_and_a_size_fixes_every_lane():
    with Engine("lo", 1, 2, 0, socket_buffer=0) as a, Engine("lo", 1, 2, 0, socket_buffer=0) as b:
        ca, cb = connected(a, b)
        assert a._session(ca).socket_buffers == [None, None] and b._session(cb).socket_buffers == [None, None]
        locked = 2 * _paths.SHORT_PATH_BYTES if LINUX else _paths.SHORT_PATH_BYTES
        assert all(k != (locked, locked) for k in _kernel_buffers(a, ca) + _kernel_buffers(b, cb))
        _move(a, b, ca, cb)
    with Engine("lo", 1, 2, 0, socket_buffer=256 << 10) as a, Engine("lo", 1, 2, 0, socket_buffer=256 << 10) as b:
        ca, cb = connected(a, b)
        _move(a, b, ca, cb)
        fixed = 2 * (256 << 10) if LINUX else 256 << 10
        assert _kernel_buffers(a, ca) == [(fixed, fixed)] * 2 and _kernel_buffers(b, cb) == [(fixed, fixed)] * 2


@pytest.mark.parametrize("bad", [1, (64 << 10) - 1, (256 << 20) + 1, -1])
def test_a_socket_buffer_outside_64KiB_to_256MiB_is_refused_naming_the_range(bad):
    with pytest.raises(ValueError, match="64 KiB..256 MiB"):
        Engine("lo", 1, 1, 0, socket_buffer=bad)


@pytest.mark.parametrize("loopback, rtt, expected", [
    (True, None, _paths.SHORT_PATH_BYTES), (True, 5000, _paths.SHORT_PATH_BYTES),
    (False, 30, _paths.SHORT_PATH_BYTES), (False, 100, _paths.SHORT_PATH_BYTES),
    (False, 101, None), (False, 1000, None), (False, 0, None), (False, None, None)])
def test_the_short_path_rule_takes_loopback_and_round_trips_up_to_100us(loopback, rtt, expected):
    assert _paths.choose(loopback, rtt) == expected


def test_the_kernel_reports_a_connected_sockets_round_trip():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            client.sendall(b"x" * 100)
            assert len(server.recv(100)) > 0
            rtt = _paths.round_trip_micros(client)
            if not LINUX:
                assert rtt is None
                return
            assert rtt is not None and 1 <= rtt <= 1_000_000
