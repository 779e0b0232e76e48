"""SchedulerBridge: turns a scheduler's per-step decisions into pool, prefix-cache and store operations.

The IR (what the scheduler hands over each step) is a list of :class:`SchedRequest`:

* ``request_id`` (str), ``token_ids`` (the prompt plus every token generated so far),
  ``phase``: ``"prefill"`` (run its prompt), ``"decode"`` (one more token), ``"preempted"`` (give its memory
  back; it will come back as a prefill), ``"finished"`` (done), and ``priority`` (higher first when memory
  is short; ties keep the list order).

``step(requests)`` looks up every prefill of the step at once (``PrefixCache.lookup_many``: one EXISTS on the node
for all of them) and returns a :class:`StepPlan`: per request a :class:`RequestPlan` with ``action``
(``"run"``, ``"wait"`` when the pool has no room now, ``"released"``), ``cached_tokens`` (local + on the
node), ``local_blocks`` (hashes cached in the engine), ``blocks_to_load`` (hashes the node has: loaded by
the bridge when ``buffer_for`` is given), ``blocks_to_compute`` (hashes of full blocks to compute) and
``tail_tokens`` (the partial last block, always computed); and the operations done, in order, as
``plan.ops``: ``("alloc", request_id, handle_id, tokens)``, ``("free", request_id, handle_id)``,
``("lookup", request_id, hit_blocks, store_blocks)``, ``("load", request_id, n)``,
``("insert", request_id, n)``, ``("save", request_id, n)``.

Memory: a request holds pool handles covering its tokens (prefill: its prompt; each decode step that
crosses the capacity adds a handle of ``decode_chunk`` tokens). Its cached blocks are pinned in the prefix
cache while it runs. On ``finished`` its full blocks are inserted in the prefix cache and, with a store
and ``buffer_for``, the ones the node does not have are saved to it; then its handles are freed and its
pins dropped. ``preempted`` frees and unpins without inserting.

``buffer_for(request_id, block_index) -> writable buffer`` (optional): where the engine keeps block
``block_index`` of that request (``block_bytes`` bytes): destinations of loads and sources of saves.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .errors import ConfigInvalidError, MemoryExhaustedError, PoolFullError
from .pool import KVPool
from .prefix_cache import PrefixCache

__all__ = ["SchedRequest", "RequestPlan", "StepPlan", "SchedulerBridge", "PHASES"]

PHASES = ("prefill", "decode", "preempted", "finished")


@dataclass
class SchedRequest:
    request_id: str
    token_ids: List[int]
    phase: str = "prefill"
    priority: int = 0

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ConfigInvalidError(f"phase {self.phase!r} is not one of {', '.join(PHASES)}", {"phase": self.phase})


@dataclass
class RequestPlan:
    request_id: str
    phase: str
    action: str
    cached_tokens: int = 0
    local_blocks: List[str] = field(default_factory=list)
    blocks_to_load: List[str] = field(default_factory=list)
    blocks_to_compute: List[str] = field(default_factory=list)
    tail_tokens: int = 0
    handles: List[str] = field(default_factory=list)


@dataclass
class StepPlan:
    requests: Dict[str, RequestPlan] = field(default_factory=dict)
    ops: List[tuple] = field(default_factory=list)


class _State:
    def __init__(self):
        self.handles = []
        self.capacity = 0
        self.pinned: List[str] = []


class SchedulerBridge:
    """``SchedulerBridge(pool, cache, *, decode_chunk=None, buffer_for=None)``; ``step(requests)``; ``release_all()``."""

    def __init__(self, pool: KVPool, cache: PrefixCache, *, decode_chunk: Optional[int] = None,
                 buffer_for: Optional[Callable[[str, int], object]] = None):
        self.pool = pool
        self.cache = cache
        self.decode_chunk = decode_chunk or cache.block_size
        self.buffer_for = buffer_for
        self._state: Dict[str, _State] = {}

    @property
    def active(self) -> List[str]:
        return list(self._state)

    def step(self, requests: List[SchedRequest]) -> StepPlan:
        plan = StepPlan()
        # releases first, so their memory serves this step's prefills
        order = sorted(range(len(requests)), key=lambda i: (requests[i].phase not in ("finished", "preempted"),
                                                            -requests[i].priority, i))
        looked = None
        for at, i in enumerate(order):
            r = requests[i]
            if r.phase == "finished":
                plan.requests[r.request_id] = self._finish(r, plan)
            elif r.phase == "preempted":
                plan.requests[r.request_id] = self._release(r, plan, "preempted")
            else:
                if looked is None:   # the releases are done: every prefill of the step is looked up at once
                    looked = self._look_up_prefills([requests[j] for j in order[at:]])
                if r.phase == "prefill" or r.request_id not in self._state:
                    plan.requests[r.request_id] = self._prefill(r, plan, looked.pop(r.request_id, None))
                else:
                    plan.requests[r.request_id] = self._decode(r, plan)
        return plan

    def _look_up_prefills(self, rest: List[SchedRequest]) -> Dict[str, tuple]:
        """``{request_id: (hashes, lookup)}`` for the requests of ``rest`` that will prefill, by one ``lookup_many`` (one
        EXISTS on the node for all of them). The cache does not change between here and their admissions (the pool's
        allocations do not evict it), so each finds what its own ``lookup`` would have found."""
        chains = {}   # request id -> its hashes, each request once, in order
        for r in rest:
            if (r.phase == "prefill" or r.request_id not in self._state) and r.request_id not in chains:
                chains[r.request_id] = self.cache.compute_block_hashes(r.token_ids)
        found = self.cache.lookup_many(list(chains.values())) if chains else []
        return dict(zip(chains, zip(chains.values(), found)))

    def _alloc(self, r, st, tokens, plan) -> bool:
        try:
            h = self.pool.alloc(tokens, request_id=r.request_id)
        except (PoolFullError, MemoryExhaustedError):
            return False
        st.handles.append(h)
        st.capacity += tokens
        plan.ops.append(("alloc", r.request_id, h.handle_id, tokens))
        return True

    def _prefill(self, r: SchedRequest, plan: StepPlan, looked: Optional[tuple] = None) -> RequestPlan:
        if r.request_id in self._state:   # a prefill again (e.g. recomputation): start over
            self._release(r, plan, "prefill")
        if looked is not None:
            hashes, found = looked
        else:
            hashes = self.cache.compute_block_hashes(r.token_ids)
            found = self.cache.lookup(hashes)
        plan.ops.append(("lookup", r.request_id, len(found.hit_hashes), found.store_blocks))
        st = _State()
        if not self._alloc(r, st, max(1, len(r.token_ids)), plan):
            return RequestPlan(r.request_id, r.phase, "wait", found.total_tokens, found.hit_hashes, found.store_hashes)
        self._state[r.request_id] = st
        self.cache.pin(found.hit_hashes)
        st.pinned = list(found.hit_hashes)
        loaded = list(found.store_hashes)
        if loaded and self.buffer_for is not None:
            first = len(found.hit_hashes)
            self.cache.load_from_store(loaded, [self.buffer_for(r.request_id, first + k) for k in range(len(loaded))])
            plan.ops.append(("load", r.request_id, len(loaded)))
        bs = self.cache.block_size
        done = len(found.hit_hashes) + len(loaded)
        return RequestPlan(r.request_id, r.phase, "run", done * bs, found.hit_hashes, loaded, hashes[done:],
                           len(r.token_ids) - len(hashes) * bs, [h.handle_id for h in st.handles])

    def _decode(self, r: SchedRequest, plan: StepPlan) -> RequestPlan:
        st = self._state[r.request_id]
        if len(r.token_ids) > st.capacity:
            need = len(r.token_ids) - st.capacity
            chunk = -(-need // self.decode_chunk) * self.decode_chunk
            if not self._alloc(r, st, chunk, plan):
                return RequestPlan(r.request_id, r.phase, "wait", handles=[h.handle_id for h in st.handles])
        return RequestPlan(r.request_id, r.phase, "run", handles=[h.handle_id for h in st.handles])

    def _finish(self, r: SchedRequest, plan: StepPlan) -> RequestPlan:
        hashes = self.cache.compute_block_hashes(r.token_ids)
        if r.request_id in self._state and hashes:
            new = [h for h in hashes if h not in self.cache]
            bufs = None
            if self.buffer_for is not None:
                bufs = [self.buffer_for(r.request_id, k) for k in range(len(hashes))]
            st = self._state[r.request_id]
            self.cache.unpin(st.pinned)
            st.pinned = []
            keep = hashes[:self.cache.max_cached_blocks]
            self.cache.insert(keep, bufs[:len(keep)] if bufs is not None else [(r.request_id, k) for k in range(len(keep))])
            plan.ops.append(("insert", r.request_id, len(new)))
            if self.cache.store is not None and bufs is not None:
                present = self.cache.store.batch_is_exist(["kvb1:" + h for h in hashes])
                todo = [k for k, p in enumerate(present) if p != 1]
                if todo:
                    self.cache.save_to_store([hashes[k] for k in todo], [bufs[k] for k in todo],
                                             parent=hashes[todo[0] - 1] if todo[0] > 0 else None)
                    plan.ops.append(("save", r.request_id, len(todo)))
        return self._release(r, plan, "finished")

    def _release(self, r: SchedRequest, plan: StepPlan, phase: str) -> RequestPlan:
        st = self._state.pop(r.request_id, None)
        if st is not None:
            if st.pinned:
                self.cache.unpin(st.pinned)
            for h in st.handles:
                plan.ops.append(("free", r.request_id, h.handle_id))
                self.pool.free(h)
        return RequestPlan(r.request_id, phase, "released")

    def release_all(self) -> None:
        """Frees every request's memory and pins (engine shutdown)."""
        for rid in list(self._state):
            self._release(SchedRequest(rid, [], "finished"), StepPlan(), "finished")
