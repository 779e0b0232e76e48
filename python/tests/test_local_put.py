"""Local puts (kvasir.local_put) built per chunk with numpy: the ALLOC metadata must be byte for byte what the protocol
encoder writes (and the golden vectors hold), the share arithmetic must match the per-key version, and stores of odd
shapes — block counts and sizes that are no multiple of the chunk sizes, keys of many lengths and kinds, values gathered
from mixed pieces, batches larger than the connection's reservation share — must read back byte-exact, with each key's
code in its own place. (The pipeline against a GPU: test_gpu.py; the common cases: test_local_load.py.)"""
import json
import os
import random

import numpy as np
import pytest

import kvasir
from kvasir import errors as E
from kvasir import local_put
from kvasir import protocol as P
from kvasir import reserve
from kvasir.local_load import _KeyBytes

from conftest import REPO, Node, wait_until


def _keys(rng: random.Random, kind: str, n: int):
    if kind == "one length":
        return [f"k{i:06d}" for i in range(n)]
    if kind == "runs":   # blk/0 .. blk/9, blk/10 .. : a few runs of one length each
        return [f"blk/{i}" for i in range(n)]
    if kind == "many lengths":
        return ["x" * rng.randint(1, 300) + str(i) for i in range(n)]
    if kind == "bytes with NULs":
        return [bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))) + b"\0" + str(i).encode() for i in range(n)]
    if kind == "str with NULs":
        return [f"a\0b/{i}" for i in range(n)]
    if kind == "unicode":
        return [f"ключ/é/{i}" + "🙂" * rng.randint(0, 3) for i in range(n)]
    raise AssertionError(kind)


KINDS = ["one length", "runs", "many lengths", "bytes with NULs", "str with NULs", "unicode"]


@pytest.mark.parametrize("kind", KINDS)
def test_alloc_and_key_batch_metadata_are_byte_for_byte_the_protocol_encoders(kind):
    rng = random.Random(kind)
    for n in (0, 1, 2, 3, 63, 64, 65, 257, 1000):
        keys = _keys(rng, kind, n)
        encoded = [k.encode("utf-8") if isinstance(k, str) else k for k in keys]
        key_bytes = _KeyBytes(keys)
        assert key_bytes.length.tolist() == [len(k) for k in encoded]
        for idx in (np.arange(n), np.array(sorted(rng.sample(range(n), n // 3)), dtype=np.int64), np.arange(n)[::-1]):
            lengths = np.array([rng.randrange(1 << 40) for _ in idx], dtype=np.int64)
            tail = lengths.astype("<u8").view(np.uint8).reshape(-1, 8)
            suffix = bytes(rng.randrange(256) for _ in range(rng.choice((0, 4, 32, 36))))
            expect = P.encode_alloc_request([encoded[i] for i in idx], lengths.tolist()) + suffix
            assert key_bytes.frame(idx, tail, suffix) == expect
            assert key_bytes._frame_bytes(idx, key_bytes.length[idx], tail, suffix) == expect   # the many-lengths path
            assert key_bytes.frame(idx) == P.encode_key_batch([encoded[i] for i in idx])


def test_alloc_and_lease_metadata_match_the_golden_vectors():
    with open(os.path.join(REPO, "tests", "vectors", "frames.json"), encoding="utf-8") as f:
        vectors = {v["name"]: v for v in json.load(f)["vectors"]}
    checked = 0
    for name, v in vectors.items():
        if not (name.startswith("alloc_request") or name == "lease_request"):
            continue
        data = bytes.fromhex(v["hex"])
        meta = data[P.HEADER_SIZE:P.HEADER_SIZE + P.unpack_header(data).meta_length]
        m = v["frame"]["meta"]
        if name == "lease_request":
            keys = [bytes.fromhex(k) for k in m["keys"]]
            assert _KeyBytes(keys).frame(np.arange(len(keys))) == meta
        else:
            keys = [bytes.fromhex(e["key"]) for e in m["entries"]]
            lengths = np.array([e["value_length"] for e in m["entries"]], dtype=np.int64)
            suffix = (b"" if "ttl_seconds" not in m else m["ttl_seconds"].to_bytes(4, "little")) + \
                bytes.fromhex(v.get("arena", {}).get("proof", ""))
            tail = lengths.astype("<u8").view(np.uint8).reshape(-1, 8)
            for as_str in (False, True):   # str keys are encoded in one call: the same bytes
                ks = [k.decode() for k in keys] if as_str else keys
                assert _KeyBytes(ks).frame(np.arange(len(keys)), tail, suffix) == meta, name
        checked += 1
    assert checked == 4


def test_the_share_arithmetic_over_arrays_matches_the_per_key_version():
    rng = np.random.default_rng(3)
    choices = np.array([P.WireStatus.OK, P.WireStatus.OUT_OF_MEMORY, P.WireStatus.VALUE_TOO_LARGE], dtype=np.uint8)
    for _ in range(300):
        n = int(rng.integers(0, 40))
        statuses = rng.choice(choices, n, p=[0.6, 0.3, 0.1]).astype(np.uint8)
        lengths = rng.integers(0, 1 << 30, n)
        others = int(rng.choice([0, 0, 1, 1 << 20]))
        retry, accepted = reserve.refused_for_share(statuses.tolist(), lengths.tolist(), others)
        again, learned = reserve.refused_for_share_array(statuses, lengths, others)
        assert np.flatnonzero(again).tolist() == retry and learned == accepted


@pytest.fixture(scope="module")
def put_node(cli):
    """A node with 50-key batches, so the node's batch limit cuts chunks too."""
    n = Node("--memory", "128MiB", "--max-batch", "50", "--max-value", "4MiB")
    yield n
    n.stop()


def _read_back(s, keys, values):
    """Every value read back over shared memory into a registered buffer and compared byte for byte."""
    width = max([len(v) for v in values] + [1])
    out = np.zeros(width * len(keys), dtype=np.uint8)
    s.register_buffer(out.ctypes.data, out.nbytes)
    try:
        got = s.batch_get_into(keys, [out.ctypes.data + i * width for i in range(len(keys))], [width] * len(keys))
        assert got == [len(v) for v in values]
        for i, v in enumerate(values):
            assert np.array_equal(out[i * width:i * width + len(v)], v), f"value {i} ({len(v)} bytes) differs"
    finally:
        s.unregister_buffer(out.ctypes.data)


@pytest.mark.parametrize("kind", KINDS)
def test_odd_counts_and_sizes_in_odd_chunks_store_byte_exact(put_node, kind, monkeypatch):
    # Chunk caps that no value size divides (the first chunk's differs again), so chunk ends fall anywhere.
    monkeypatch.setattr(local_put, "_FIRST_CHUNK_BYTES", 10_007)
    monkeypatch.setattr(local_put, "_STORE_CHUNK_BYTES", 65_537)
    rng = random.Random(f"odd {kind}")
    nprng = np.random.default_rng(len(kind))
    with kvasir.KvStore(put_node.address, transport="shm") as s:
        for n in (1, 3, 7, 131):
            keys = [k + (f"/{kind}/{n}" if isinstance(k, str) else f"/{n}".encode()) for k in _keys(rng, kind, n)]
            sizes = [int(x) for x in nprng.integers(1, 9000, n)]
            src = nprng.integers(0, 256, sum(sizes), dtype=np.uint8)
            s.register_buffer(src.ctypes.data, src.nbytes)
            at = np.concatenate(([0], np.cumsum(sizes)))[:-1]
            ptrs = [src.ctypes.data + int(a) for a in at]
            assert s.batch_put_from_local(keys, ptrs, sizes) == [0] * n
            _read_back(s, keys, [src[a:a + z] for a, z in zip(at, sizes)])
            s.unregister_buffer(src.ctypes.data)
        assert s.stats()["reservations"] == 0


def test_mixed_pieces_per_value_gather_byte_exact(put_node, monkeypatch):
    # 1 to 6 pieces per value, some empty, from two buffers, in an order unrelated to their addresses; values of
    # 0 bytes to 40 KiB; chunk caps that cut between values of one request.
    monkeypatch.setattr(local_put, "_FIRST_CHUNK_BYTES", 5_003)
    monkeypatch.setattr(local_put, "_STORE_CHUNK_BYTES", 50_021)
    rng = np.random.default_rng(8)
    a = rng.integers(0, 256, 4 << 20, dtype=np.uint8)
    b = rng.integers(0, 256, 4 << 20, dtype=np.uint8)
    keys, addrs, sizes, values = [], [], [], []
    used = 0
    for i in range(97):
        cuts = [int(x) for x in rng.integers(0, 8000, int(rng.integers(1, 7)))]
        if i % 10 == 0:
            cuts[0] = 0   # an empty piece
        pa, pz, parts = [], [], []
        for j, z in enumerate(cuts):
            buf = a if (i + j) % 2 else b
            off = int(rng.integers(0, buf.nbytes - z)) if j % 3 else used   # some from far apart, some in a row
            if j % 3 == 0:
                used += z
            pa.append(buf.ctypes.data + off)
            pz.append(z)
            parts.append(buf[off:off + z])
        keys.append(f"mixed/{i}/" + "y" * (i % 13))
        addrs.append(pa)
        sizes.append(pz)
        values.append(np.concatenate(parts))
    with kvasir.KvStore(put_node.address, transport="shm") as s:
        s.register_buffer(a.ctypes.data, a.nbytes)
        s.register_buffer(b.ctypes.data, b.nbytes)
        assert s.batch_put_from_multi_buffers_local(keys, addrs, sizes) == [0] * len(keys)
        _read_back(s, keys, values)
        assert s.stats()["reservations"] == 0


def test_invalid_and_too_large_values_get_their_own_codes_among_stored_ones(put_node):
    rng = np.random.default_rng(9)
    src = rng.integers(0, 256, 5 << 20, dtype=np.uint8)
    with kvasir.KvStore(put_node.address, transport="shm") as s:
        s.register_buffer(src.ctypes.data, src.nbytes)
        too_long = "k" * (s.hello.max_key_bytes + 1)
        keys = ["ok/0", "", "ok/1", too_long, "ok/2", "big", "ok/3"]
        sizes = [100, 1, 0, 1, 70_000, s.max_value_bytes + 1, 3]
        ptrs = [src.ctypes.data + i * 1000 for i in range(len(keys))]
        codes = s.batch_put_from_local(keys, ptrs, sizes)
        assert codes == [0, E.INVALID_KEY, 0, E.INVALID_KEY, 0, E.VALUE_TOO_LARGE, 0]
        stored = [0, 2, 4, 6]
        _read_back(s, [keys[i] for i in stored], [src[i * 1000:i * 1000 + sizes[i]] for i in stored])


def test_numpy_arrays_of_addresses_and_sizes_store_as_lists_do(put_node):
    rng = np.random.default_rng(10)
    block, n = 3001, 120
    src = rng.integers(0, 256, block * n, dtype=np.uint8)
    keys = [f"arr/{i}" for i in range(n)]
    with kvasir.KvStore(put_node.address, transport="shm") as s:
        s.register_buffer(src.ctypes.data, src.nbytes)
        ptrs = src.ctypes.data + block * np.arange(n, dtype=np.uint64)
        for p, z in ((ptrs, np.full(n, block, dtype=np.int32)), (ptrs.astype(np.int64), np.full(n, block, dtype=np.uint64))):
            assert s.batch_put_from_local(keys, p, z) == [0] * n
            _read_back(s, keys, [src[i * block:(i + 1) * block] for i in range(n)])
        with pytest.raises(ValueError, match="int"):
            s.batch_put_from_local(keys[:1], np.array([1.5]), [block])
        with pytest.raises(ValueError, match="64 bits"):
            s.batch_put_from_local(keys[:1], np.array([1 << 63], dtype=np.uint64), [block])
        with pytest.raises(ValueError, match="64 bits"):
            s.batch_put_from_local(keys[:1], [1 << 64], [block])
        with pytest.raises(ValueError, match="bool"):
            s.batch_put_from_local(keys[:1], [src.ctypes.data], [True])


def test_a_multi_buffer_put_larger_than_the_share_with_odd_sizes_stores_every_value(cli):
    # A 1 MiB share and ~6 MiB of values of odd sizes, each in 1-3 pieces: the put reserves within the share (keys
    # refused for it are asked for again) and every byte reads back.
    node = Node("--memory", "64MiB", "--max-reserved-per-connection", "1MiB", "--max-batch", "64")
    try:
        rng = np.random.default_rng(11)
        n = 301
        lengths = [int(x) for x in rng.integers(1, 40_000, n)]
        src = rng.integers(0, 256, sum(lengths), dtype=np.uint8)
        at = np.concatenate(([0], np.cumsum(lengths)))
        addrs, sizes = [], []
        for i, z in enumerate(lengths):
            cut = sorted({0, z, *[int(c) for c in rng.integers(0, z, i % 3)]})
            addrs.append([src.ctypes.data + int(at[i]) + c for c in cut[:-1]])
            sizes.append([b - a for a, b in zip(cut, cut[1:])])
        keys = [f"share/{i}/" + "z" * (i % 17) for i in range(n)]
        with kvasir.KvStore(node.address, transport="shm") as s:
            s.register_buffer(src.ctypes.data, src.nbytes)
            assert s.batch_put_from_multi_buffers_local(keys, addrs, sizes) == [0] * n
            assert s._connection().reservations.limit <= 1 << 20   # the node refused keys for the share: it was hit
            assert s.stats()["reservations"] == 0
            _read_back(s, keys, [src[at[i]:at[i + 1]] for i in range(n)])
    finally:
        node.stop()


def test_keys_whose_reservations_expired_before_commit_answer_timeout_in_their_own_places(cli, monkeypatch):
    # The first COMMIT waits until the node has dropped every reservation then held (1 s lease timeout): the keys of
    # the chunks reserved by then answer TIMEOUT (COMMIT says NOT_FOUND), later chunks store. The client is made to
    # trust its reservations regardless, so that the node's answer is what decides.
    node = Node("--memory", "64MiB", "--lease-timeout", "1")
    try:
        from kvasir import shm
        monkeypatch.setattr(shm, "TRUST_FRACTION", 1000.0)
        monkeypatch.setattr(local_put, "_FIRST_CHUNK_BYTES", 20_000)
        monkeypatch.setattr(local_put, "_STORE_CHUNK_BYTES", 20_000)
        block, n = 5000, 40   # 4 keys per chunk: 10 chunks
        src = np.random.default_rng(12).integers(0, 256, block * n, dtype=np.uint8)
        keys = [f"late/{i}" for i in range(n)]
        commit, waited = local_put._LocalPut._commit, []
        with kvasir.KvStore(node.address, transport="shm") as s, kvasir.KvStore(node.address) as watcher:
            def late_commit(self):
                if not waited:   # every ALLOC sent so far answered: its keys are reserved, and expire below
                    wait_until(lambda: all(p[0].done.is_set() for p in self.pending), "the ALLOCs sent to be answered")
                    waited.append(sum(len(p[1]) for p in self.pending) + sum(len(c[2]) for c in self.copying))
                    wait_until(lambda: watcher.stats()["reservations"] == 0, "the node to drop the reservations held")
                commit(self)
            monkeypatch.setattr(local_put._LocalPut, "_commit", late_commit)
            s.register_buffer(src.ctypes.data, src.nbytes)
            codes = s.batch_put_from_local(keys, [src.ctypes.data + i * block for i in range(n)], [block] * n)
            late = codes.index(0)
            assert waited[0] >= 8 and late == waited[0], (waited, codes)   # at least two chunks were held
            assert codes == [E.TIMEOUT] * late + [0] * (n - late)
            assert s.batch_is_exist(keys) == [0] * late + [1] * (n - late)
            _read_back(s, keys[late:], [src[i * block:(i + 1) * block] for i in range(late, n)])
    finally:
        node.stop()


def test_ramped_chunks_double_up_to_the_cap_and_halve_towards_the_end_covering_every_key():
    mib = 1 << 20
    keys = np.full(16384, 9, dtype=np.int64)
    values = np.full(16384, 128 << 10, dtype=np.int64)
    values[::7] = 4097   # not every value one size
    for up in (False, True):
        for down in (False, True):
            chunks = local_put._plan(keys, values, 8192, 1 << 20, 256 * mib, 32 * mib, up, down)
            assert chunks[0][0] == 0 and chunks[-1][1] == len(keys)
            assert all(a == b for (_, a), (b, _) in zip(chunks, chunks[1:]))
            held = [int(values[a:b].sum()) for a, b in chunks]
            assert held[0] <= 32 * mib and max(held) <= 256 * mib
            if up:   # 32, 64, 128, 256 MiB (less the odd values)
                assert [h // mib for h in held[:4]] == [31, 63, 127, 255]
            if down:   # each of the last ones at most half of what was left from it on, the last two at most 64 MiB
                left = [int(values[a:].sum()) for a, _ in chunks]
                assert all(h <= x // 2 for h, x in zip(held, left) if x > 64 * mib)
                assert held[-2] <= 64 * mib and held[-1] <= 64 * mib


def test_two_dimensional_arrays_of_pieces_store_as_lists_of_lists_do(put_node):
    # An engine's block table as arrays: one row of piece addresses (and sizes) per key, layer-major in the source.
    rng = np.random.default_rng(13)
    layers, piece, n = 5, 1001, 64
    src = rng.integers(0, 256, layers * piece * n, dtype=np.uint8)
    keys = [f"rows/{i}" for i in range(n)]
    addrs = src.ctypes.data + piece * (np.arange(layers)[None, :] * n + np.arange(n)[:, None])
    sizes = np.full((n, layers), piece, dtype=np.int64)
    values = [np.concatenate([src[(j * n + i) * piece:(j * n + i + 1) * piece] for j in range(layers)]) for i in range(n)]
    with kvasir.KvStore(put_node.address, transport="shm") as s:
        s.register_buffer(src.ctypes.data, src.nbytes)
        assert s.batch_put_from_multi_buffers_local(keys, addrs, sizes) == [0] * n
        _read_back(s, keys, values)
        assert s.batch_put_from_multi_buffers_local(keys, addrs.tolist(), sizes.tolist()) == [0] * n
        _read_back(s, keys, values)
        with pytest.raises(ValueError, match="same shape"):
            s.batch_put_from_multi_buffers_local(keys, addrs, sizes[:, :2])


def test_a_local_put_over_tls_one_request_at_a_time_stores_byte_exact(cli, certs, monkeypatch):
    # Over TLS a connection runs one request at a time: no ALLOC ahead, each COMMIT's reply read at once.
    monkeypatch.setattr(local_put, "_FIRST_CHUNK_BYTES", 30_011)
    monkeypatch.setattr(local_put, "_STORE_CHUNK_BYTES", 70_001)
    node = Node("--memory", "64MiB", "--tls-cert", certs["server"], "--tls-key", certs["key"])
    try:
        rng = np.random.default_rng(14)
        sizes = [int(x) for x in rng.integers(1, 20_000, 77)]
        src = rng.integers(0, 256, sum(sizes), dtype=np.uint8)
        at = np.concatenate(([0], np.cumsum(sizes)))
        keys = [f"tls/{i}/" + "t" * (i % 5) for i in range(len(sizes))]
        with kvasir.KvStore(node.address, tls_ca=certs["ca"], transport="shm", connect_timeout=10, request_timeout=10) as s:
            assert s.transport == "shm" and not s._connection().pipelined
            s.register_buffer(src.ctypes.data, src.nbytes)
            assert s.batch_put_from_local(keys, [src.ctypes.data + int(a) for a in at[:-1]], sizes) == [0] * len(keys)
            assert s.stats()["reservations"] == 0
            _read_back(s, keys, [src[at[i]:at[i + 1]] for i in range(len(keys))])
    finally:
        node.stop()


def test_empty_calls_all_invalid_keys_and_empty_values(put_node):
    src = np.arange(100, dtype=np.uint8)
    with kvasir.KvStore(put_node.address, transport="shm") as s:
        s.register_buffer(src.ctypes.data, src.nbytes)
        assert s.batch_put_from_local([], [], []) == []
        assert s.batch_put_from_multi_buffers_local([], [], []) == []
        assert s.batch_put_from_local(["", ""], [src.ctypes.data] * 2, [1, 1]) == [E.INVALID_KEY] * 2
        assert s.batch_put_from_multi_buffers_local(["empty/0"], [[]], [[]]) == [0]
        assert s.batch_put_from_local(["empty/1", "one"], [src.ctypes.data] * 2, [0, 1]) == [0, 0]
        assert [s.get(k) for k in ("empty/0", "empty/1", "one")] == [b"", b"", b"\x00"]
        assert s.stats()["reservations"] == 0


def test_a_chained_local_put_larger_than_the_connections_share_keeps_its_whole_chain(cli, monkeypatch):
    # Chunks of 4 blocks with two ALLOCs ahead and a node share of 6 blocks: the first put of the connection has keys
    # refused for the share in the middle of the chain. Every block must still continue the one before it, so that under
    # prefix-aware eviction what survives of the chain is a prefix whatever order its blocks were last read in. (The
    # .NET client's ShmTransportTests.A_chained_put_larger_than_the_connections_reservation_share_keeps_its_whole_chain.)
    block, length = 64 * 1024, 40
    node = _chain_node(monkeypatch, chunk_bytes=4 * block, share_bytes=6 * block)
    try:
        rng = np.random.default_rng(5)
        src = rng.integers(0, 256, length * block, dtype=np.uint8)
        keys = [f"long/{i}" for i in range(length)]
        with kvasir.KvStore(node.address, transport="shm") as s:
            s.register_buffer(src.ctypes.data, src.nbytes)
            assert s.batch_put_from_local(keys, [src.ctypes.data + i * block for i in range(length)],
                                          [block] * length, chain=True) == [0] * length
            assert s._connection().reservations.limit < 8 << 20 >> 2   # keys were refused for the share: it was hit
            assert s.stats()["reservations"] == 0
            _read_back(s, keys, [src[i * block:(i + 1) * block] for i in range(length)])   # last read in chain order
            _assert_evicted_as_prefix(s, keys, block)
    finally:
        node.stop()


def _chain_node(monkeypatch, chunk_bytes, share_bytes):
    """The chained local-put tests' node: an 8 MiB arena under prefix-aware eviction with a per-connection share of
    share_bytes; the client cuts puts into fixed chunks of chunk_bytes (no ramp-down)."""
    monkeypatch.setattr(local_put, "_FIRST_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(local_put, "_STORE_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(local_put, "_RAMP_DOWN", 0)
    return Node("--memory", "8MiB", "--max-value", "1MiB", "--eviction", "prefix",
                "--max-reserved-per-connection", str(share_bytes))


def _assert_evicted_as_prefix(s, keys, block):
    """Unchained fillers, newer than every block of the chain, until half of it is gone: under prefix-aware eviction the
    least recently used leaf goes first, which must always be the chain's current tail, so what is left is a prefix."""
    filler = np.zeros(block, dtype=np.uint8)
    for f in range(200):
        assert s.put(f"filler/{f}", filler) == 0
        present = s.batch_is_exist(keys)
        stored = present.count(1)
        assert present[:stored] == [1] * stored, f"after filler {f} the chain has a hole: {''.join(map(str, present))}"
        if stored <= len(keys) // 2:
            return
    pytest.fail("200 fillers did not evict half of the chain")


def _uneven_chain(block3_bytes, seed, name, block=64 * 1024, length=40):
    """A chain of `length` blocks of `block` bytes but block 3 (`block3_bytes`) and blocks 4 and 5 (half a block), laid
    out back to back in one random buffer: (keys, sizes, buffer, each block's bytes)."""
    sizes = [block3_bytes if i == 3 else block // 2 if i in (4, 5) else block for i in range(length)]
    at = np.concatenate(([0], np.cumsum(sizes)))
    src = np.random.default_rng(seed).integers(0, 256, int(at[-1]), dtype=np.uint8)
    return [f"{name}/{i}" for i in range(length)], sizes, src, [src[at[i]:at[i + 1]] for i in range(length)]


def _put_local_chain(s, keys, sizes, src):
    """batch_put_from_local of the blocks laid out back to back in `src`, as one chain; the per-key codes."""
    s.register_buffer(src.ctypes.data, src.nbytes)
    at = np.concatenate(([0], np.cumsum(sizes)))
    return s.batch_put_from_local(keys, [src.ctypes.data + int(a) for a in at[:-1]], sizes, chain=True)


def test_a_chained_local_put_stores_a_key_refused_for_the_share_before_the_keys_accepted_after_it(cli, monkeypatch):
    # Chunks of at most 3 blocks, two ALLOCs ahead, a node share of 4 blocks (256 KiB). Chunk 0 is blocks 0..2 (192 KiB);
    # chunk 1 is block 3 alone (176 KiB), refused for the share; chunk 2, sent before chunk 1's reply was read, is blocks
    # 4..6, and the node accepts 4 and 5 (32 KiB each) and refuses 6. Block 4 continues block 3, so block 3 must be stored
    # before block 4 is published. (Before: chunk 2's COMMIT continued block 3, not stored yet, so block 4 became a root and
    # block 3, asked for again after it, a leaf: eviction took block 3 out of the middle of the chain.)
    block, length = 64 * 1024, 40
    node = _chain_node(monkeypatch, chunk_bytes=3 * block, share_bytes=4 * block)
    try:
        keys, sizes, src, blocks = _uneven_chain(176 * 1024, 6, "uneven", block, length)
        with kvasir.KvStore(node.address, transport="shm") as s:
            assert s._connection().pipelined
            assert _put_local_chain(s, keys, sizes, src) == [0] * length
            assert s._connection().reservations.limit < 8 << 20 >> 2   # keys were refused for the share: it was hit
            assert s.stats()["reservations"] == 0
            _read_back(s, keys, blocks)   # last read in chain order
            _assert_evicted_as_prefix(s, keys, block)
    finally:
        node.stop()


def test_a_chained_local_put_whose_waiting_runs_crowd_out_the_refused_key_still_links_the_key_after_it(cli, monkeypatch):
    # As above, but block 3 is 208 KiB: asked for again while blocks 4 and 5 (64 KiB) wait for it, it does not fit the
    # 256 KiB share beside them and is refused again, so they are published first, continuing block 3 that is not stored:
    # block 4 became a root and block 3, stored after it, a leaf that eviction took out of the middle of the chain.
    # Block 4 is stored again continuing block 3 once block 3 is stored (the rest of the chain still continues block 4).
    block, length = 64 * 1024, 40
    node = _chain_node(monkeypatch, chunk_bytes=3 * block, share_bytes=4 * block)
    try:
        keys, sizes, src, blocks = _uneven_chain(208 * 1024, 7, "crowded", block, length)
        with kvasir.KvStore(node.address, transport="shm") as s:
            assert s._connection().pipelined
            assert _put_local_chain(s, keys, sizes, src) == [0] * length
            assert s.stats()["reservations"] == 0
            _read_back(s, keys, blocks)   # last read in chain order
            _assert_evicted_as_prefix(s, keys, block)
    finally:
        node.stop()


def test_a_chained_local_put_whose_connection_fails_while_relinking_reports_the_relinked_keys_stored(cli, monkeypatch):
    # As above, but the connection fails as the relink pass starts (every other key is settled by then): block 4 was
    # stored (as a root) before its second store was asked for, so its code is 0 like the rest, not the connection's error.
    block, length = 64 * 1024, 40
    node = _chain_node(monkeypatch, chunk_bytes=3 * block, share_bytes=4 * block)
    start, relinked = local_put._LocalPut._start_relink, []

    def failing_relink(self):
        keys = start(self)
        relinked.extend(keys.tolist())
        self.conn.close()
        return keys

    monkeypatch.setattr(local_put._LocalPut, "_start_relink", failing_relink)
    try:
        keys, sizes, src, blocks = _uneven_chain(208 * 1024, 7, "cut", block, length)
        with kvasir.KvStore(node.address, transport="shm") as s:
            codes = _put_local_chain(s, keys, sizes, src)
        assert relinked == [4]
        assert codes == [0] * length
        with kvasir.KvStore(node.address) as s:
            assert s.batch_is_exist(keys) == [1] * length
            _read_back(s, keys, blocks)
    finally:
        node.stop()


def test_chained_puts_to_a_node_that_does_not_grant_chained_commits(cli):
    # A node withholding HELLO feature 0x20 (as one that predates it) refuses CHAIN on COMMIT. A chained batch_put_from
    # goes over TCP as chained PUTs: byte-exact, and every block continues the one before it (what prefix-aware eviction
    # leaves is a prefix). A chained batch_put_from_local stores every value byte-exact through the arena, unlinked (its
    # documented fallback): it sends no CHAIN the node would answer with BAD_FRAME and a closed connection.
    block, length = 64 * 1024, 40
    node = Node("--memory", "8MiB", "--max-value", "1MiB", "--eviction", "prefix", "--withhold-features", "0x20")
    try:
        rng = np.random.default_rng(8)
        src = rng.integers(0, 256, length * block, dtype=np.uint8)
        values = [src[i * block:(i + 1) * block - i] for i in range(length)]
        with kvasir.KvStore(node.address, transport="shm") as s:
            assert s.transport == "shm" and not s.hello.features & P.FEATURE_COMMIT_CHAIN
            s.register_buffer(src.ctypes.data, src.nbytes)
            local = [f"local/{i}" for i in range(length)]
            assert s.batch_put_from_local(local, [v.ctypes.data for v in values], [len(v) for v in values],
                                          chain=True) == [0] * length
            conn = s._connection()
            _read_back(s, local, values)
            assert s._connection() is conn   # no COMMIT was refused: the connection was kept
            commits, puts = s.stats()["requests_commit"], s.stats()["requests_put"]
            keys = [f"tcp/{i}" for i in range(length)]
            assert s.batch_put_from(keys, [v.ctypes.data for v in values], [len(v) for v in values], chain=True) == [0] * length
            assert s.stats()["requests_commit"] == commits and s.stats()["requests_put"] > puts
            _read_back(s, keys, values)   # last read in chain order
            _assert_evicted_as_prefix(s, keys, block)
    finally:
        node.stop()
