"""The node's eviction policies in kvasir.kv (lfu, s3fifo, chainlfu, chainsketch): the node's choices on the golden
trace slice (tests/vectors/eviction_trace.json, the node simulator's hit counts), chain tails first, and the
invariants (pinned blocks never evicted, capacity never exceeded) under every policy."""
import json
import os
import random
import struct

import pytest

from kvasir.kv import EvictionManager, PrefixCache
from kvasir.kv.errors import AllPinnedError, EvictionFailedError, NoVictimError

HERE = os.path.dirname(os.path.abspath(__file__))
VECTOR = os.path.join(HERE, "..", "..", "tests", "vectors", "eviction_trace.json")
NODE_POLICIES = ["lfu", "s3fifo", "chainlfu", "chainsketch"]


def _load():
    with open(VECTOR) as f:   # a missing vector fails: it is committed, written by tests/vectors/gen_eviction_trace.py
        return json.load(f)


def trace_hash(block: int) -> str:
    """Block N of a trace as a hash whose first 8 bytes are the FNV-1a of the node's key for it ("t" + N): the node's
    ghost queue and sketch index that, as the engine's index a hash's first 8 bytes."""
    h = 14695981039346656037
    for b in b"t%d" % block:
        h = ((h ^ b) * 1099511628211) & ((1 << 64) - 1)
    return (struct.pack(">Qq", h, block) + bytes(16)).hex()


def replay(cache: PrefixCache, chains, after_each=None) -> int:
    """The node simulator's request model: hit the longest cached prefix (read head first), then store each later block
    continuing the one before it; a full cache makes room first, also for a block already cached (the node writes a new
    version beside the old one)."""
    hits = 0
    for chain in chains:
        hashes = [trace_hash(b) for b in chain]
        k = len(cache.lookup(hashes, check_store=False).hit_hashes)
        hits += k
        for i in range(k, len(hashes)):
            if len(cache) >= cache.max_cached_blocks and hashes[i] in cache:
                cache.evict(1)
            cache.insert([hashes[i]], [i], parent=hashes[i - 1] if i else None)
        if after_each is not None:
            after_each(chain, k)
    return hits


# Python's LRU reads a prefix tail first, so that its head stays the most recent block (kvasir.kv.eviction); the node
# reads it head first. Same policy, another order of reads by design, so its count is not the node's: LRU is checked
# against the node in .NET only (tests/Kvasir.Prefix.Tests/NodePolicyTests.cs), every other row here.
GOLDEN = [(r["policy"], r["capacity"]) for r in _load()["results"] if r["policy"] != "lru"]


@pytest.mark.parametrize("policy,capacity", GOLDEN)
def test_the_engine_cache_hits_exactly_what_the_node_hits_on_the_golden_trace(policy, capacity):
    doc = _load()
    row = next(r for r in doc["results"] if r["policy"] == policy and r["capacity"] == capacity)
    chains = doc["chains"]
    assert sum(map(len, chains)) == row["blocks"]
    cache = PrefixCache(max_cached_blocks=row["capacity_blocks"], policy=policy)
    assert replay(cache, chains) == row["hit_blocks"]
    assert cache.get_stats()["evictions"] == row["evictions"]


def test_every_node_policy_and_capacity_of_the_golden_file_is_checked():
    rows = {(r["policy"], r["capacity"]) for r in _load()["results"]}
    assert {p for p, _ in rows} == {"lru", "fifo", *NODE_POLICIES}
    assert len({c for _, c in rows}) == 3
    assert set(GOLDEN) == {row for row in rows if row[0] != "lru"}
    # The slice tells the policies apart (so matching a row proves which policy ran): every two differ somewhere.
    counts = {}
    for r in _load()["results"]:
        counts.setdefault(r["policy"], []).append(r["hit_blocks"])
    names = sorted(counts)
    assert all(counts[a] != counts[b] for i, a in enumerate(names) for b in names[i + 1:])


def ids(n):
    return [trace_hash(i) for i in range(n)]


def test_lru_reads_a_prefix_tail_first_so_its_tail_goes_first():
    cache = PrefixCache(max_cached_blocks=10)
    chain = ids(3)
    cache.insert(chain, [0, 1, 2])
    cache.lookup(chain, check_store=False)
    assert cache.evict(1) == [chain[2]]


@pytest.mark.parametrize("policy", ["chainlfu", "chainsketch"])
def test_chainlfu_evicts_a_chain_from_its_tail_so_what_stays_is_reachable(policy):
    cache = PrefixCache(max_cached_blocks=10, policy=policy)
    chain = ids(4)
    cache.insert(chain, [0, 1, 2, 3])
    cache.lookup(chain, check_store=False)
    for left in (3, 2, 1):
        assert cache.evict(1) == [chain[left]]
        assert len(cache.lookup(chain, check_store=False).hit_hashes) == left


def test_chainlfu_links_an_insert_to_its_parent_and_a_block_whose_parent_is_gone_goes_first():
    cache = PrefixCache(max_cached_blocks=10, policy="chainlfu")
    b = ids(5)
    cache.insert(b[:2], [0, 1])
    cache.insert([b[2]], [2], parent=b[1])   # continues the chain: b[1] is no longer its tail
    cache.insert([b[3]], [3])                # a chain of its own, stored after
    assert cache.evict(1) == [b[2]]          # value 1, stored before b[3]
    assert cache.evict(1) == [b[1]]          # its parent is the tail now
    cache.invalidate([b[0]])
    cache.insert([b[4]], [4], parent=b[3])
    cache.lookup([b[3], b[4]], check_store=False)
    cache.insert(b[:2], [0, 1])
    cache.invalidate([b[0]])                 # b[1] is an orphan: worth nothing at its next placement
    cache.lookup([b[1]], check_store=False)
    assert cache.evict(1) == [b[1]]


@pytest.mark.parametrize("policy", ["lru", "fifo", *NODE_POLICIES])
def test_pinned_blocks_are_never_evicted_and_capacity_is_never_exceeded(policy):
    rng = random.Random(policy)
    b = ids(120)
    capacity = 24
    evicted = []
    cache = PrefixCache(max_cached_blocks=capacity, policy=policy, on_evict=lambda h, _: evicted.append(h))
    pinned = {}
    for _ in range(3000):
        start, length = rng.randrange(len(b) - 8), 1 + rng.randrange(8)
        chain = b[start:start + length]
        op = rng.randrange(6)
        before = len(evicted)
        if op < 2:
            try:
                cache.insert(chain, list(range(length)), parent=b[start - 1] if start and rng.random() < 0.5 else None)
            except (EvictionFailedError, AllPinnedError):
                assert len(pinned) > capacity - length, "refused only when the pins leave too little room"
                assert len(evicted) == before, "a refused insert evicts nothing"
        elif op == 2:
            cache.lookup(chain, check_store=False)
        elif op == 3:
            held = [h for h in chain if h in cache][:2]
            cache.pin(held)
            for h in held:
                pinned[h] = pinned.get(h, 0) + 1
        elif op == 4 and pinned:
            h = rng.choice(sorted(pinned))
            cache.unpin([h])
            pinned[h] -= 1
            if not pinned[h]:
                del pinned[h]
        elif len(cache) > len(pinned):
            cache.evict(rng.randrange(3))
        assert not set(evicted[before:]) & set(pinned), f"{policy} evicted a pinned block"
        assert len(cache) <= capacity, f"{policy}: {len(cache)} blocks in a cache of {capacity}"
        assert all(h in cache for h in pinned), f"{policy}: a pinned block is gone"
    assert len(evicted) > 100, "the workload must evict"
    assert cache.get_stats()["evictions"] == len(evicted)


@pytest.mark.parametrize("policy", NODE_POLICIES)
def test_the_eviction_manager_offers_the_node_policies_and_a_selection_does_not_evict(policy):
    m = EvictionManager(policy.upper())
    assert m.policy_name == policy
    b = ids(6)
    for i, h in enumerate(b):
        m.record_insert(h, i, parent=b[i - 1] if i else None)
    m.record_access(b[0])
    m.pin(b[1])
    peek = m.select_victims(3)
    assert len(set(peek)) == 3 and b[1] not in peek
    assert len(m) == 6
    assert m.select_victims(1) == peek[:1]   # a selection leaves the first victim first
    out = m.evict(5)
    assert len(out) == 5 and b[1] not in out
    assert len(m) == 1 and m.evictions == 5
    with pytest.raises(AllPinnedError):
        m.evict(1)
    m.unpin(b[1])
    m.record_eviction(m.select_victims(1))
    with pytest.raises(NoVictimError):
        m.evict(1)


def test_s3fifo_finds_the_one_unpinned_block_in_its_small_queue_when_all_of_main_is_pinned():
    # The twin of NodePolicyTests.S3fifo_finds_the_one_unpinned_block... (.NET): with every main block pinned and the
    # only unpinned block in a small queue whose share (1 of 21) is below the tenth that gets it searched, a search
    # moved the pinned main blocks along until its budget ran out and returned nothing, and a caller told that an
    # unpinned block exists (peek, the cache's eviction) searched again for ever.
    from kvasir.kv.node_policies import S3FIFOPolicy
    policy = S3FIFOPolicy()
    main = ids(20)
    for b in main:   # dropped from small to the ghost, then stored again: into main
        policy.insert(b)
        policy.remove(b, evicted=True)
        policy.insert(b)
    assert all(b in policy._main for b in main)
    lone = "the one unpinned block"
    policy.insert(lone)
    assert lone in policy._small
    assert policy.pick(lambda b: b == lone) == lone
    assert policy.peek(1, lambda b: b == lone) == [lone]
    assert len(policy) == 21, "peek and a refused pick evict nothing"
