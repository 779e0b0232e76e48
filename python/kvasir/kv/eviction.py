"""EvictionManager: which cached blocks to give up, behind one interface for every policy.

A policy orders the blocks it tracks; the manager adds pins (a pinned block is never a victim) and the
metrics. Policies: ``"lru"`` (least recently accessed first) and ``"fifo"`` (first inserted first), each O(1)
per access and O(victims + pinned skipped) per selection, so the cost stays flat in the number of blocks.

Metrics: ``evictions`` (blocks given up), ``re_prefills`` (evicted blocks accessed again as a miss, so
recomputed: each eviction counts at most once) and ``re_prefill_rate`` = re_prefills / evictions, the share
of evictions that were mistakes. The set of evicted ids kept for that is bounded (``remember_evicted``,
default 100,000; the oldest are forgotten first).

Not thread-safe by itself: the owner (PrefixCache) serialises calls.
"""
from collections import OrderedDict
from typing import Dict, Hashable, List, Union

from .errors import AllPinnedError, ConfigInvalidError, EvictionFailedError, NoVictimError

__all__ = ["EvictionPolicy", "LRUPolicy", "FIFOPolicy", "EvictionManager", "make_policy"]


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


_POLICIES = {"lru": LRUPolicy, "fifo": FIFOPolicy}


def make_policy(policy: Union[str, EvictionPolicy]) -> EvictionPolicy:
    if isinstance(policy, EvictionPolicy):
        return policy
    cls = _POLICIES.get(str(policy).lower())
    if cls is None:
        raise ConfigInvalidError(f"unknown eviction policy {policy!r} (lru or fifo)", {"policy": str(policy)})
    return cls()


class EvictionManager:
    """``EvictionManager(policy="lru")``: tracks blocks, pins, and evictions.

    * ``record_insert(id)`` / ``record_access(id, hit=True)`` / ``remove(id)``
    * ``pin(id)`` / ``unpin(id)``: pinned blocks are never selected (counted pins)
    * ``select_victims(n, strict=False)``: up to n unpinned ids in policy order (not removed: call
      ``record_eviction`` for those actually evicted). Raises NoVictimError when nothing is tracked,
      AllPinnedError when everything tracked is pinned, and with ``strict`` EvictionFailedError when fewer
      than n can be given.
    * ``record_eviction(ids)``: stops tracking them and counts them for the metrics
    * ``metrics()``: ``{"policy", "tracked", "pinned", "evictions", "re_prefills", "re_prefill_rate"}``
    """

    def __init__(self, policy: Union[str, EvictionPolicy] = "lru", remember_evicted: int = 100_000):
        self.policy = make_policy(policy)
        self._pins: Dict[Hashable, int] = {}
        self._evicted: "OrderedDict[Hashable, None]" = OrderedDict()
        self._remember = max(0, int(remember_evicted))
        self.evictions = 0
        self.re_prefills = 0

    @property
    def policy_name(self) -> str:
        return self.policy.name

    def record_insert(self, block_id) -> None:
        if block_id in self._evicted:   # recomputed after an eviction, the miss not recorded: still a re-prefill
            del self._evicted[block_id]
            self.re_prefills += 1
        self.policy.insert(block_id)

    def record_access(self, block_id, hit: bool = True) -> None:
        if hit:
            self.policy.access(block_id)
        elif block_id in self._evicted:
            del self._evicted[block_id]
            self.re_prefills += 1

    def remove(self, block_id) -> None:
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

    def select_victims(self, n: int, strict: bool = False) -> List[Hashable]:
        if n <= 0:
            return []
        if len(self.policy) == 0:
            raise NoVictimError(f"no block is tracked: nothing to evict for {n}", {"wanted": n})
        out = []
        for block_id in self.policy.order():
            if block_id not in self._pins:
                out.append(block_id)
                if len(out) == n:
                    break
        if not out:
            raise AllPinnedError(f"all {len(self.policy)} tracked blocks are pinned", {"wanted": n, "pinned": len(self._pins)})
        if strict and len(out) < n:
            raise EvictionFailedError(f"only {len(out)} of {n} blocks can be evicted (the rest are pinned)",
                                      {"wanted": n, "evictable": len(out), "pinned": len(self._pins)})
        return out

    def record_eviction(self, block_ids) -> None:
        for block_id in block_ids:
            self.policy.remove(block_id)
            self._pins.pop(block_id, None)
            self.evictions += 1
            if self._remember:
                self._evicted[block_id] = None
                self._evicted.move_to_end(block_id)
                if len(self._evicted) > self._remember:
                    self._evicted.popitem(last=False)

    def metrics(self) -> dict:
        return {"policy": self.policy.name, "tracked": len(self.policy), "pinned": len(self._pins),
                "evictions": self.evictions, "re_prefills": self.re_prefills,
                "re_prefill_rate": self.re_prefills / self.evictions if self.evictions else 0.0}
