"""The one-table layout of kvasir.kv's EvictionManager (blocks, values and LRU order in one OrderedDict): what it can
get wrong, checked against a plain reference model: order across inserts, hits, evictions and re-inserts, values
handed to on_evict, the budget under random operations, and a policy of the caller's own called per block."""
import random

import pytest

from kvasir.kv import EvictionManager, EvictionPolicy, PrefixCache
from kvasir.kv import errors as KE


def _ids(n, start=0):
    return [f"{i:064x}" for i in range(start, start + n)]


def test_random_operations_match_a_reference_model_and_never_exceed_the_budget():
    cap = 40
    evicted_seen = []
    cache = PrefixCache(block_size=1, max_cached_blocks=cap, on_evict=lambda h, b: evicted_seen.append((h, b)))
    ids = _ids(150)
    order, values, pins = [], {}, {}   # the model: LRU order (least recent first), values, pins
    rng = random.Random(5)

    def touch(h):
        order.remove(h)
        order.append(h)

    for step in range(3000):
        chain = list(dict.fromkeys(rng.choice(ids) for _ in range(rng.randint(1, 8))))
        op = rng.randrange(5)
        if op < 2:
            n = 0
            while n < len(chain) and chain[n] in values:
                n += 1
            hit, tokens = cache.lookup(chain)
            assert hit == [values[h] for h in chain[:n]] and tokens == n
            for h in reversed(chain[:n]):   # tail first: the head ends most recent
                touch(h)
        elif op == 2:
            new = [h for h in chain if h not in values]
            need = len(values) + len(new) - cap
            victims = [h for h in order if h not in pins and h not in chain][:max(0, need)]
            if need > 0 and len(victims) < need:
                with pytest.raises((KE.AllPinnedError, KE.EvictionFailedError)):
                    cache.insert(chain, [step] * len(chain))
                continue
            evicted_seen.clear()
            assert cache.insert(chain, [step] * len(chain)) == len(new)
            assert evicted_seen == [(v, values[v]) for v in victims]
            for v in victims:
                order.remove(v)
                del values[v]
            for h in reversed(chain):
                values[h] = step       # an insert of a cached hash replaces its value (sagellm's dict semantics)
                if h in order:
                    touch(h)
                else:
                    order.append(h)
        elif op == 3:
            h = chain[0]
            if h in values and h not in pins and rng.random() < 0.5:
                cache.pin([h])
                pins[h] = 1
            elif pins.pop(h, None):
                cache.unpin([h])
        else:
            free = [h for h in chain if h not in pins]
            assert cache.invalidate(free) == sum(h in values for h in free)
            for h in free:
                if h in values:
                    order.remove(h)
                    del values[h]
        assert len(cache) == len(values) <= cap, f"step {step}"
        assert list(cache.eviction.tracked()) == order, f"step {step}: LRU order differs"
        assert cache.get_stats()["pinned_blocks"] == len(pins)
    assert cache.get_stats()["evictions"] > 100


def test_fifo_keeps_insertion_order_through_hits_and_updates():
    m = EvictionManager("fifo")
    for i, h in enumerate(_ids(4)):
        m.record_insert(h, i)
    a, b, c, d = _ids(4)
    assert m.lookup_prefix([a, b, "missing", c]) == ([a, b], [0, 1])
    m.record_insert(a, 10)               # a new value, same place in line
    assert m.value(a) == 10 and list(m.tracked()) == [a, b, c, d]
    assert m.select_victims(2) == [a, b]


def test_lookup_prefix_counts_a_miss_on_an_evicted_block_as_a_re_prefill():
    m = EvictionManager("lru")
    a, b, c = _ids(3)
    for h in (a, b, c):
        m.record_insert(h)
    m.record_eviction(m.select_victims(1))   # a
    assert m.lookup_prefix([b, c]) == ([b, c], [None, None])
    assert m.lookup_prefix([a, b]) == ([], [])
    assert m.metrics()["re_prefills"] == 1 and list(m.tracked()) == [c, b]   # b looked up last: tail first


class _NewestFirst(EvictionPolicy):
    name = "newest-first"

    def __init__(self):
        self.held, self.accesses = [], 0

    def insert(self, block_id):
        self.held.append(block_id)

    def access(self, block_id):
        self.accesses += 1

    def remove(self, block_id):
        self.held.remove(block_id)

    def order(self):
        return iter(list(reversed(self.held)))

    def __len__(self):
        return len(self.held)

    def __contains__(self, block_id):
        return block_id in self.held


def test_a_policy_of_its_own_is_called_per_block_and_decides_the_victims():
    policy = _NewestFirst()
    cache = PrefixCache(block_size=1, max_cached_blocks=3, policy=policy)
    a, b, c, d = _ids(4)
    cache.insert([a, b, c], [0, 1, 2])   # inserted tail first: c, b, a
    hit, _ = cache.lookup([a, b])
    assert hit == [0, 1] and policy.accesses == 2
    cache.insert([d], [3])
    assert a not in cache and policy.held == [c, b, d] and cache.get_stats()["policy"] == "newest-first"
