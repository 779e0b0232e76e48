"""The Python engine drives the scripted interop peer (docs/transfer.md § Interop peer) in a separate
process: Python's (`python -m kvasir.transfer.peer`) and .NET's (`kvasir transfer-peer`), so each
engine is checked against the other byte for byte, including a peer killed mid-transfer."""

import hashlib
import signal

import numpy as np
import pytest

from kvasir.transfer import Engine
from transfer_helpers import KEY, OTHER_KEY, Peer, pattern, poll_until_done, random_bytes, wait_notif

MiB = 1 << 20


@pytest.fixture(params=["python", "dotnet"])
def peer_kind(request):
    if request.param == "dotnet":
        request.getfixturevalue("cli")   # builds the CLI, as the node tests do
    return request.param


@pytest.fixture
def peers(peer_kind):
    started = []

    def start(*args, **kw):
        p = Peer(peer_kind, *args, **kw)
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


class Driver:
    """An engine connected to one peer, holding the peer's advertisement of its region."""

    def __init__(self, engine: Engine, peer: Peer):
        self.engine = engine
        self.peer = peer
        ok, self.conn = engine.add_remote_endpoint(peer.metadata)
        assert ok, engine.last_error
        peer.event("accepted")
        conn, note = wait_notif(engine, "the peer's advert: notification")
        assert conn == self.conn and note.startswith(b"advert:")
        self.blob = note[len(b"advert:"):]

    def notify(self, msg: bytes) -> None:
        assert self.engine.send_notif(self.conn, msg), self.engine.last_error

    def ask(self, msg: bytes, what: str) -> bytes:
        self.notify(msg)
        conn, note = wait_notif(self.engine, what, timeout=60)
        assert conn == self.conn
        return note

    def peer_sha(self, off: int, length: int) -> str:
        note = self.ask(f"sha:{off}:{length}".encode(), "the peer's sha")
        assert note.startswith(b"sha:")
        return note[4:].decode()

    def bye(self) -> None:
        self.notify(b"bye")
        self.peer.event("bye")
        assert self.peer.proc.wait(timeout=20) == 0


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_driver_and_peer_move_bytes_both_ways_exactly(peers):
    region = 8 * MiB
    peer = peers("--region-bytes", str(region), "--ncpus", "2", "--nconn-per-cpu", "2", "--slice-bytes", str(MiB))
    with Engine("lo", 1, 3, 0, slice_bytes=256 * 1024) as eng:
        d = Driver(eng, peer)
        mine = np.zeros(region, dtype=np.uint8)
        ok, mr = eng.reg(mine)
        ok, my_blob = eng.advertise(d.conn, mr, mine.ctypes.data, region)
        assert ok, eng.last_error
        for size in (1, MiB - 1, MiB, MiB + 1, region):
            src = random_bytes(size, size)
            _, smr = eng.reg(src)
            assert eng.write(d.conn, smr, src, size, d.blob), eng.last_error
            assert d.peer_sha(0, size) == _sha(src)
            back = np.zeros(size, dtype=np.uint8)
            _, bmr = eng.reg(back)
            assert eng.read(d.conn, bmr, back, size, d.blob), eng.last_error
            assert np.array_equal(back, src)
        # the peer writes into the driver's window (one-sided, with a notification) ...
        n = 5 * MiB + 3
        assert d.ask(f"fill:{n}:7|".encode() + my_blob, "filled") == f"filled:{n}".encode()
        assert np.array_equal(mine[:n], pattern(n, 7))
        # ... and reads from it
        mine[:n] = random_bytes(n, 99)
        assert d.ask(f"read:{n}|".encode() + my_blob, "the peer's read sha") == b"sha:" + _sha(mine[:n]).encode()
        d.bye()


def test_kv_echo_through_the_peer(peers):
    peer = peers()
    with Engine("lo", 2, 1, 0) as eng:
        d = Driver(eng, peer)
        cap = 3 * MiB
        ok1, k_send = eng.reg_kv(d.conn, np.zeros(cap, dtype=np.uint8))   # tag 1: the peer receives on it
        ok2, k_recv = eng.reg_kv(d.conn, np.zeros(cap, dtype=np.uint8))   # tag 2: it echoes on it
        assert ok1 and ok2, eng.last_error
        d.notify(f"kv-echo:{cap}".encode())
        msg = random_bytes(2 * MiB + 5, 5)
        assert eng.send_kv(k_send, msg), eng.last_error
        ok, got = eng.recv_kv(k_recv, cap)
        assert ok, eng.last_error
        assert np.array_equal(got, msg)
        d.bye()


def _pull_announced_layers(peer, shared: bool) -> None:
    # The peer is the prefill: it fills its region one layer group at a time (last first) and announces each; this
    # engine is the decoder and reads each group when its note arrives (from the peer's shared file when shared).
    groups, size = 5, 100_003
    with Engine("lo", 2, 1, 0, slice_bytes=65536) as eng:
        d = Driver(eng, peer)
        local = np.zeros(groups * size, dtype=np.uint8)
        ok, mr = eng.reg(local)
        ok, pull = eng.pull_layers(d.conn, 77, [(mr, local.ctypes.data + g * size, size, d.blob, g * size)
                                                for g in range(groups)])
        assert ok, eng.last_error
        d.notify(f"layers:77:21:{groups}:{size}".encode())
        assert pull.wait_all(timeout=60), pull.error or "the layer groups did not land within 60 s"
        assert np.array_equal(local, pattern(local.size, 21))
        assert eng.shm_transfers == (groups if shared else 0)
        pull.close()
        d.bye()


def test_the_driver_pulls_the_layer_groups_the_peer_announces(peers):
    _pull_announced_layers(peers("--region-bytes", str(MiB), "--slice-bytes", "65536"), shared=False)


def test_the_driver_pulls_announced_layer_groups_from_a_same_host_peers_shared_file():
    # Only the Python engine allocates shared regions (docs/transfer.md § Same host), so the peer is Python's.
    peer = Peer("python", "--region-bytes", str(MiB), "--slice-bytes", "65536", "--shared-region")
    try:
        _pull_announced_layers(peer, shared=True)
    finally:
        peer.stop()


def test_writes_outside_the_window_or_with_a_wrong_token_leave_the_peer_region_untouched(peers):
    region = MiB
    peer = peers("--region-bytes", str(region))
    with Engine("lo", 1, 2, 0) as eng:
        d = Driver(eng, peer)
        zeros = _sha(np.zeros(region, dtype=np.uint8))
        src = np.full(2 * region, 9, dtype=np.uint8)
        _, mr = eng.reg(src)
        bad_token = d.blob[:32] + bytes(16) + d.blob[48:]
        assert not eng.write(d.conn, mr, src, 100, bad_token) and "NOT_ADVERTISED" in eng.last_error
        bigger = d.blob[:48] + (2 * region).to_bytes(8, "little") + d.blob[56:]
        assert not eng.write(d.conn, mr, src, 2 * region, bigger) and "OUT_OF_BOUNDS" in eng.last_error
        assert not eng.read(d.conn, mr, src, region + 1, bigger) and "OUT_OF_BOUNDS" in eng.last_error
        assert d.peer_sha(0, region) == zeros
        d.bye()


def test_a_wrong_or_missing_key_is_refused_and_the_right_key_then_works(peers):
    peer = peers("--auth-key", KEY)
    for key, words in ((OTHER_KEY, "AUTH_FAILED"), (None, "requires authentication")):
        with Engine("lo", 1, 2, 0, auth_key=key) as eng:
            assert eng.add_remote_endpoint(peer.metadata) == (False, None)
            assert words in eng.last_error
    with Engine("lo", 1, 2, 0, auth_key=KEY) as eng:
        d = Driver(eng, peer)
        src = random_bytes(1000, 3)
        _, mr = eng.reg(src)
        assert eng.write(d.conn, mr, src, 1000, d.blob), eng.last_error
        assert d.peer_sha(0, 1000) == _sha(src)
        d.bye()
    plain = peers()
    with Engine("lo", 1, 2, 0, auth_key=KEY) as eng:
        assert eng.add_remote_endpoint(plain.metadata) == (False, None)
        assert "does not ask for authentication" in eng.last_error


@pytest.mark.parametrize("op", ["write", "read"])
def test_a_peer_killed_mid_transfer_fails_it_and_a_new_connection_then_works(peers, op):
    region = 256 * MiB
    peer = peers("--region-bytes", str(region))
    with Engine("lo", 1, 2, 0, timeout=30) as eng:
        d = Driver(eng, peer)
        buf = random_bytes(region, 1)
        _, mr = eng.reg(buf)
        peer.proc.send_signal(signal.SIGSTOP)   # the transfer cannot finish while the peer is stopped
        start = getattr(eng, f"{op}_async")
        ok, tid = start(d.conn, mr, buf, region, d.blob)
        assert ok, eng.last_error
        ok, done = eng.poll_async(tid)
        assert ok and not done
        peer.kill()
        assert not poll_until_done(eng, tid, f"the {op} to a killed peer to fail", timeout=25)
        # failed by the lost connection, not by the 30 s deadline
        assert f"connection {d.conn} to 127.0.0.1:{peer.port} closed" in eng.last_error, eng.last_error
        assert "timed out" not in eng.last_error
        assert eng.connection_error(d.conn) is not None
        # the engine keeps working: a fresh peer, a fresh connection, a byte-exact transfer
        d2 = Driver(eng, peers("--region-bytes", str(4 * MiB)))
        assert eng.write(d2.conn, mr, buf, 4 * MiB, d2.blob), eng.last_error
        assert d2.peer_sha(0, 4 * MiB) == _sha(buf[:4 * MiB])
        d2.bye()


def test_a_transfer_past_its_deadline_fails_and_closes_its_connection(peers):
    peer = peers("--region-bytes", str(64 * MiB))
    with Engine("lo", 1, 2, 0, timeout=1.0) as eng:
        d = Driver(eng, peer)
        buf = random_bytes(64 * MiB, 2)
        _, mr = eng.reg(buf)
        peer.proc.send_signal(signal.SIGSTOP)   # alive but silent: only the deadline can end the write
        try:
            assert not eng.write(d.conn, mr, buf, buf.nbytes, d.blob)
            assert "timed out after 1 s" in eng.last_error
            assert "timed out after 1 s" in eng.connection_error(d.conn)
            assert not eng.send_notif(d.conn, b"sha:0:1") and "closed" in eng.last_error
        finally:
            peer.proc.send_signal(signal.SIGCONT)
