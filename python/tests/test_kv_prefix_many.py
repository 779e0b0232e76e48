"""PrefixCache.lookup_many (EvictionManager.lookup_prefixes): many chains looked up in one call must give exactly what
one lookup per chain in the same order gives: matches, store runs, counters, eviction order, re-prefills, stats
records, pins; checked by feeding two caches the same random operations, one of them looking up in batches."""
import random

import pytest

from kvasir.kv import (AccessStatsCollector, EvictionPolicy, KVPool, PrefixCache, SchedRequest, SchedulerBridge,
                       compute_block_hashes)


class _NewestFirst(EvictionPolicy):
    """A policy of the caller's own (evicts the newest first, an access counts), called per block."""
    name = "newest-first"

    def __init__(self):
        self.held = []
        self.accesses = []

    def insert(self, block_id):
        self.held.append(block_id)

    def access(self, block_id):
        self.accesses.append(block_id)

    def remove(self, block_id):
        self.held.remove(block_id)

    def order(self):
        return iter(reversed(self.held))

    def __len__(self):
        return len(self.held)

    def __contains__(self, block_id):
        return block_id in self.held


class _SetStore:
    """A store stub whose EXISTS answers from a set of keys, counting the calls and keys asked."""

    def __init__(self, keys):
        self.keys = set(keys)
        self.calls = 0
        self.asked = 0

    def batch_is_exist(self, keys):
        self.calls += 1
        self.asked += len(keys)
        return [1 if k in self.keys else 0 for k in keys]


def _prompts(n, blocks=12, block_size=2, extra_keys=None, seed=0):
    rng = random.Random(seed)
    return [compute_block_hashes([rng.randrange(50_000) for _ in range(blocks * block_size)], block_size,
                                 extra_keys or []) for _ in range(n)]


def _summary_without_time(stats):
    return [(a["block"], a["hit"], a["tier"], a["tokens"]) for a in stats.accesses()]


@pytest.mark.parametrize("policy", ["lru", "fifo", "own"])
def test_lookup_many_gives_what_one_lookup_per_chain_gives_in_matches_counters_order_and_records(policy):
    # Chains: prefixes of prompts (partial hits), whole prompts, empty chains, one block, a prompt with a block
    # repeated, a prompt continued by another's blocks, the same prompt hashed with extra keys (never cached: a
    # miss from its first block), duplicates within one batch. A small capacity makes evictions and re-prefills.
    prompts = _prompts(40)
    salted = _prompts(40, extra_keys=["model-b", "lora-3"])
    store_keys = {"kvb1:" + h for p in prompts[::3] for h in p}

    def make():
        own = _NewestFirst() if policy == "own" else None
        stats = AccessStatsCollector()
        cache = PrefixCache(block_size=2, max_cached_blocks=60, enable_lru=policy == "lru",
                            policy=own, store=_SetStore(store_keys), stats=stats)
        return cache, stats, own

    single, single_stats, single_policy = make()
    batched, batched_stats, batched_policy = make()
    rng = random.Random({"lru": 1, "fifo": 2, "own": 3}[policy])
    pinned = []

    def chain():
        p = rng.randrange(len(prompts))
        kind = rng.randrange(10)
        if kind == 0:
            return []
        if kind == 1:
            return salted[p][:rng.randrange(1, 13)]
        if kind == 2:
            return [prompts[p][rng.randrange(12)]]
        c = prompts[p][:rng.randrange(1, 13)]
        if kind == 3:
            c = c + [c[0]]
        if kind == 4:
            c = c + prompts[rng.randrange(len(prompts))][:rng.randrange(1, 5)]
        return c

    hits = 0
    for step in range(500):
        op = rng.randrange(8)
        if op in (0, 7):
            hashes = list(dict.fromkeys(chain()))
            if hashes:
                values = [(step, k) for k in range(len(hashes))]
                assert single.insert(hashes, values) == batched.insert(hashes, values)
        elif op == 1:
            gone = [h for h in chain()[:2] if h not in pinned]
            assert single.invalidate(gone) == batched.invalidate(gone)
        elif op == 2:
            held = [h for h in chain() if h in single]
            if held and len(pinned) < 20:
                single.pin(held[:1])
                batched.pin(held[:1])
                pinned.append(held[0])
            elif pinned:
                h = pinned.pop(rng.randrange(len(pinned)))
                single.unpin([h])
                batched.unpin([h])
        else:
            batch = [chain() for _ in range(rng.randrange(0, 25))]
            if batch and rng.randrange(4) == 0:
                batch.append(list(batch[0]))   # a duplicate in the same batch
            check_store = rng.randrange(2) == 0
            calls = batched.store.calls
            many = batched.lookup_many(iter(tuple(c) for c in batch), check_store=check_store)
            assert batched.store.calls - calls <= 1   # one EXISTS for the whole batch at most
            assert len(many) == len(batch)
            for c, got in zip(batch, many):
                one = single.lookup(c, check_store=check_store)
                assert got == one
                assert (got.hit_blocks, got.num_tokens, got.hit_hashes, got.store_hashes, got.store_tokens) == \
                       (one.hit_blocks, one.num_tokens, one.hit_hashes, one.store_hashes, one.store_tokens)
                hits += len(one.hit_hashes)
        assert single.get_stats() == batched.get_stats(), f"step {step}"
        assert list(single.eviction.tracked()) == list(batched.eviction.tracked()), f"step {step}: order differs"
        for h in pinned:
            assert single.pin_count(h) == batched.pin_count(h) >= 1
    s = single.get_stats()
    assert s["evictions"] > 100 and s["re_prefills"] > 0 and hits > 1000 and s["store_hit_blocks"] > 0, s
    assert _summary_without_time(single_stats) == _summary_without_time(batched_stats)
    if policy == "own":
        assert single_policy.accesses == batched_policy.accesses and single_policy.held == batched_policy.held
    # Pins were respected and nothing is left pinned once they are dropped.
    for h in pinned:
        single.unpin([h])
        batched.unpin([h])
    assert single.get_stats()["pinned_blocks"] == batched.get_stats()["pinned_blocks"] == 0
    assert single.evict(len(single)) == batched.evict(len(batched))
    assert len(single) == len(batched) == 0


def test_lookup_many_of_nothing_or_empty_chains_counts_each_chain():
    cache = PrefixCache(block_size=2, max_cached_blocks=10)
    h = cache.compute_block_hashes(list(range(6)))
    cache.insert(h, ["a", "b", "c"])
    assert cache.lookup_many([]) == []
    assert cache.get_stats()["lookups"] == 0
    got = cache.lookup_many([[], h, h[:1], h[1:]])
    assert got == [([], 0), (["a", "b", "c"], 6), (["a"], 2), (["b", "c"], 4)]   # a chain may start anywhere
    s = cache.get_stats()
    assert (s["lookups"], s["hit_tokens"], s["miss_tokens"]) == (4, 12, 0)


def test_lookup_many_moves_each_chain_tail_first_in_batch_order():
    # As if looked up one after the other: the last chain's head ends the most recent, so the first chain's tail is
    # the first victim among the looked-up blocks.
    cache = PrefixCache(block_size=1, max_cached_blocks=6)
    a = cache.compute_block_hashes([1, 2])
    b = cache.compute_block_hashes([3, 4])
    c = cache.compute_block_hashes([5, 6])
    for x in (a, b, c):
        cache.insert(x, x)   # tail first: [a1, a0, b1, b0, c1, c0]
    cache.lookup_many([b, a])
    assert list(cache.eviction.tracked()) == [c[1], c[0], b[1], b[0], a[1], a[0]]


def test_a_bridge_step_looks_up_all_its_prefills_at_once_and_finds_what_one_lookup_each_finds():
    # Two bridges over equal caches: one as it is (lookup_many per step), one whose prefills each look themselves
    # up when admitted (one lookup each, as before lookup_many); every step's plans, operations and the caches' counters and order must be equal, and
    # the node is asked once per step for all the prefills.
    def make(one_by_one):
        system = compute_block_hashes(list(range(100, 108)), 4, [])
        store = _SetStore({"kvb1:" + h for h in system})
        cache = PrefixCache(block_size=4, max_cached_blocks=32, store=store)
        bridge = SchedulerBridge(KVPool(max_tokens=96), cache)
        if one_by_one:   # as before lookup_many: each prefill looks itself up when admitted
            bridge._look_up_prefills = lambda rest: {}
        return bridge, cache, store

    batched, batched_cache, batched_store = make(False)
    single, single_cache, single_store = make(True)

    def ops(plan):   # handle ids are uuids, different in the two bridges
        return [o[:2] + o[3:] if o[0] in ("alloc", "free") else o for o in plan.ops]

    system = list(range(100, 108))
    steps = [
        [SchedRequest("a", system + [1, 2, 3], "prefill", 1)],
        [SchedRequest("a", system + [1, 2, 3], "finished")],
        [SchedRequest("b", system + [1, 2, 3, 4, 5], "prefill"), SchedRequest("c", [7] * 30, "prefill", 5),
         SchedRequest("d", system[:4], "prefill", 2), SchedRequest("e", [8] * 90, "prefill")],
        [SchedRequest("b", [], "finished"), SchedRequest("e", [8] * 90, "prefill"), SchedRequest("c", [7] * 31, "decode")],
    ]
    for k, step in enumerate(steps):
        calls = batched_store.calls
        got, want = batched.step(step), single.step(step)
        assert ops(got) == ops(want), f"step {k}"
        assert {r: (p.action, p.cached_tokens, p.local_blocks, p.blocks_to_load, p.blocks_to_compute)
                for r, p in got.requests.items()} == \
               {r: (p.action, p.cached_tokens, p.local_blocks, p.blocks_to_load, p.blocks_to_compute)
                for r, p in want.requests.items()}, f"step {k}"
        assert batched_store.calls - calls <= 1, f"step {k}: one EXISTS for all the step's prefills"
        assert batched_cache.get_stats() == single_cache.get_stats(), f"step {k}"
        assert list(batched_cache.eviction.tracked()) == list(single_cache.eviction.tracked()), f"step {k}"
    s = batched_cache.get_stats()
    assert s["lookups"] == 6 and s["store_hit_blocks"] > 0 and s["hit_blocks"] > 0
    assert (batched_store.calls, single_store.calls) == (3, 5)   # one per step with prefills; else one per prefill not all local
    for bridge, cache in ((batched, batched_cache), (single, single_cache)):
        bridge.release_all()
        assert bridge.pool.used_tokens == 0 and cache.get_stats()["pinned_blocks"] == 0
