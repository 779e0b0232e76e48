"""PrefixCache, EvictionManager, the error family and SchedulerBridge (no node: a stub store where needed)."""
import pytest

from kvasir import errors as E
from kvasir.kv import (AccessStatsCollector, EvictionManager, KVPool, PrefixCache, SchedRequest, SchedulerBridge)
from kvasir.kv import errors as KE


def test_the_sagellm_example_runs_as_written():
    cache = PrefixCache(block_size=16, max_cached_blocks=100, enable_lru=True)
    hashes = cache.compute_block_hashes(list(range(48)))
    assert len(hashes) == 3
    cache.insert(hashes, [{"block_id": i} for i in range(len(hashes))])
    hit_blocks, num_tokens = cache.lookup(hashes)
    assert hit_blocks == [{"block_id": 0}, {"block_id": 1}, {"block_id": 2}] and num_tokens == 48
    assert cache.get_stats()["hit_rate"] == 1.0


def test_lookup_returns_the_longest_cached_prefix_and_counts_tokens():
    cache = PrefixCache(block_size=4, max_cached_blocks=10)
    h = cache.compute_block_hashes(list(range(20)))
    cache.insert(h[:2], ["a", "b"])
    cache.insert(h[3:4], ["d"])   # not reachable: its parent is missing
    r = cache.lookup(h)
    assert r == (["a", "b"], 8) and r.hit_hashes == h[:2] and r.store_blocks == 0
    s = cache.get_stats()
    assert (s["lookups"], s["hit_tokens"], s["miss_tokens"], s["cached_blocks"]) == (1, 8, 12, 3)
    assert s["hit_rate"] == 2 / 5
    assert cache.get(h[0]) == "a" and h[0] in cache and len(cache) == 3


def test_lru_evicts_the_tail_of_the_least_recent_prefix_first():
    cache = PrefixCache(block_size=1, max_cached_blocks=4)
    a = cache.compute_block_hashes([1, 2])
    b = cache.compute_block_hashes([7, 8])
    cache.insert(a, ["a0", "a1"])
    cache.insert(b, ["b0", "b1"])
    cache.lookup(a)                 # a is now the most recent
    c = cache.compute_block_hashes([9])
    cache.insert(c, ["c0"])         # one victim: b's tail
    assert b[1] not in cache and b[0] in cache and all(x in cache for x in a)
    assert cache.get_stats()["evictions"] == 1


def test_fifo_ignores_accesses():
    cache = PrefixCache(block_size=1, max_cached_blocks=2, enable_lru=False)
    x, y, z = (cache.compute_block_hashes([t]) for t in (1, 2, 3))
    cache.insert(x, ["x"])
    cache.insert(y, ["y"])
    cache.lookup(x)
    cache.insert(z, ["z"])
    assert x[0] not in cache and y[0] in cache
    assert cache.get_stats()["policy"] == "fifo"


def test_pins_protect_blocks_and_insert_fails_whole_when_everything_is_pinned():
    cache = PrefixCache(block_size=1, max_cached_blocks=2)
    h = cache.compute_block_hashes([1, 2])
    cache.insert(h, ["a", "b"])
    cache.pin(h)
    other = cache.compute_block_hashes([5])
    with pytest.raises(KE.AllPinnedError):
        cache.insert(other, ["x"])
    assert other[0] not in cache and len(cache) == 2
    cache.unpin(h[:1])
    with pytest.raises(KE.EvictionFailedError):
        cache.insert(cache.compute_block_hashes([5, 6]), ["x", "y"])   # room for one only
    cache.insert(other, ["x"])
    assert h[0] not in cache and h[1] in cache
    cache.unpin(h[1:])
    with pytest.raises(KE.RefCountUnderflowError):
        cache.unpin(h[1:])
    with pytest.raises(KE.CacheMissError):
        cache.pin(h[:1])
    with pytest.raises(KE.CacheMissError):
        cache.get(h[0])


def test_prefix_too_long_and_invalidate_and_clear():
    cache = PrefixCache(block_size=1, max_cached_blocks=2)
    h = cache.compute_block_hashes([1, 2, 3])
    with pytest.raises(KE.PrefixTooLongError) as e:
        cache.insert(h, [0, 1, 2])
    assert e.value.context == {"blocks": 3, "max_cached_blocks": 2}
    cache.insert(h[:2], [0, 1])
    assert cache.invalidate([h[0], h[2]]) == 1 and len(cache) == 1
    assert cache.lookup(h) == ([], 0)   # the head is gone: nothing is reachable
    assert cache.evict(5) == [h[1]] and cache.evict(1) == []
    cache.insert(h[:1], [0])
    cache.clear()
    assert len(cache) == 0


def test_eviction_manager_errors_and_metrics():
    m = EvictionManager("lru")
    with pytest.raises(KE.NoVictimError):
        m.select_victims(1)
    for b in "abc":
        m.record_insert(b)
    m.record_access("a")
    assert m.select_victims(2) == ["b", "c"] and m.select_victims(0) == []
    m.pin("b"), m.pin("c"), m.pin("a")
    with pytest.raises(KE.AllPinnedError):
        m.select_victims(1)
    assert m.unpin("a") and not m.unpin("a")
    with pytest.raises(KE.EvictionFailedError):
        m.select_victims(2, strict=True)
    m.record_eviction(m.select_victims(1))
    m.record_access("a", hit=False)   # evicted, then needed again: a re-prefill
    m.record_access("zz", hit=False)  # never cached: not one
    assert m.metrics() == {"policy": "lru", "tracked": 2, "pinned": 2, "evictions": 1, "re_prefills": 1,
                           "re_prefill_rate": 1.0}
    with pytest.raises(KE.ConfigInvalidError):
        EvictionManager("random")


def test_every_error_code_has_its_class_and_to_dict():
    codes = ["BUDGET_EXCEEDED", "MEMORY_EXHAUSTED", "POOL_FULL", "INVALID_HANDLE", "DOUBLE_FREE", "HANDLE_PINNED",
             "HANDLE_NOT_FOUND", "REF_COUNT_UNDERFLOW", "CACHE_MISS", "PREFIX_TOO_LONG", "NO_VICTIM", "EVICTION_FAILED",
             "ALL_PINNED", "TRANSFER_FAILED", "TRANSFER_TIMEOUT", "CHECKSUM_MISMATCH", "METADATA_MISMATCH",
             "CONFIG_MISSING", "CONFIG_INVALID"]
    assert sorted(KE.ERROR_CLASSES) == sorted("KV_" + c for c in codes)
    cause = OSError("disk")
    for c in codes:
        err = KE.error_for_code(c, "msg", {"k": 1}, cause)
        assert isinstance(err, KE.KVCacheError) and err.__cause__ is cause and err.cause is cause
        d = err.to_dict()
        assert d == {"error_type": type(err).__name__, "code": "KV_" + c, "message": "msg", "context": {"k": 1},
                     "retryable": err.retryable}
    base = KE.KVCacheError("POOL_FULL", "m")
    assert base.code == "KV_POOL_FULL" and base.to_dict()["error_type"] == "KVCacheError"


class StubStore:
    """Answers fixed per-key codes: enough to reach every transfer error without a node."""

    def __init__(self, code, verify_crc=False):
        self.code, self.verify_crc, self.regions = code, verify_crc, {}

    def register_buffer(self, p, n):
        self.regions[p] = n
        return 0

    def unregister_buffer(self, p):
        return 0 if self.regions.pop(p, None) is not None else -1

    def batch_get_into(self, keys, ptrs, sizes):
        return [self.code] * len(keys)

    def batch_put_from(self, keys, ptrs, sizes, chain=False, chain_parent=None):
        return [self.code if self.code < 0 else 0] * len(keys)

    def batch_is_exist(self, keys):
        return [1] * len(keys)


@pytest.mark.parametrize("code,verify,err", [
    (E.NOT_FOUND, False, KE.CacheMissError), (E.TIMEOUT, False, KE.TransferTimeoutError),
    (E.CHECKSUM_MISMATCH, True, KE.ChecksumMismatchError), (E.PROTOCOL_ERROR, True, KE.TransferFailedError),
    (E.PROTOCOL_ERROR, False, KE.TransferFailedError),
    (E.UNAVAILABLE, False, KE.TransferFailedError), (E.BUFFER_TOO_SMALL, False, KE.MetadataMismatchError),
    (10, False, KE.MetadataMismatchError)])   # a 10-byte value for a 16-byte block
def test_load_from_store_raises_the_typed_error_of_each_store_answer(code, verify, err):
    store = StubStore(code, verify)
    cache = PrefixCache(block_size=4, store=store)
    h = cache.compute_block_hashes([1, 2, 3, 4])
    with pytest.raises(err):
        cache.load_from_store(h, [bytearray(16)])
    assert store.regions == {}   # the temporary registrations are undone


def test_save_to_store_raises_transfer_errors_and_store_calls_need_a_store():
    cache = PrefixCache(block_size=4, store=StubStore(E.OUT_OF_MEMORY))
    h = cache.compute_block_hashes([1, 2, 3, 4])
    with pytest.raises(KE.TransferFailedError):
        cache.save_to_store(h, [b"x" * 16])
    bare = PrefixCache(block_size=4)
    with pytest.raises(KE.ConfigMissingError):
        bare.load_from_store(h, [bytearray(16)])
    with pytest.raises(KE.ConfigMissingError):
        bare.save_to_store(h, [b"x" * 16])


def test_lookup_records_accesses_in_a_stats_collector():
    stats = AccessStatsCollector()
    cache = PrefixCache(block_size=2, stats=stats)
    h = cache.compute_block_hashes([1, 2, 3, 4])
    cache.lookup(h)
    cache.insert(h, [0, 1])
    cache.lookup(h)
    s = stats.get_stats_summary()
    assert (s["total_accesses"], s["hits"], s["hits_by_tier"]) == (4, 2, {"engine": 2})


def test_scheduler_bridge_drives_a_small_engine_loop():
    pool = KVPool(max_tokens=64)
    cache = PrefixCache(block_size=4, max_cached_blocks=32)
    bridge = SchedulerBridge(pool, cache)
    system = list(range(100, 108))   # two blocks every request shares
    a = SchedRequest("a", system + [1, 2, 3], "prefill", priority=1)
    plan = bridge.step([a])
    pa = plan.requests["a"]
    assert (pa.action, pa.cached_tokens, len(pa.blocks_to_compute), pa.tail_tokens) == ("run", 0, 2, 3)
    assert [op[0] for op in plan.ops] == ["lookup", "alloc"]
    for t in range(4):   # decode: crossing the 11-token capacity adds a 4-token chunk
        a.token_ids.append(50 + t)
        a.phase = "decode"
        plan = bridge.step([a])
        assert plan.requests["a"].action == "run"
    assert pool.used_tokens == 15
    a.phase = "finished"
    plan = bridge.step([a])
    assert [op[0] for op in plan.ops] == ["insert", "free", "free"] and pool.used_tokens == 0
    assert len(cache) == 3
    # b shares the system prompt: two cached blocks; c does not fit and waits; low priority goes last
    b = SchedRequest("b", system + [9] * 40, "prefill", priority=0)
    c = SchedRequest("c", [7] * 30, "prefill", priority=5)
    plan = bridge.step([b, c])
    assert plan.requests["c"].action == "run" and plan.requests["b"].action == "wait"
    assert plan.requests["b"].cached_tokens == 8 and len(plan.requests["b"].local_blocks) == 2
    c.phase = "preempted"
    b.phase = "prefill"
    plan = bridge.step([c, b])
    assert plan.requests["c"].action == "released" and plan.requests["b"].action == "run"
    assert cache.pin_count(plan.requests["b"].local_blocks[0]) == 1
    bridge.release_all()
    assert pool.used_tokens == 0 and pool.num_handles == 0 and cache.get_stats()["pinned_blocks"] == 0
    with pytest.raises(KE.ConfigInvalidError):
        SchedRequest("x", [], "running")
