"""Async local loads and local puts (kvasir.local_load) against a real node on this host, with host
buffers: the copy plan they share with the GPU path — values laid over scattered pieces, copies
merged where they continue one another, batches split into chunks that overlap — must give
byte-exact results and leave no lease or reservation behind. (GPU destinations: test_gpu.py.)"""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import kvasir
from kvasir import errors as E
from kvasir.errors import KvasirError
from kvasir.local_load import KeyNotLocalError

from conftest import PYTHON_DIR, Node, wait_until


@pytest.fixture(scope="module")
def small_batches(cli):
    """A node with 16-key batches, so a few dozen keys make several chunks."""
    n = Node("--memory", "128MiB", "--max-batch", "16")
    yield n
    n.stop()


def _values(count, seed, max_len=70000):
    rng = np.random.default_rng(seed)
    lengths = [0, 1, 4095, 4096, 4097] + [int(x) for x in rng.integers(1, max_len, count - 5)]
    return [rng.integers(0, 256, n, dtype=np.uint8) for n in lengths[:count]]


def _put_all(s, keys, values):
    for k, v in zip(keys, values):
        assert s.put(k, v.tobytes()) == 0


def test_values_over_scattered_pieces_in_several_chunks_are_byte_exact(small_batches):
    values = _values(40, 1)
    keys = [f"scatter/{i}/{os.getpid()}" for i in range(len(values))]
    with kvasir.KvStore(small_batches.address, transport="shm") as s:
        _put_all(s, keys, values)
        # One buffer, each value cut into three pieces placed in reverse key order, with spare room
        # in the last piece (bytes past the value stay untouched) and a gap between keys.
        room = [len(v) + 100 for v in values]
        buf = np.full(sum(room) + 64 * len(values), 0xEE, dtype=np.uint8)
        s.register_buffer(buf.ctypes.data, buf.nbytes)
        addrs, sizes, spans = [], [], []
        at = 0
        for n in reversed(room):
            cut = [n // 3, n // 3, n - 2 * (n // 3)]
            addrs.append([buf.ctypes.data + at, buf.ctypes.data + at + cut[0], buf.ctypes.data + at + cut[0] + cut[1]])
            sizes.append(cut)
            spans.append(at)
            at += n + 64
        addrs.reverse(), sizes.reverse(), spans.reverse()
        load = s.batch_get_into_multi_buffers_submit_local(keys, addrs, sizes)
        assert load.wait(timeout=60) == [len(v) for v in values]
        for v, start, n in zip(values, spans, room):
            assert np.array_equal(buf[start:start + len(v)], v)
            assert (buf[start + len(v):start + n + 64] == 0xEE).all()
        assert s.stats()["leases"] == 0


def test_contiguous_destinations_come_out_right_when_copies_merge(small_batches):
    # Values stored one after another land next to each other in the arena, and the destinations
    # are contiguous too: the plan merges their copies; the bytes must still be each key's own.
    values = [np.full(8192, i, dtype=np.uint8) for i in range(48)]
    keys = [f"merge/{i}/{os.getpid()}" for i in range(len(values))]
    with kvasir.KvStore(small_batches.address, transport="shm") as s:
        _put_all(s, keys, values)
        dst = np.zeros(8192 * len(values), dtype=np.uint8)
        s.register_buffer(dst.ctypes.data, dst.nbytes)
        load = s.batch_get_into_multi_buffers_submit_local(keys, [[dst.ctypes.data + i * 8192] for i in range(len(keys))],
                                                          [[8192]] * len(keys))
        assert load.wait(timeout=60) == [8192] * len(keys)
        assert np.array_equal(dst.reshape(len(values), 8192)[:, 0], np.arange(len(values), dtype=np.uint8))
        assert np.array_equal(dst, np.concatenate(values))


def test_a_value_larger_than_its_pieces_raises_and_releases_every_lease(small_batches):
    values = _values(30, 2)
    keys = [f"toolarge/{i}/{os.getpid()}" for i in range(len(values))]
    with kvasir.KvStore(small_batches.address, transport="shm") as s:
        _put_all(s, keys, values)
        buf = np.zeros(sum(len(v) for v in values), dtype=np.uint8)
        s.register_buffer(buf.ctypes.data, buf.nbytes)
        sizes = [len(v) for v in values]
        sizes[25] -= 1   # in the second chunk: the first chunk is leased (and copying) by then
        offsets = np.concatenate(([0], np.cumsum(sizes)))[:-1]
        with pytest.raises(KeyNotLocalError, match="does not fit its buffers"):
            s.batch_get_into_multi_buffers_submit_local(keys, [[buf.ctypes.data + int(o)] for o in offsets], [[n] for n in sizes])
        assert s.stats()["leases"] == 0


def test_destinations_outside_registered_memory_fail_before_anything_is_leased(small_batches):
    with kvasir.KvStore(small_batches.address, transport="shm") as s:
        assert s.put("k", b"v" * 10) == 0
        buf = np.zeros(64, dtype=np.uint8)
        s.register_buffer(buf.ctypes.data, 32)
        with pytest.raises(ValueError, match="registered buffer"):
            s.batch_get_into_multi_buffers_submit_local(["k"], [[buf.ctypes.data + 16]], [[32]])   # runs 16 bytes past
        with pytest.raises(ValueError, match="int"):
            s.batch_get_into_multi_buffers_submit_local(["k"], [[float(buf.ctypes.data)]], [[10]])
        with pytest.raises(ValueError, match="as many sizes"):
            s.batch_get_into_multi_buffers_submit_local(["k"], [[buf.ctypes.data, buf.ctypes.data + 8]], [[8]])
        # Nested registrations: a piece inside the outer region but past the inner one is fine.
        s.register_buffer(buf.ctypes.data + 4, 4)
        load = s.batch_get_into_multi_buffers_submit_local(["k"], [[buf.ctypes.data + 2]], [[20]])
        assert load.wait(timeout=30) == [10]
        assert bytes(buf[2:12]) == b"v" * 10
        assert s.stats()["leases"] == 0


def test_a_load_never_releases_leases_of_a_later_connection(small_batches):
    # Lease ids count per connection. A load whose connection was dropped (any failed call drops
    # it) must not send its ids on the next connection, where the same numbers name other leases;
    # and since the node freed its leases when that connection closed, perhaps before its copies
    # ended, the load cannot vouch for its bytes: wait() raises (the caller loads again).
    values = _values(8, 3)
    keys = [f"ids/{i}/{os.getpid()}" for i in range(len(values))]
    with kvasir.KvStore(small_batches.address, transport="shm") as s, kvasir.KvStore(small_batches.address, transport="tcp") as watcher:
        _put_all(s, keys, values)
        # The node counts open connections; earlier tests' may still be closing. From here on only
        # this test's two are open, so "2" below means the dropped one has closed.
        wait_until(lambda: watcher.stats()["connections"] == 2, "only this test's two connections open on the node")
        bufs = [np.zeros(len(v) + 1, dtype=np.uint8) for v in values]
        for b in bufs:
            s.register_buffer(b.ctypes.data, b.nbytes)
        first = s.batch_get_into_multi_buffers_submit_local(keys, [[b.ctypes.data] for b in bufs], [[b.nbytes] for b in bufs])
        s._drop()   # what a failed call does; the node releases that connection's leases
        second = s.batch_get_into_multi_buffers_submit_local(keys, [[b.ctypes.data] for b in bufs], [[b.nbytes] for b in bufs])
        with pytest.raises(KvasirError, match="load them again"):
            first.wait(timeout=30)
        s.ping()   # a RELEASE goes out deferred: the next request reads its reply, so it has been served
        # The node frees a closed connection's leases before it stops counting the connection
        # (Connection.RunAsync's finally, then CacheNode.RunConnectionAsync's): once the count is back
        # to 2 (the watcher and s's new connection), the first load's leases are gone, and exactly
        # the second load's remain.
        wait_until(lambda: watcher.stats()["connections"] == 2, "the node to close the dropped connection (and free its leases)")
        assert watcher.stats()["leases"] == len(keys)   # the second load's leases are still held
        assert second.wait(timeout=30) == [len(v) for v in values]
        s.ping()
        assert watcher.stats()["leases"] == 0
        for b, v in zip(bufs, values):
            assert np.array_equal(b[:len(v)], v)


def test_a_local_put_over_several_chunks_stores_every_value_and_reports_per_key(small_batches):
    values = _values(50, 4)
    keys = [f"lput/{i}/{os.getpid()}" for i in range(len(values))]
    with kvasir.KvStore(small_batches.address, transport="shm") as s:
        src = np.concatenate(values)
        s.register_buffer(src.ctypes.data, src.nbytes)
        offsets = np.concatenate(([0], np.cumsum([len(v) for v in values])))[:-1]
        ptrs = [src.ctypes.data + int(o) for o in offsets]
        sizes = [len(v) for v in values]
        # An invalid key and a value above the node's limit get their own codes; the rest store.
        s_max = s.max_value_bytes
        big = np.zeros(s_max + 1, dtype=np.uint8)
        s.register_buffer(big.ctypes.data, big.nbytes)
        codes = s.batch_put_from_local(keys + ["", "too-big"], ptrs + [src.ctypes.data, big.ctypes.data], sizes + [1, s_max + 1])
        assert codes == [0] * len(keys) + [E.INVALID_KEY, E.VALUE_TOO_LARGE]
        for k, v in zip(keys, values):
            assert s.get(k) == v.tobytes()
        assert s.stats()["reservations"] == 0


def test_a_local_put_gathers_each_value_from_its_pieces(small_batches):
    # Like one KV block made of every layer's slice: three pieces per value, from two buffers, in an
    # order unrelated to their addresses; over several chunks.
    values = _values(36, 6)
    keys = [f"gather/{i}/{os.getpid()}" for i in range(len(values))]
    a = np.concatenate(values)
    b = np.zeros_like(a)
    with kvasir.KvStore(small_batches.address, transport="shm") as s:
        s.register_buffer(a.ctypes.data, a.nbytes)
        s.register_buffer(b.ctypes.data, b.nbytes)
        addrs, sizes, at = [], [], 0
        for v in values:
            n = len(v)
            cut = [n // 3, n // 3, n - 2 * (n // 3)]
            b[at + cut[0]:at + cut[0] + cut[1]] = v[cut[0]:cut[0] + cut[1]]   # the middle piece lives in b
            addrs.append([a.ctypes.data + at, b.ctypes.data + at + cut[0], a.ctypes.data + at + cut[0] + cut[1]])
            sizes.append(cut)
            a[at + cut[0]:at + cut[0] + cut[1]] = 0xAB   # and is garbage in a
            at += n
        assert s.batch_put_from_multi_buffers_local(keys, addrs, sizes) == [0] * len(keys)
        for k, v in zip(keys, values):
            assert s.get(k) == v.tobytes()
        assert s.stats()["reservations"] == 0


def test_a_large_local_put_publishes_the_crc_of_every_value(node):
    # 40 MiB in one COMMIT: the node checksums such a batch on several threads. A reader that
    # verifies each CRC over TCP proves every value got its own.
    rng = np.random.default_rng(5)
    src = rng.integers(0, 256, 40 << 20, dtype=np.uint8)
    keys = [f"crc/{i}/{os.getpid()}" for i in range(40)]
    with kvasir.KvStore(node.address, transport="shm") as s:
        s.register_buffer(src.ctypes.data, src.nbytes)
        assert s.batch_put_from_local(keys, [src.ctypes.data + (i << 20) for i in range(40)], [1 << 20] * 40) == [0] * 40
    with kvasir.KvStore(node.address, transport="tcp", verify_crc=True) as reader:
        out = np.zeros(1 << 20, dtype=np.uint8)
        reader.register_buffer(out.ctypes.data, out.nbytes)
        for i in (0, 17, 39):
            assert reader.batch_get_into([keys[i]], [out.ctypes.data], [out.nbytes]) == [1 << 20]
            assert np.array_equal(out, src[i << 20:(i + 1) << 20])


@pytest.mark.parametrize("verify", [True, False])
def test_an_async_load_with_verify_crc_answers_checksum_mismatch_for_a_value_flipped_in_the_arena(small_batches, verify):
    # verify_crc covers async local loads too: each value the caller got (host pieces) is checked against the CRC in
    # the LEASE reply; a byte flipped in the arena is CHECKSUM_MISMATCH for that key alone, counted, the rest exact.
    # Without verify_crc the flipped byte reaches the caller.
    values = _values(24, [0xC4C, verify])   # a stream of its own: the value is found in the arena by its bytes
    keys = [f"vlocal/{verify}/{i}/{os.getpid()}" for i in range(len(values))]
    with kvasir.KvStore(small_batches.address, transport="shm", verify_crc=verify) as s:
        _put_all(s, keys, values)
        bad = 20   # in the second chunk (16-key batches); value of tens of KiB, cut over two pieces below
        victim = values[bad].tobytes()
        # a first read has the node compute the value's CRC (it does so lazily, on first use) while the bytes are good
        assert s.get(keys[bad]) == victim
        arena = s._shm.mm
        at = arena.find(victim[:64])
        assert at >= 0 and arena.find(victim[:64], at + 1) < 0, "the value is not in the arena exactly once"
        arena[at + len(victim) - 1] ^= 0x5A
        room = [len(v) + 8 for v in values]
        buf = np.zeros(sum(room), dtype=np.uint8)
        s.register_buffer(buf.ctypes.data, buf.nbytes)
        starts = np.concatenate(([0], np.cumsum(room)[:-1])).tolist()
        # each value over two pieces with an empty one between them
        addrs = [[buf.ctypes.data + a, buf.ctypes.data + a + n // 2, buf.ctypes.data + a + n // 2]
                 for a, n in zip(starts, room)]
        sizes = [[n // 2, 0, n - n // 2] for n in room]
        got = s.batch_get_into_multi_buffers_submit_local(keys, addrs, sizes).wait(timeout=60)
        for i, (v, a) in enumerate(zip(values, starts)):
            if i == bad:
                continue
            assert got[i] == len(v) and np.array_equal(buf[a:a + len(v)], v)
        delivered = buf[starts[bad]:starts[bad] + len(victim)]
        if verify:
            assert got[bad] == E.CHECKSUM_MISMATCH and s.checksum_mismatches == 1
        else:
            assert got[bad] == len(victim) and int((delivered != values[bad]).sum()) == 1
            assert s.checksum_mismatches == 0
        assert s.stats()["leases"] == 0
        assert s.remove(keys[bad]) == 0


def test_a_local_put_to_a_node_that_went_away_answers_per_key(cli):
    node = Node("--memory", "32MiB")
    s = kvasir.KvStore(node.address, transport="shm")
    try:
        src = np.arange(4096, dtype=np.uint8)
        s.register_buffer(src.ctypes.data, src.nbytes)
        assert s.batch_put_from_local(["a"], [src.ctypes.data], [4096]) == [0]
        node.stop()
        codes = s.batch_put_from_local(["b", "c"], [src.ctypes.data] * 2, [4096] * 2)
        assert all(c in (E.UNAVAILABLE, E.PROTOCOL_ERROR) for c in codes), codes
    finally:
        s.close()
        node.stop()


@pytest.fixture()
def short_leases(cli):
    """A node whose leases and reservations expire after 1 s (the least a shm node allows): clients
    trust a copy for 0.9 s after asking."""
    n = Node("--memory", "64MiB", "--lease-timeout", "1")
    yield n
    n.stop()


def test_a_late_copy_is_trusted_only_when_release_confirms_its_lease(short_leases, monkeypatch):
    import time
    from kvasir import shm
    value = np.arange(100000, dtype=np.uint32).view(np.uint8)
    with kvasir.KvStore(short_leases.address, transport="shm") as s:
        assert s.put("late", value.tobytes()) == 0
        assert s._shm.lease_timeout == 1.0   # from SHM_INFO: the window it trusts is 0.9 s
        # Every copy counts as late: RELEASE is awaited, the leases were held, the bytes stand.
        monkeypatch.setattr(shm, "TRUST_FRACTION", 0.0)
        assert s.get("late") == value.tobytes()
        monkeypatch.undo()
        # A copy stalled past the lease timeout: the node's reaper ended the lease meanwhile, so
        # the key fails (TIMEOUT) instead of handing back bytes that may have changed.
        slow = shm.ShmMapping.copy_out

        def stalled(self, *args):
            time.sleep(2.5)
            return slow(self, *args)
        monkeypatch.setattr(shm.ShmMapping, "copy_out", stalled)
        out = np.zeros(value.nbytes, dtype=np.uint8)
        s.register_buffer(out.ctypes.data, out.nbytes)
        assert s.batch_get_into(["late"], [out.ctypes.data], [out.nbytes]) == [E.TIMEOUT]
        monkeypatch.undo()
        assert s.get("late") == value.tobytes()
        assert s.stats()["leases"] == 0


def test_an_async_load_whose_lease_expired_mid_copy_raises(short_leases, monkeypatch):
    import time
    from kvasir import local_load
    value = np.arange(50000, dtype=np.uint16).view(np.uint8)
    with kvasir.KvStore(short_leases.address, transport="shm") as s:
        assert s.put("async-late", value.tobytes()) == 0
        out = np.zeros(value.nbytes, dtype=np.uint8)
        s.register_buffer(out.ctypes.data, out.nbytes)
        run_host = local_load._Copies.run_host

        def stalled(self):
            time.sleep(2.5)
            run_host(self)
        monkeypatch.setattr(local_load._Copies, "run_host", stalled)
        load = s.batch_get_into_multi_buffers_submit_local(["async-late"], [[out.ctypes.data]], [[out.nbytes]])
        with pytest.raises(KvasirError, match="load them again"):
            load.wait(timeout=30)
        assert s.stats()["leases"] == 0


def test_a_local_put_copies_nothing_once_its_reservations_may_have_expired(short_leases, monkeypatch):
    from kvasir import shm
    src = np.full(4096, 7, dtype=np.uint8)
    with kvasir.KvStore(short_leases.address, transport="shm") as s:
        s.register_buffer(src.ctypes.data, src.nbytes)
        monkeypatch.setattr(shm, "TRUST_FRACTION", 0.0)
        assert s.batch_put_from_local(["p1", "p2"], [src.ctypes.data] * 2, [4096] * 2) == [E.TIMEOUT] * 2
        assert s.put("p3", b"x" * 5000) == E.TIMEOUT          # the plain put over shm as well
        monkeypatch.undo()
        wait_until(lambda: s.stats()["reservations"] == 0, "the node to drop the unused reservations")
        assert s.batch_is_exist(["p1", "p2", "p3"]) == [0, 0, 0]   # absent: nothing was published
        assert s.batch_put_from_local(["p1"], [src.ctypes.data], [4096]) == [0]
        assert s.get("p1") == src.tobytes()


def test_alloc_requests_are_split_by_their_own_entry_size():
    # An ALLOC entry is a key and a u64 length: 8 bytes more than a key batch entry. Chunks sized
    # as for LEASE would overrun max_meta_bytes (the node then closes the connection).
    from kvasir.local_load import _KeyBytes
    from kvasir.local_put import _plan
    keys = [b"k" * 90] * 40
    key_bytes = _KeyBytes(keys)
    lengths = np.full(len(keys), 4096, dtype=np.int64)
    chunks = _plan(key_bytes.length, lengths, max_keys=1000, max_meta=1024, cap=1 << 40)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(keys)
    assert all(a == b for (_, a), (b, _) in zip(chunks, chunks[1:]))   # contiguous, nothing skipped
    assert max(end - start for start, end in chunks) == (1024 - 4) // 100
    for start, end in chunks:   # the frames themselves: within the limit
        tail = lengths[start:end].astype("<u8").view(np.uint8).reshape(-1, 8)
        assert len(key_bytes.frame(np.arange(start, end), tail)) <= 1024
    # the batch-key limit holds as well
    assert max(b - a for a, b in _plan(key_bytes.length, lengths, max_keys=3, max_meta=1 << 20, cap=1 << 40)) == 3


def test_a_local_put_reserves_chunks_of_at_most_the_cap_within_the_nodes_own_limits():
    # Each reservation holds at most the cap in bytes (the first one at most its own) and one key at least; the node's
    # limits are never crossed, and the chunks cover the keys in order.
    from kvasir.local_put import _plan
    mib = 1 << 20
    lengths = np.full(100, mib, dtype=np.int64)
    keys = np.full(100, 8, dtype=np.int64)
    chunks = _plan(keys, lengths, 8192, 1 << 20, cap=32 * mib)
    assert [b - a for a, b in chunks] == [32, 32, 32, 4]
    assert chunks[0][0] == 0 and all(a == b for (_, a), (b, _) in zip(chunks, chunks[1:])) and chunks[-1][1] == 100
    assert [b - a for a, b in _plan(keys, lengths, 8192, 1 << 20, cap=32 * mib, first=5 * mib)][:3] == [5, 32, 32]
    # a key larger than the cap goes alone; the batch-key limit (10) is never crossed
    lengths[1] = 64 * mib
    chunks = _plan(keys, lengths, 10, 1 << 20, cap=32 * mib)
    assert chunks[:3] == [(0, 1), (1, 2), (2, 12)] and chunks[-1][1] == 100
    assert max(b - a for a, b in chunks) == 10 and all(a == b for (_, a), (b, _) in zip(chunks, chunks[1:]))
    assert _plan(keys[:0], lengths[:0], 10, 1 << 20, cap=mib) == []


@pytest.mark.parametrize("limit", [None, "16MiB"])
def test_a_local_put_larger_than_the_connections_reservation_share_stores_every_value(cli, limit):
    # A node lets one connection hold at most a quarter of its arena reserved (--max-reserved-per-connection), and an
    # ALLOC past that share answers OUT_OF_MEMORY for the key. One call storing 100 MiB into a 256 MiB arena (or into
    # a node whose operator set a smaller share) must still store every value: the client keeps its reservations within
    # the share and commits what it holds before it asks again.
    args = ["--memory", "256MiB"] + ([] if limit is None else ["--max-reserved-per-connection", limit])
    node = Node(*args)
    try:
        block, n = 128 << 10, 800
        src = np.random.default_rng(21).integers(0, 256, block * n, dtype=np.uint8)
        keys = [f"share/{i}" for i in range(n)]
        with kvasir.KvStore(node.address, transport="shm") as s:
            s.register_buffer(src.ctypes.data, src.nbytes)
            codes = s.batch_put_from_local(keys, [src.ctypes.data + i * block for i in range(n)], [block] * n)
            assert codes == [0] * n, {c: codes.count(c) for c in set(codes)}
            assert s.stats()["reservations"] == 0
            out = np.zeros(block, dtype=np.uint8)
            s.register_buffer(out.ctypes.data, out.nbytes)
            for i in (0, 399, 799):
                assert s.batch_get_into([keys[i]], [out.ctypes.data], [block]) == [block]
                assert np.array_equal(out, src[i * block:(i + 1) * block])
            # Four threads sharing the store's connection, each storing 25 MiB with the ordinary batch call and from
            # local memory: their reservations together stay within the connection's share too.
            codes = [None] * 8

            def writer(t):
                part = range(t * 100, (t + 1) * 100)
                put = s.batch_put_from if t % 2 else s.batch_put_from_local
                codes[t] = put([f"t{t}/{i}" for i in part], [src.ctypes.data + i * block for i in part], [block] * 100)

            threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(120)
            assert codes == [[0] * 100] * 8
            assert s.stats()["reservations"] == 0
    finally:
        node.stop()


_CLOSE_MID_COPY = r'''
import sys, threading, time
import numpy as np
import kvasir
from kvasir.errors import KvasirError
address, n, size = sys.argv[1], 48, 4 << 20
keys = [f"c/{i}" for i in range(n)]
src = np.random.default_rng(1).integers(0, 256, n * size, dtype=np.uint8)
out = np.zeros(n * size, dtype=np.uint8)
with kvasir.KvStore(address, transport="shm") as s:
    s.register_buffer(src.ctypes.data, src.nbytes)
    assert s.batch_put_from_local(keys, [src.ctypes.data + i * size for i in range(n)], [size] * n) == [0] * n
for r in range(16):
    s = kvasir.KvStore(address, transport="shm")
    s.register_buffer(out.ctypes.data, out.nbytes)
    s.register_buffer(src.ctypes.data, src.nbytes)
    if r % 2:   # a local put on another thread, the store closed under its copies
        t = threading.Thread(target=lambda: s.batch_put_from_local(keys, [src.ctypes.data + i * size for i in range(n)],
                                                                    [size] * n))
        t.start()
        time.sleep(0.001 * (r % 8))
        s.close()
        t.join(60)
        continue
    load = s.batch_get_into_multi_buffers_submit_local(keys, [[out.ctypes.data + i * size] for i in range(n)], [[size]] * n)
    time.sleep(0.001 * (r % 8))
    s.close()
    try:
        assert load.wait(timeout=60) == [size] * n
        assert np.array_equal(out, src)
    except KvasirError:
        pass   # the leases ended with the connection: the load says so
print("ok")
'''


def test_closing_the_store_while_local_copies_run_never_unmaps_the_arena_under_them(cli, tmp_path):
    # An async load's host copies (and a local put's, on another thread) read and write the arena by address; close()
    # unmapped it under them: the process died of SIGSEGV. Now each load and put keeps the mapping until its copies
    # ended: wait() returns the values or raises KvasirError, the put answers per key. A child process, so that a
    # crash fails this test rather than the run; 16 rounds, closes at 0-7 ms into the copies.
    node = Node("--memory", "512MiB", "--max-value", "8MiB")
    try:
        script = tmp_path / "close_mid_copy.py"
        script.write_text(_CLOSE_MID_COPY)
        env = {**os.environ, "PYTHONPATH": PYTHON_DIR}
        done = subprocess.run([sys.executable, str(script), node.address], env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])
    finally:
        node.stop()
