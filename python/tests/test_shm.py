"""The shared-memory transport against a real node on this host: leases and reservations never
leak (client killed, or alive but silent past the lease timeout), and every reason not to use
shared memory falls back to TCP with the reason logged. Byte-exactness at the size boundaries is
covered by test_store.py, whose `store` fixture runs every test over TCP and over shared memory."""
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import kvasir
from kvasir import protocol as P
from kvasir import shm

from conftest import PYTHON_DIR, Node, wait_until


HOLDER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from kvasir import KvStore, protocol as P
s = KvStore(sys.argv[2], transport="shm")
s.put("held", b"x" * 100000)                      # written through shared memory (ALLOC/COMMIT)
conn = s._connection()
conn.call(P.Opcode.LEASE, P.encode_key_batch([b"held"]))                              # a lease, never released
conn.call(P.Opcode.ALLOC, P.encode_meta(P.AllocRequest([P.AllocEntry(b"half", 50000)])))  # a reservation, never committed
print("holding", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["killed", "silent"])
def test_a_client_holding_a_lease_and_a_reservation_leaks_nothing(cli, how):
    # Lease timeout 2 s: the silent client keeps its socket open, so only the timeouts free its space.
    node = Node("--memory", "64MiB", "--lease-timeout", "2")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, PYTHON_DIR, node.address], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with kvasir.KvStore(node.address, transport="tcp") as s:
            stats = s.stats()
            assert stats["leases"] == 1 and stats["reservations"] == 1
            if how == "killed":
                holder.send_signal(signal.SIGKILL)
                holder.wait(timeout=10)
            wait_until(lambda: s.stats()["leases"] == 0 and s.stats()["reservations"] == 0, f"space back after the client was {how}")
            stats = s.stats()
            assert stats["keys"] == 1   # the committed value stays; the reserved one is gone
            assert s.get("held") == b"x" * 100000
            assert holder.poll() is None if how == "silent" else True
    finally:
        holder.kill()
        holder.wait(timeout=10)
        node.stop()


def test_a_node_on_another_host_is_reached_over_tcp_with_the_reason_logged(node, caplog):
    assert not shm.is_local_address("192.0.2.1")   # TEST-NET-1: never an address of this host
    assert shm.is_local_address("127.0.0.1")
    with kvasir.KvStore(node.address, transport="tcp") as s:
        conn = s._connection()
        with caplog.at_level(logging.INFO, logger="kvasir"):
            assert shm.negotiate(conn, "192.0.2.1", "auto") == (None, "192.0.2.1 is not an address of this host")
        assert "192.0.2.1 is not an address of this host" in caplog.text
        with pytest.raises(kvasir.KvasirError, match="shm transport unavailable"):
            shm.negotiate(conn, "192.0.2.1", "shm")


def test_a_node_without_a_shm_arena_is_reached_over_tcp(cli, caplog):
    node = Node("--memory", "16MiB", "--shm", "off")
    try:
        with caplog.at_level(logging.INFO, logger="kvasir"):
            with kvasir.KvStore(node.address) as s:
                assert s.put("k", b"v") == 0 and s.get("k") == b"v"
                assert s.transport == "tcp"
                assert "no shared-memory arena" in s.transport_reason
                s._drop()   # a reconnect decides again, and does not log the same reason again
                assert s.get("k") == b"v" and s.transport == "tcp"
        fallbacks = [r for r in caplog.records if "using TCP" in r.getMessage()]
        assert len(fallbacks) == 1, [r.getMessage() for r in fallbacks]
        assert fallbacks[0].levelno == logging.WARNING   # a node on this host: several times slower, so a warning
        assert "no shared-memory arena" in fallbacks[0].getMessage()
        with pytest.raises(kvasir.KvasirError, match="no shared-memory arena"):
            kvasir.KvStore(node.address, transport="shm")
    finally:
        node.stop()


NOBODY = r"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
sys.path.insert(0, sys.argv[1])
from kvasir import KvStore
with KvStore(sys.argv[2]) as s:
    assert s.put("from-nobody", b"hello") == 0 and s.get("from-nobody") == b"hello"
    print("transport", s.transport)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the client as another user")
def test_a_client_without_permission_to_open_the_arena_falls_back_to_tcp_with_the_reason(node):
    # The arena and its token are mode 0600, owned by the node's user (root here); "nobody" cannot open them.
    r = subprocess.run([sys.executable, "-c", NOBODY, PYTHON_DIR, node.address], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
    assert r.returncode == 0, r.stderr
    assert "transport tcp" in r.stdout
    assert "Permission denied" in r.stdout


def test_arena_files_are_private_and_removed_on_a_clean_stop(cli):
    node = Node("--memory", "16MiB")
    with kvasir.KvStore(node.address, transport="shm") as s:
        path = s._shm.path
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(path + ".token").st_mode & 0o777) == "0o600"
    node.stop()
    assert not os.path.exists(path) and not os.path.exists(path + ".token")


def test_shm_batches_move_values_of_every_boundary_size_exactly(node):
    store = kvasir.KvStore(node.address, transport="shm")
    sizes = [0, 1, 4095, 4096, 4097, 65536, (1 << 20) + 3, 16 << 20]
    src = [np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8) for n in sizes]
    dst = [np.zeros(n + 8, dtype=np.uint8) for n in sizes]
    for a in src + dst:
        store.register_buffer(a.ctypes.data, max(a.nbytes, 1))
    keys = [f"shm-boundary/{n}/{os.getpid()}" for n in sizes]
    assert store.batch_put_from(keys, [a.ctypes.data for a in src], sizes) == [0] * len(sizes)
    assert store.batch_get_into(keys, [d.ctypes.data for d in dst], [d.nbytes for d in dst]) == sizes
    for a, d, n in zip(src, dst, sizes):
        assert np.array_equal(d[:n], a) and not d[n:].any()
    store.close()


def test_an_async_local_load_fills_host_buffers_and_releases_its_leases(node):
    from kvasir.local_load import KeyNotLocalError
    with kvasir.KvStore(node.address, transport="shm") as s:
        sizes = [1, 4096, (1 << 20) + 5, 3 << 20]
        src = [np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8) for n in sizes]
        keys = [f"async/{n}/{os.getpid()}" for n in sizes]
        for k, a in zip(keys, src):
            assert s.put(k, a.tobytes()) == 0
        # Each value scattered over two pieces.
        halves = [(np.zeros(n // 2 + 1, dtype=np.uint8), np.zeros(n - n // 2 + 3, dtype=np.uint8)) for n in sizes]
        for a, b in halves:
            s.register_buffer(a.ctypes.data, a.nbytes)
            s.register_buffer(b.ctypes.data, b.nbytes)
        load = s.batch_get_into_multi_buffers_submit_local(keys, [[a.ctypes.data, b.ctypes.data] for a, b in halves],
                                                          [[a.nbytes, b.nbytes] for a, b in halves])
        assert load.wait(timeout=30) == sizes
        assert load.is_done()
        for (a, b), v in zip(halves, src):
            assert np.array_equal(np.concatenate([a, b])[:v.nbytes], v)
        assert s.stats()["leases"] == 0

        # A key that is not there: nothing is leased, the caller falls back.
        before = s.stats()["leases"]
        with pytest.raises(KeyNotLocalError, match="not in the local node"):
            s.batch_get_into_multi_buffers_submit_local([keys[0], "nowhere"], [[halves[0][0].ctypes.data]] * 2, [[halves[0][0].nbytes]] * 2)
        assert s.stats()["leases"] == before == 0
        assert s.batch_get_into_multi_buffers([keys[0]], [[halves[0][0].ctypes.data]], [[halves[0][0].nbytes]]) == [1]


def test_an_async_local_load_needs_a_shared_memory_node(cli):
    from kvasir.local_load import KeyNotLocalError
    node = Node("--memory", "16MiB", "--shm", "off")
    try:
        with kvasir.KvStore(node.address) as s:
            buf = np.zeros(8, dtype=np.uint8)
            s.register_buffer(buf.ctypes.data, 8)
            with pytest.raises(KeyNotLocalError, match="not reachable through shared memory"):
                s.batch_get_into_multi_buffers_submit_local(["k"], [[buf.ctypes.data]], [[8]])
    finally:
        node.stop()


def test_a_local_put_writes_straight_into_the_arena(node):
    with kvasir.KvStore(node.address, transport="shm") as s:
        src = np.random.default_rng(7).integers(0, 256, 3 << 20, dtype=np.uint8)
        s.register_buffer(src.ctypes.data, src.nbytes)
        keys = [f"local-put/{i}/{os.getpid()}" for i in range(3)]
        assert s.batch_put_from_local(keys, [src.ctypes.data + i * (1 << 20) for i in range(3)], [1 << 20] * 3) == [0, 0, 0]
        for i, k in enumerate(keys):
            assert s.get(k) == src[i << 20:(i + 1) << 20].tobytes()
        assert s.stats()["reservations"] == 0


def test_a_node_restarted_at_the_same_address_is_read_and_written_through_its_new_arena(cli):
    # A restarted node has a new arena (a new file and token); LEASE and ALLOC offsets name it. A store that kept the
    # old mapping for its new connection read other values' bytes and wrote where the node never looks (found with
    # the .NET client by FailoverTests.A_value_on_one_live_replica_is_read_although_that_node_just_restarted_...).
    n = Node("--memory", "64MiB", "--admin-port", "off")   # admin off: the restart at the old port needs no port + 1
    value, again = bytes(range(256)) * 20, bytes(range(255, -1, -1)) * 20
    try:
        with kvasir.KvStore(n.address, transport="shm", request_timeout=10) as store:
            assert store.put("restart/before", b"x" * 5000) == 0 and store.transport == "shm"
            port = n.port
            n.proc.kill()
            n.proc.wait(timeout=10)
            n.stop()
            n = Node("--memory", "64MiB", "--admin-port", "off", port=port)
            with kvasir.KvStore(n.address, transport="tcp", request_timeout=10) as other:
                assert other.put("restart/filler", b"f" * 7000) == 0   # so the new arena's offsets differ from the old ones
                assert other.put("restart/after", value) == 0
                try:
                    store.get("restart/after")   # the first call finds the connection dead
                except kvasir.KvasirError:
                    pass
                assert store.get("restart/after") == value
                assert store.transport == "shm"
                assert store.put("restart/again", again) == 0
                assert other.get("restart/again") == again
    finally:
        n.stop()


def test_a_put_with_a_ttl_goes_through_the_arena_and_carries_its_ttl(node):
    # issue 19: shared-memory PUTs took the node's default TTL; with ARENA_PROOF granted ALLOC carries the caller's
    with kvasir.KvStore(node.address, transport="shm") as s:
        before = s.stats()["requests_alloc"]
        k = f"shm-ttl/{os.getpid()}"
        assert s.put(k, b"v" * 5000, ttl=600) == 0
        assert s.put(k + "/none", b"w" * 5000) == 0
        assert s.stats()["requests_alloc"] == before + 2   # both went through ALLOC, not PUT
        with_ttl, without = s.info([k, k + "/none"])
        assert 590_000 <= with_ttl.ttl_ms <= 600_000
        assert without.ttl_ms == 0
        assert s.get(k) == b"v" * 5000


def test_a_connection_that_reads_the_arena_secret_proves_it_and_skips_the_zeroing(node):
    with kvasir.KvStore(node.address, transport="shm") as s:
        conn = s._connection()
        s._negotiate(conn)
        assert conn.arena_features and s._shm.secret is not None
        with open(s._shm.path, "rb") as f:
            f.seek(s._shm.length)
            assert f.read(P.ARENA_SECRET_BYTES) == s._shm.secret   # the secret sits just past the mapped arena
        assert conn.arena_proof is not None and len(conn.arena_proof) == P.ARENA_PROOF_BYTES
        flags, _ = shm.alloc_request(conn, [b"k"], [1])
        assert flags == int(P.Flag.MAPPED)


def test_a_byte_changed_in_the_arena_after_a_commit_with_the_writers_crc_is_a_miss(node):
    # value_crc=True: COMMIT carries the CRCs, checked before the first read. A byte flipped in between is never served.
    value = np.random.default_rng(11).integers(0, 256, 64 << 10, dtype=np.uint8).tobytes()
    k = f"shm-crc/{os.getpid()}"
    with kvasir.KvStore(node.address, transport="shm", value_crc=True) as s:
        before = s.stats()["crc_mismatches"]
        assert s.put(k, value) == 0
        at = s._shm.mm.find(value)
        assert at >= 0
        s._shm.view[at + 100] ^= 0x01
        with kvasir.KvStore(node.address, transport="tcp") as reader:
            assert reader.get(k) is None
        assert s.stats()["crc_mismatches"] == before + 1


def test_keys_the_node_cannot_lease_because_every_lease_slot_is_held_are_read_over_tcp(cli):
    # docs/protocol.md § Ownership and timeouts: past --max-leases a LEASE answers OUT_OF_MEMORY for the key, "and the
    # client reads it over TCP". Before, the Python client reported OUT_OF_MEMORY for the key (get raised "get failed:
    # OUT_OF_MEMORY") while the value was there to be read.
    node = Node("--memory", "64MiB", "--max-leases", "1")
    try:
        values = [np.random.default_rng(i).integers(0, 256, 100_000 + i, dtype=np.uint8) for i in range(3)]
        keys = ["held", "a", "b"]
        with kvasir.KvStore(node.address, transport="shm") as holder, \
                kvasir.KvStore(node.address, transport="shm", verify_crc=True) as s:
            for v in values:
                s.register_buffer(v.ctypes.data, v.nbytes)
            assert s.batch_put_from(keys, [v.ctypes.data for v in values], [v.nbytes for v in values]) == [0, 0, 0]
            # Another connection leases "held" and keeps its lease: the node's only lease slot.
            holder._negotiate(holder._connection())
            lease = holder._connection().call(P.Opcode.LEASE, P.encode_key_batch([b"held"]))
            assert [e.status for e in lease.entries] == [P.WireStatus.OK]
            assert s.transport == "shm"

            assert s.get("a") == values[1].tobytes()
            dests = [np.zeros(v.nbytes, dtype=np.uint8) for v in values]
            small = np.zeros(10, dtype=np.uint8)
            for d in (*dests, small):
                s.register_buffer(d.ctypes.data, d.nbytes)
            codes = s.batch_get_into(["b", "missing", "held", "a"], [dests[2].ctypes.data, small.ctypes.data,
                                                                     dests[0].ctypes.data, dests[1].ctypes.data],
                                     [dests[2].nbytes, small.nbytes, dests[0].nbytes, dests[1].nbytes])
            assert codes == [values[2].nbytes, -1, values[0].nbytes, values[1].nbytes]
            for d, v in zip(dests, values):
                assert np.array_equal(d, v)
            halves = [np.zeros(50_000, dtype=np.uint8), np.zeros(60_000, dtype=np.uint8)]
            for h in halves:
                s.register_buffer(h.ctypes.data, h.nbytes)
            assert s.batch_get_into_multi_buffers(["b"], [[h.ctypes.data for h in halves]], [[h.nbytes for h in halves]]) \
                == [values[2].nbytes]
            assert np.array_equal(np.concatenate(halves)[:values[2].nbytes], values[2])
            assert s.checksum_mismatches == 0

            # An async local load cannot read over TCP (its pieces may be GPU memory): it raises KeyNotLocalError holding
            # nothing, and the fallback the error names reads the value.
            from kvasir.local_load import KeyNotLocalError
            out = np.zeros(values[1].nbytes, dtype=np.uint8)
            s.register_buffer(out.ctypes.data, out.nbytes)
            with pytest.raises(KeyNotLocalError, match="lease"):
                s.batch_get_into_multi_buffers_submit_local(["a"], [[out.ctypes.data]], [[out.nbytes]])
            assert s.stats()["leases"] == 1   # the holder's alone
            assert s.batch_get_into_multi_buffers(["a"], [[out.ctypes.data]], [[out.nbytes]]) == [values[1].nbytes]
            assert np.array_equal(out, values[1])
    finally:
        node.stop()


def test_a_budget_learnt_from_a_full_arena_is_forgotten_so_later_puts_go_in_one_alloc_again(cli):
    # A key refused while the connection held other reservations teaches its budget the node's share; a refusal because
    # the arena itself was full (pinned values here) taught it the same way, for good: every later put on the connection
    # went in pieces of what the full arena had taken (two 64 KiB values per ALLOC/COMMIT). What was learnt is forgotten
    # after reserve.FORGET_AFTER seconds (the budget's clock is moved on rather than slept).
    block = 64 << 10
    node = Node("--memory", "8MiB", "--max-value", "1MiB")
    try:
        src = np.random.default_rng(5).integers(0, 256, 40 * block, dtype=np.uint8)
        with kvasir.KvStore(node.address, transport="tcp") as t, kvasir.KvStore(node.address, transport="shm") as s:
            pinned = []
            for i in range(200):
                key = f"pinned/{i}"
                code = t.put(key, src[:block].tobytes())
                if code == -4:   # OUT_OF_MEMORY: the arena has no room for one more
                    break
                assert code == 0 and t.batch_pin([key]) == [0]
                pinned.append(key)
            else:
                pytest.fail("200 pinned 64 KiB values did not fill an 8 MiB arena")
            assert t.batch_remove(pinned[:2]) == [0, 0]
            pinned = pinned[2:]
            s.register_buffer(src.ctypes.data, src.nbytes)

            def put(name, n):
                before = s.stats()["requests_alloc"]
                codes = s.batch_put_from([f"{name}/{i}" for i in range(n)], [src.ctypes.data + i * block for i in range(n)],
                                         [block] * n)
                assert codes == [0] * n
                return s.stats()["requests_alloc"] - before

            # The node took two values and refused the third while they were held: the budget learnt two values, and the
            # rest went two per ALLOC (each evicting the burst's values before it).
            assert put("burst", 24) > 1, "the full arena did not make the budget learn"
            budget = s._connection().reservations
            assert budget.limit < s._shm.length // 4
            assert t.batch_unpin(pinned) == [0] * len(pinned)
            budget.clock = lambda: time.monotonic() + 120
            assert put("later", 16) == 1
            assert budget.limit == s._shm.length // 4
    finally:
        node.stop()


def test_gets_of_more_keys_than_a_connection_may_hold_leased_read_every_value(cli):
    # A connection may hold at most --max-leases-per-connection leases; a LEASE past it closes the connection (every
    # request on it fails). An async local load leased every chunk of its keys before any was released, and threads
    # share the store's connection: before, a load of 200 keys here lost the connection (KvasirError), and so did four
    # threads reading 200 keys each. The client keeps at most twice max_batch_keys (32 here) leases in flight per
    # connection.
    node = Node("--memory", "64MiB", "--max-batch", "16", "--max-leases-per-connection", "40")
    try:
        n = 200
        values = [np.random.default_rng(i).integers(0, 256, 1000 + i, dtype=np.uint8) for i in range(n)]
        keys = [f"many/{i}" for i in range(n)]
        with kvasir.KvStore(node.address, transport="shm", request_timeout=20, verify_crc=True) as s:
            for k, v in zip(keys, values):
                assert s.put(k, v.tobytes()) == 0

            def dests():
                out = [np.zeros(v.nbytes, dtype=np.uint8) for v in values]
                for d in out:
                    s.register_buffer(d.ctypes.data, d.nbytes)
                return out

            def check(out):
                for d, v in zip(out, values):
                    assert np.array_equal(d, v)

            out = dests()
            load = s.batch_get_into_multi_buffers_submit_local(keys, [[d.ctypes.data] for d in out], [[d.nbytes] for d in out])
            assert load.wait(timeout=30) == [v.nbytes for v in values]
            check(out)

            # Four threads sharing the connection, each reading every key in requests of 16 keys.
            outs, codes = [dests() for _ in range(4)], [None] * 4

            def reader(t):
                for _ in range(3):
                    codes[t] = s.batch_get_into(keys, [d.ctypes.data for d in outs[t]], [d.nbytes for d in outs[t]])

            threads = [threading.Thread(target=reader, args=(t,)) for t in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
            assert codes == [[v.nbytes for v in values]] * 4
            for o in outs:
                check(o)

            # A load not waited for yet holds 32 leases, and only this thread would wait for it: a get on this thread, and
            # a second load, finish its copies and release its leases rather than wait (its wait() then finds them done).
            held = dests()
            first = s.batch_get_into_multi_buffers_submit_local(keys[:32], [[d.ctypes.data] for d in held[:32]],
                                                               [[d.nbytes] for d in held[:32]])
            out = dests()
            assert s.batch_get_into(keys, [d.ctypes.data for d in out], [d.nbytes for d in out]) == [v.nbytes for v in values]
            check(out)
            # A byte of key 40 flipped in the arena: the second load, settled by the third, answers CHECKSUM_MISMATCH for
            # it in its wait(), counted once.
            at = s._shm.mm.find(values[40].tobytes())
            assert at >= 0 and s._shm.mm.find(values[40].tobytes(), at + 1) < 0
            s._shm.mm[at + 500] ^= 0x5A
            second = s.batch_get_into_multi_buffers_submit_local(keys[32:64], [[d.ctypes.data] for d in held[32:64]],
                                                                [[d.nbytes] for d in held[32:64]])
            third = s.batch_get_into_multi_buffers_submit_local(keys[64:], [[d.ctypes.data] for d in held[64:]],
                                                               [[d.nbytes] for d in held[64:]])
            assert third.wait(timeout=30) == [v.nbytes for v in values[64:]]
            assert second.wait(timeout=30) == [-20 if i == 40 else v.nbytes for i, v in enumerate(values[32:64], 32)]
            assert first.wait(timeout=30) == [v.nbytes for v in values[:32]]
            assert s.checksum_mismatches == 1
            check(held[:40] + [values[40]] + held[41:])
            assert s.stats()["leases"] == 0
            assert s.transport == "shm"
    finally:
        node.stop()


def test_a_copy_through_an_arena_unmapped_under_it_fails_unavailable_not_with_a_valueerror(node):
    # A store lets go of its node's arena when it finds the node dead (docs/operations.md § Shared-memory arena files),
    # possibly while another thread copies through it: that copy's keys fail UNAVAILABLE, never a ValueError out of get.
    from kvasir import errors as E
    from kvasir.connection import _Failure
    with kvasir.KvStore(node.address, transport="shm", request_timeout=10) as s:
        assert s.put("unmapped-under-a-copy", b"x" * 4096) == 0
        mapping = s._shm
        mapping.close()
        for copy in (lambda: mapping.copy_out(0, 16, [memoryview(bytearray(16))]),
                     lambda: mapping.copy_in(0, [memoryview(b"y" * 16)])):
            with pytest.raises(_Failure) as failed:
                copy()
            assert failed.value.code == E.UNAVAILABLE
