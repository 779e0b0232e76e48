"""EvictionManager: which cached blocks to give up, behind one interface for every policy.

A policy orders the blocks it tracks; the manager adds pins (a pinned block is never a victim) and the
metrics. Policies: ``"lru"`` (least recently accessed first) and ``"fifo"`` (first inserted first), O(1) per run of a
chain's blocks looked up (one dict probe; kvasir.kv.chain_table) and O(victims + pinned skipped) amortised per
selection, so the cost per block stays nearly flat in the number of blocks; and the
node's ``"lfu"``, ``"s3fifo"``, ``"chainlfu"`` and ``"chainsketch"`` (kvasir.kv.node_policies: O(log n) or O(1)
amortised per operation), which make the node's choices on the same requests. Under those a lookup reads a prefix head
first and an insert stores it head first, each block continuing the one before it (the node's order), and victims are
evicted one at a time (``evict``), so that evicting a chain's tail can make its parent the next victim.

Metrics: ``evictions`` (blocks given up), ``re_prefills`` (evicted blocks accessed again as a miss, so
recomputed: each eviction counts at most once) and ``re_prefill_rate`` = re_prefills / evictions, the share
of evictions that were mistakes. The set of evicted ids kept for that is bounded (``remember_evicted``,
default 100,000; the oldest are forgotten first).

The manager holds the tracked blocks (and a PrefixCache's values with them): for the built-in policies in a
ChainTable (kvasir.kv.chain_table), a record per inserted chain and the order kept per run of a chain's blocks, so a
lookup costs one dict probe per run of blocks inserted together rather than one per block; for the others in a dict,
the policy called per block.

Not thread-safe by itself: the owner (PrefixCache) serialises calls.
"""
from collections import OrderedDict, deque
from itertools import chain, repeat, takewhile
from typing import Any, Dict, Hashable, List, Sequence, Union

from .chain_table import ChainTable
from .errors import AllPinnedError, ConfigInvalidError, EvictionFailedError, NoVictimError
from .node_policies import ChainLFUPolicy, LFUPolicy, NodePolicy, S3FIFOPolicy

__all__ = ["EvictionPolicy", "LRUPolicy", "FIFOPolicy", "LFUPolicy", "S3FIFOPolicy", "ChainLFUPolicy", "EvictionManager",
           "make_policy", "POLICY_NAMES"]


class EvictionPolicy:
    """Order of eviction over tracked block ids. Subclasses implement the four calls below."""

    name = "base"

    def insert(self, block_id: Hashable) -> None:
        raise NotImplementedError

    def access(self, block_id: Hashable) -> None:
        raise NotImplementedError

    def remove(self, block_id: Hashable) -> None:
        raise NotImplementedError

    def order(self):
        """Tracked ids, first victim first (an iterator; the caller does not change the policy while iterating)."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __contains__(self, block_id) -> bool:
        raise NotImplementedError


class _OrderedPolicy(EvictionPolicy):
    touch_on_access = False

    def __init__(self):
        self._order: "OrderedDict[Hashable, None]" = OrderedDict()

    def insert(self, block_id):
        if block_id in self._order:
            self.access(block_id)
        else:
            self._order[block_id] = None

    def access(self, block_id):
        if self.touch_on_access and block_id in self._order:
            self._order.move_to_end(block_id)

    def remove(self, block_id):
        self._order.pop(block_id, None)

    def order(self):
        return iter(self._order)

    def __len__(self):
        return len(self._order)

    def __contains__(self, block_id):
        return block_id in self._order


class LRUPolicy(_OrderedPolicy):
    """Least recently used first: an access moves the block to the back."""
    name = "lru"
    touch_on_access = True


class FIFOPolicy(_OrderedPolicy):
    """First inserted first: accesses do not change the order."""
    name = "fifo"


_POLICIES = {"lru": LRUPolicy, "fifo": FIFOPolicy, "lfu": LFUPolicy, "s3fifo": S3FIFOPolicy,
             "chainlfu": ChainLFUPolicy, "chainsketch": lambda: ChainLFUPolicy(remember=True)}
POLICY_NAMES = tuple(_POLICIES)
_ABSENT = object()


def make_policy(policy: Union[str, EvictionPolicy, NodePolicy]):
    """A policy by name (case-insensitive: lru, fifo, lfu, s3fifo, chainlfu, chainsketch), or the given object."""
    if isinstance(policy, (EvictionPolicy, NodePolicy)):
        return policy
    cls = _POLICIES.get(str(policy).lower())
    if cls is None:
        raise ConfigInvalidError(f"unknown eviction policy {policy!r} ({', '.join(POLICY_NAMES)})",
                                 {"policy": str(policy)})
    return cls()


class EvictionManager:
    """``EvictionManager(policy="lru")``: tracks blocks (and, for a PrefixCache, their values), pins, and evictions.

    * ``record_insert(id, value=None)`` / ``record_access(id, hit=True)`` / ``remove(id)``
    * ``lookup_prefix(ids)`` -> ``(hit_ids, values)``: the longest tracked prefix of a chain, each hit recorded
      (tail first, so the head of a prefix ends most recent); ``lookup_prefixes(chains)`` the same for many chains
      in one call (as if one after the other); ``value(id)``, ``id in manager``, ``len(manager)``
    * ``pin(id)`` / ``unpin(id)``: pinned blocks are never selected (counted pins)
    * ``select_victims(n, strict=False)``: up to n unpinned ids in policy order (not removed: call
      ``record_eviction`` for those actually evicted). Raises NoVictimError when nothing is tracked,
      AllPinnedError when everything tracked is pinned, and with ``strict`` EvictionFailedError when fewer
      than n can be given.
    * ``record_eviction(ids)``: stops tracking them and counts them for the metrics
    * ``metrics()``: ``{"policy", "tracked", "pinned", "evictions", "re_prefills", "re_prefill_rate"}``

    * ``record_chain(ids, values, parent=None)``: a chain's blocks as ``record_insert`` of each, tail first (a node
      policy: head first, each continuing the one before it)

    With the built-in policies (LRUPolicy, FIFOPolicy) the manager keeps blocks and values in a ChainTable (a record
    per inserted chain, the order kept per run of blocks: one dict probe per run on a lookup, one touch per run for
    LRU) and the policy object itself is not called; the order is exactly the per-block one (a block's last access
    or insert, a chain's tail first). Any other EvictionPolicy, and the node policies, are called per block by id,
    with the blocks in a dict.
    """

    def __init__(self, policy: Union[str, EvictionPolicy, NodePolicy] = "lru", remember_evicted: int = 100_000):
        self.policy = make_policy(policy)
        self._intrusive = isinstance(self.policy, _OrderedPolicy)
        #: a node policy (kvasir.kv.node_policies): chain links, head-first order, evictions one at a time
        self.node_policy = isinstance(self.policy, NodePolicy)
        self._move_on_access = self._intrusive and self.policy.touch_on_access
        #: the built-in policies' blocks; None for the others
        self._table = ChainTable(self._move_on_access) if self._intrusive else None
        #: the tracked ids (the table's index under the built-in policies, else id -> value)
        self._held: Dict[Hashable, Any] = self._table.index if self._intrusive else {}
        self._pins: Dict[Hashable, int] = {}
        self._evicted: "OrderedDict[Hashable, None]" = OrderedDict()
        self._remember = max(0, int(remember_evicted))
        self.evictions = 0
        self.re_prefills = 0

    @property
    def policy_name(self) -> str:
        return self.policy.name

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, block_id) -> bool:
        return block_id in self._held

    def tracked(self):
        """The tracked ids, first victim first for the built-in policies (an iterator: do not change the manager
        while iterating)."""
        return self._table.order() if self._intrusive else iter(self._held)

    def value(self, block_id):
        """The value stored with a tracked block (KeyError when not tracked)."""
        return self._table.value(block_id) if self._intrusive else self._held[block_id]

    def _was_evicted(self, block_id) -> None:
        if self._evicted and block_id in self._evicted:   # recomputed after an eviction: a re-prefill
            del self._evicted[block_id]
            self.re_prefills += 1

    def record_insert(self, block_id, value=None, parent=None) -> None:
        """Tracks a block (stores ``value`` with it); a tracked one gets the new value and counts as an access.
        ``parent``: the block this one continues (only the chain-aware policy uses it; a node policy relinks a tracked
        block to it, as the node does when a block is stored again)."""
        held = self._held
        if self._intrusive:
            if block_id not in held:
                self._was_evicted(block_id)
            self._table.insert((block_id,), (value,))
            return
        if block_id in held:
            held[block_id] = value
            if self.node_policy:
                self.policy.reinsert(block_id, parent)
            else:
                self._touch(block_id)
            return
        self._was_evicted(block_id)
        held[block_id] = value
        if self.node_policy:
            self.policy.insert(block_id, parent)
        else:
            self.policy.insert(block_id)

    def record_chain(self, ids: Sequence[Hashable], values: Sequence, parent=None) -> None:
        """``record_insert`` of each block of a chain continuing ``parent``: tail first (so the head ends the most
        recent), or for a node policy head first, each block continuing the one before it (as the node stores a
        chain)."""
        if self._intrusive:
            evicted = self._evicted
            if evicted:
                for block_id in [b for b in dict.fromkeys(ids) if b in evicted and b not in self._held]:
                    del evicted[block_id]
                    self.re_prefills += 1
            self._table.insert(ids, values)
        elif self.node_policy:
            link = parent if parent in self._held else None
            for block_id, value in zip(ids, values):
                self.record_insert(block_id, value, link)
                link = block_id
        else:
            for i in range(len(ids) - 1, -1, -1):
                self.record_insert(ids[i], values[i])

    def _touch(self, block_id) -> None:
        if self._intrusive:
            self._table.touch(block_id)
        else:
            self.policy.access(block_id)

    def record_access(self, block_id, hit: bool = True) -> None:
        if not hit:
            self._was_evicted(block_id)
        elif block_id in self._held:
            self._touch(block_id)

    def lookup_prefix(self, ids: Sequence[Hashable]):
        """``(hit_ids, values)`` for the longest tracked prefix of ``ids``; hits recorded tail first, misses checked
        for re-prefills."""
        if self._intrusive:
            hit_ids, values = self._table.lookup(ids if type(ids) is list else list(ids))
        else:
            hit_ids, values = self._probe(ids)
        if self.node_policy:
            deque(map(self.policy.access, hit_ids), 0)   # head first, as the node reads a prefix
        elif not self._intrusive:
            for block_id in reversed(hit_ids):
                self.policy.access(block_id)
        if self._evicted:
            for block_id in ids[len(hit_ids):]:
                self._was_evicted(block_id)
        return hit_ids, values

    def _probe(self, ids):
        held = self._held
        hit_ids = list(takewhile(held.__contains__, ids))
        return hit_ids, list(map(held.__getitem__, hit_ids))

    def lookup_prefixes(self, chains: Sequence[Sequence[Hashable]]):
        """``lookup_prefix`` of each chain: a list of ``(hit_ids, values)``, with the same hits, moves in the order and
        re-prefill counts as one ``lookup_prefix`` per chain in the chains' order. Lookups do not change which blocks
        are tracked, so every chain is matched first (the probes of all chains in a row of C loops) and the hits are
        then recorded chain after chain, each tail first, in one C loop (the built-in policies: chain after chain)."""
        if self._intrusive:
            return [self.lookup_prefix(ids) for ids in chains]
        held = self._held
        contains = held.__contains__
        hits = [list(takewhile(contains, ids)) for ids in chains]
        getitem = held.__getitem__
        values = [list(map(getitem, h)) for h in hits]
        if self.node_policy:
            deque(map(self.policy.access, chain.from_iterable(hits)), 0)
        else:
            for h in hits:
                for block_id in reversed(h):
                    self.policy.access(block_id)
        if self._evicted:
            for ids, h in zip(chains, hits):
                for block_id in ids[len(h):]:
                    self._was_evicted(block_id)
        return list(zip(hits, values))

    def remove(self, block_id, evicted: bool = False) -> None:
        if self._intrusive:
            self._table.remove(block_id)
        elif self._held.pop(block_id, _ABSENT) is not _ABSENT:
            if self.node_policy:
                self.policy.remove(block_id, evicted)
            else:
                self.policy.remove(block_id)
        self._pins.pop(block_id, None)

    def pin(self, block_id) -> None:
        self._pins[block_id] = self._pins.get(block_id, 0) + 1

    def unpin(self, block_id) -> bool:
        """False when the block had no pin (the caller decides whether that is an error)."""
        n = self._pins.get(block_id, 0)
        if n == 0:
            return False
        if n == 1:
            del self._pins[block_id]
        else:
            self._pins[block_id] = n - 1
        return True

    def pin_count(self, block_id) -> int:
        return self._pins.get(block_id, 0)

    def _order(self):
        return self._table.order() if self._intrusive else self.policy.order()

    def _can_evict(self, block_id) -> bool:
        return block_id not in self._pins

    def _check_victims(self, n: int, strict: bool) -> int:
        """How many victims a node policy can give (errors as select_victims)."""
        unpinned = len(self._held) - sum(1 for b in self._pins if b in self._held)
        if unpinned == 0:
            raise AllPinnedError(f"all {len(self._held)} tracked blocks are pinned", {"wanted": n, "pinned": len(self._pins)})
        if strict and unpinned < n:
            raise EvictionFailedError(f"only {unpinned} of {n} blocks can be evicted (the rest are pinned)",
                                      {"wanted": n, "evictable": unpinned, "pinned": len(self._pins)})
        return min(n, unpinned)

    def select_victims(self, n: int, strict: bool = False) -> List[Hashable]:
        if n <= 0:
            return []
        if len(self._held) == 0:
            raise NoVictimError(f"no block is tracked: nothing to evict for {n}", {"wanted": n})
        if self.node_policy:
            return self.policy.peek(self._check_victims(n, strict), self._can_evict)
        pins = self._pins
        if self._intrusive:
            out = self._table.victims(n, pins)
        else:
            out = []
            for block_id in self._order():
                if block_id not in pins:
                    out.append(block_id)
                    if len(out) == n:
                        break
        if not out:
            raise AllPinnedError(f"all {len(self._held)} tracked blocks are pinned", {"wanted": n, "pinned": len(pins)})
        if strict and len(out) < n:
            raise EvictionFailedError(f"only {len(out)} of {n} blocks can be evicted (the rest are pinned)",
                                      {"wanted": n, "evictable": len(out), "pinned": len(pins)})
        return out

    def evict(self, n: int, strict: bool = False, on_evict=None) -> List[Hashable]:
        """Evicts up to n unpinned blocks in the policy's order (errors as select_victims, raised before any is evicted)
        and returns them; ``on_evict(id, value)`` is called for each before it goes. A node policy picks and evicts one
        at a time, as the node does."""
        if n <= 0:
            return []
        if not self.node_policy:
            victims = self.select_victims(n, strict)
            if on_evict is not None:
                for b in victims:
                    on_evict(b, self.value(b))
            self.record_eviction(victims)
            return victims
        if len(self._held) == 0:
            raise NoVictimError(f"no block is tracked: nothing to evict for {n}", {"wanted": n})
        out = []
        for _ in range(self._check_victims(n, strict)):
            b = None
            while b is None:   # None: a search spent its budget on pinned blocks (moved on); an unpinned one exists
                b = self.policy.pick(self._can_evict)
            if on_evict is not None:
                on_evict(b, self._held[b])
            self.record_eviction((b,))
            out.append(b)
        return out

    def record_eviction(self, block_ids) -> None:
        block_ids = list(block_ids)
        if self._intrusive:
            self._table.remove_many(block_ids)
            if self._pins:
                for block_id in block_ids:
                    self._pins.pop(block_id, None)
        else:
            for block_id in block_ids:
                self.remove(block_id, evicted=True)
        self.evictions += len(block_ids)
        if self._remember:
            evicted = self._evicted
            evicted.update(zip(block_ids, repeat(None)))
            deque(map(evicted.move_to_end, block_ids), 0)
            while len(evicted) > self._remember:   # the oldest forgotten first
                evicted.popitem(last=False)

    def metrics(self) -> dict:
        return {"policy": self.policy.name, "tracked": len(self._held), "pinned": len(self._pins),
                "evictions": self.evictions, "re_prefills": self.re_prefills,
                "re_prefill_rate": self.re_prefills / self.evictions if self.evictions else 0.0}
