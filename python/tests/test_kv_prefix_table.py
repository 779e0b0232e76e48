"""The one-table layout of kvasir.kv's EvictionManager (blocks, values and LRU order in one OrderedDict): what it can
get wrong, checked against a plain reference model: order across inserts, hits, evictions and re-inserts, values
handed to on_evict, the budget under random operations, and a policy of the caller's own called per block."""
import random
from collections import OrderedDict

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


class _Model:
    """The per-block reference: one OrderedDict of values in eviction order (least recent / first inserted first), what
    an LRU or FIFO manager must be observably equal to whatever its layout."""

    def __init__(self, lru):
        self.lru, self.held, self.pins, self.evicted, self.re_prefills = lru, OrderedDict(), {}, set(), 0

    def insert(self, hashes, values):   # PrefixCache.insert after its evictions: tail first, a held block updated
        for h, v in zip(reversed(hashes), reversed(values)):
            if h in self.held:
                self.held[h] = v
                if self.lru:
                    self.held.move_to_end(h)
            else:
                if h in self.evicted:
                    self.evicted.discard(h)
                    self.re_prefills += 1
                self.held[h] = v

    def lookup(self, hashes):
        n = 0
        while n < len(hashes) and hashes[n] in self.held:
            n += 1
        if self.lru:
            for h in reversed(hashes[:n]):
                self.held.move_to_end(h)
        for h in hashes[n:]:
            if h in self.evicted:
                self.evicted.discard(h)
                self.re_prefills += 1
        return [self.held[h] for h in hashes[:n]]

    def victims(self, n, exclude=()):
        return [h for h in self.held if h not in self.pins and h not in exclude][:n]

    def evict(self, victims):
        for h in victims:
            del self.held[h]
            self.evicted.add(h)


@pytest.mark.parametrize("lru", [True, False])
def test_chains_with_repeats_overlaps_and_partial_hits_keep_the_per_block_order_and_values(lru):
    # Chains that continue, repeat, overlap and cut each other, inserted whole or in parts, looked up alone and in
    # batches, single blocks touched with get, pins, invalidations, evictions by insert and by evict(n), clear: the
    # cache's order, values, victims and re-prefills must be the per-block model's after every step.
    rng = random.Random(11 if lru else 12)
    cap = 120
    seen = []
    cache = PrefixCache(block_size=1, max_cached_blocks=cap, enable_lru=lru, on_evict=lambda h, b: seen.append((h, b)))
    model = _Model(lru)
    prompts = [_ids(rng.randint(1, 40), start=1000 * p) for p in range(12)]

    def chain():
        p = rng.choice(prompts)
        lo = rng.randrange(len(p)) if rng.random() < 0.3 else 0
        c = p[lo:rng.randint(lo + 1, len(p))]
        kind = rng.randrange(6)
        if kind == 0:
            c = c + rng.choice(prompts)[:rng.randint(1, 10)]          # continued by another prompt's blocks
        elif kind == 1 and len(c) > 1:
            c = c + [c[rng.randrange(len(c))]]                          # a block repeated
        elif kind == 2:
            c = [h for h in c if rng.random() < 0.8] or c[:1]          # holes
        return c

    for step in range(2500):
        op = rng.randrange(10)
        c = chain()
        if op < 3:
            values = [(step, k) for k in range(len(c))]
            new = [h for h in dict.fromkeys(c) if h not in model.held]
            need = len(model.held) + len(new) - cap
            if len(set(c)) > cap:
                continue
            victims = model.victims(max(0, need), exclude=set(c))
            if need > 0 and len(victims) < need:
                with pytest.raises((KE.AllPinnedError, KE.EvictionFailedError)):
                    cache.insert(c, values)
                continue
            seen.clear()
            assert cache.insert(c, values) == len(new)
            assert seen == [(h, model.held[h]) for h in victims], f"step {step}"
            model.evict(victims)
            model.insert(c, values)
        elif op < 6:
            want = model.lookup(c)
            assert cache.lookup(c) == (want, len(want)), f"step {step}"
        elif op == 6:
            batch = [chain() for _ in range(rng.randrange(4))]
            got = cache.lookup_many(batch)
            assert got == [(v, len(v)) for v in map(model.lookup, batch)], f"step {step}"
        elif op == 7:
            h = c[0]
            if h in model.held:
                assert cache.get(h) == model.held[h]
                if lru:
                    model.held.move_to_end(h)
                if h not in model.pins and rng.random() < 0.4:
                    cache.pin([h])
                    model.pins[h] = 1
            elif model.pins:
                p = rng.choice(list(model.pins))
                cache.unpin([p])
                del model.pins[p]
        elif op == 8:
            free = [h for h in c if h not in model.pins]
            assert cache.invalidate(free) == len({h for h in free if h in model.held})
            for h in free:
                model.held.pop(h, None)
        else:
            n = rng.randrange(6)
            want = model.victims(n)
            seen.clear()
            if model.held and not want and n:
                with pytest.raises(KE.AllPinnedError):
                    cache.evict(n)
                continue
            assert cache.evict(n) == want, f"step {step}"
            assert seen == [(h, model.held[h]) for h in want]
            model.evict(want)
        if step % 500 == 499 and not model.pins:
            cache.clear()
            model.held.clear()
        assert list(cache.eviction.tracked()) == list(model.held), f"step {step}: order differs"
        assert len(cache) == len(model.held) and all(cache.eviction.value(h) == v for h, v in model.held.items())
        assert cache.get_stats()["re_prefills"] == model.re_prefills, f"step {step}"
    s = cache.get_stats()
    assert s["evictions"] > 300 and s["re_prefills"] > 50 and s["hit_blocks"] > 3000, s


def test_many_hits_on_few_blocks_keep_the_order_and_a_bounded_log():
    # Every LRU hit appends a touch to the table's log; the log is compacted as it grows, which must keep the order
    # exactly and the log within twice its live touches plus its slack (here at most one touch per held block).
    rng = random.Random(13)
    m, model = EvictionManager("lru"), _Model(True)
    prompts = [_ids(rng.randint(1, 12), start=100 * p) for p in range(8)]
    for p in prompts:
        m.record_chain(p, p)
        model.insert(p, p)
    for step in range(12_000):
        p = rng.choice(prompts)
        c = p[:rng.randint(1, len(p))]
        if step % 3:
            assert m.lookup_prefix(c) == (c, c)
            model.lookup(c)
        else:
            m.record_access(c[-1])
            model.held.move_to_end(c[-1])
        assert len(m._table._log) <= 2 * len(m) + 1025
        if step % 1000 == 0:
            assert list(m.tracked()) == list(model.held), f"step {step}"
    assert list(m.tracked()) == list(model.held)
    assert m.select_victims(len(m)) == list(model.held)


@pytest.mark.parametrize("lru", [True, False])
def test_chains_longer_than_a_record_are_held_as_several_and_keep_the_per_block_order(lru, monkeypatch):
    # A record holds at most _MAX_BLOCKS blocks (2**20 - 1); a longer chain is split into records, the last first.
    # With records of 3 blocks every chain here spans several: lookups walk across them, evictions take runs out of
    # them, and order and values must stay the per-block model's.
    from kvasir.kv import chain_table
    monkeypatch.setattr(chain_table, "_MAX_BLOCKS", 3)
    rng = random.Random(17)
    cache, model = PrefixCache(block_size=1, max_cached_blocks=60, enable_lru=lru), _Model(lru)
    prompts = [_ids(rng.randint(1, 20), start=100 * p) for p in range(10)]
    for step in range(1500):
        p = rng.choice(prompts)
        c = p[:rng.randint(1, len(p))]
        if rng.random() < 0.4:
            values = [(step, k) for k in range(len(c))]
            need = len(model.held) + sum(h not in model.held for h in c) - 60
            victims = model.victims(max(0, need), exclude=set(c))
            cache.insert(c, values)
            model.evict(victims)
            model.insert(c, values)
        elif rng.random() < 0.8:
            want = model.lookup(c)
            assert cache.lookup(c) == (want, len(want)), f"step {step}"
        else:
            want = model.victims(rng.randrange(1, 8))
            assert cache.evict(len(want)) == want
            model.evict(want)
        assert list(cache.eviction.tracked()) == list(model.held), f"step {step}"
        assert all(cache.eviction.value(h) == v for h, v in model.held.items())


@pytest.mark.parametrize("lru", [True, False])
def test_a_pinned_block_whose_chain_was_mostly_replaced_is_read_once_not_on_every_selection(lru):
    # A long chain's head block stays pinned while the rest of the chain moves on: under LRU each other block is hit on
    # its own, under FIFO all but the last are invalidated. The chain's insert is then a touch of 2,000 positions in
    # which one or two count, at the front of the order: every selection skipped the pinned block by reading all 2,000
    # in Python (an insert into a full cache cost O(chain): 25-60x main's per-block layout at 8k-32k blocks). A selection
    # narrows the touches it reads to the runs of positions that still count in them, so the next ones read the pinned
    # block alone; order and victims stay the model's.
    m, model = EvictionManager("lru" if lru else "fifo"), _Model(lru)
    chain = _ids(2000)
    m.record_chain(chain, chain)
    model.insert(chain, chain)
    m.pin(chain[0])
    model.pins[chain[0]] = 1
    for h in chain[1:-1]:
        if lru:
            m.record_access(h)
            model.held.move_to_end(h)
        else:
            m.remove(h)
            del model.held[h]
    if lru:
        m.record_access(chain[-1])
        model.held.move_to_end(chain[-1])
    for k in range(5):
        other = _ids(4, start=10_000 + 10 * k)
        m.record_chain(other, other)
        model.insert(other, other)
    rec, lo, hi = m._table._log[0]
    assert hi - lo == 2000   # the insert's touch, one or two positions of it counting
    for _ in range(5):
        want = model.victims(3)
        assert m.select_victims(3) == want
        spans = [t[2] - t[1] for t in m._table._log if t[0] is rec]
        assert spans and set(spans) == {1}, f"the pinned block's touch spans {spans}: the chain is read on every selection"
        m.record_eviction(want)
        model.evict(want)
        assert list(m.tracked()) == list(model.held)
