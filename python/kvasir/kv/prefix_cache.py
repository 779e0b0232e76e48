"""PrefixCache: the engine's map from block hash to its cached KV block, with the store as the tier below.

``PrefixCache(block_size=16, max_cached_blocks=1024, enable_lru=True, *, policy=None, extra_keys=None,
store=None, stats=None, on_evict=None)``

* ``compute_block_hashes(tokens, parent=None)``: block hash v1 (kvasir.kv.hashing) with this cache's
  block size and ``extra_keys`` (model id, LoRA id, cache salt).
* ``insert(hashes, blocks, parent=None)``: caches ``blocks[i]`` (any object: the engine's block id, a buffer, ...)
  under ``hashes[i]``, evicting by the policy when full; the blocks form a chain continuing ``parent`` (the
  chain-aware policy evicts a chain from its tail). All or nothing: PrefixTooLongError when more blocks than
  the capacity, EvictionFailedError / AllPinnedError when pinned blocks leave too little room.
* ``lookup(hashes)`` -> ``(hit_blocks, num_tokens)``: the longest cached prefix. The result also carries
  ``store_blocks`` / ``store_tokens`` / ``store_hashes``: with a store attached, how many of the following
  blocks the node has (one batched EXISTS on their keys ``kvb1:<hex>``; the longest present run counts).
* ``lookup_many(chains)`` -> one such result per chain: the same as ``lookup`` of each chain in order, in one
  call (one EXISTS for all of them).
* ``load_from_store(hashes, dests, sizes=None, blocks=None)``: reads those blocks from the node into the
  caller's buffers (``dests`` writable buffers, or raw addresses with ``sizes`` registered on the store),
  then, with ``blocks``, caches them locally.
* ``save_to_store(hashes, srcs, sizes=None, parent=None)``: writes blocks to the node as a chain, so a
  prefix-aware node evicts the tail before the head.
* ``invalidate(hashes)``, ``pin(hashes)`` / ``unpin(hashes)`` (pinned blocks are never evicted), ``get(hash)``,
  ``get_stats()``, ``clear()``.

Policies (``policy=`` a name or an EvictionManager; default ``enable_lru``: "lru", else "fifo"): "lru", "fifo", and
the node's "lfu", "s3fifo", "chainlfu", "chainsketch" (kvasir.kv.node_policies; the same choices as the node's on the
same requests, tests/vectors/eviction_trace.json). Eviction order: under LRU/FIFO lookups and inserts touch a prefix's
blocks tail first, so the head of a prefix is the most recent and the tail is evicted first (a block whose parent is
gone can never be hit); the node's policies read and store a prefix head first, as the node does, and "chainlfu" keeps
the chain links themselves: a block's parent is the block before it in the insert that stored it.
``on_evict(hash, block)`` is called for every block evicted (outside nothing: under the cache's lock; it
must not call back into the cache). With ``stats`` (an AccessStatsCollector) every block a lookup
considers is recorded: local hits with tier "engine", blocks found on the node as hits with no tier,
the rest as misses.

Thread-safe: one lock around the cache; store I/O runs outside it.
"""
import ctypes
import threading
from typing import Any, Callable, List, Optional, Sequence

from .. import errors as E
from .errors import (CacheMissError, ChecksumMismatchError, ConfigInvalidError, ConfigMissingError,
                     MetadataMismatchError, PrefixTooLongError, RefCountUnderflowError, TransferFailedError,
                     TransferTimeoutError)
from .eviction import EvictionManager
from .hashing import block_key, compute_block_hashes

__all__ = ["PrefixCache", "PrefixLookup"]


class PrefixLookup(tuple):
    """``(hit_blocks, num_tokens)`` as sagellm returns it, plus the store's part as attributes."""

    def __new__(cls, hit_blocks, num_tokens, hit_hashes=(), store_hashes=(), block_size=0):
        self = super().__new__(cls, (hit_blocks, num_tokens))
        self.hit_blocks = hit_blocks
        self.num_tokens = num_tokens
        self.hit_hashes = list(hit_hashes)
        self.store_hashes = list(store_hashes)
        self.store_blocks = len(self.store_hashes)
        self.store_tokens = self.store_blocks * block_size
        return self

    @property
    def total_tokens(self) -> int:
        return self.num_tokens + self.store_tokens


def _buffer_address(buf) -> (int, int):
    view = memoryview(buf)
    if view.readonly:
        raise ValueError("a destination buffer must be writable")
    if not view.contiguous:
        raise ValueError("a destination buffer must be contiguous")
    view = view.cast("B")
    return ctypes.addressof(ctypes.c_char.from_buffer(view)), len(view)


class PrefixCache:
    def __init__(self, block_size: int = 16, max_cached_blocks: int = 1024, enable_lru: bool = True, *,
                 policy=None, extra_keys: Optional[Sequence[str]] = None, store=None, stats=None,
                 on_evict: Optional[Callable[[str, Any], None]] = None):
        for name, v in (("block_size", block_size), ("max_cached_blocks", max_cached_blocks)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigInvalidError(f"{name} must be an int >= 1, not {v!r}", {name: repr(v)})
        self.block_size = block_size
        self.max_cached_blocks = max_cached_blocks
        self.extra_keys = list(extra_keys or ())
        self.store = store
        self.stats = stats
        self.on_evict = on_evict
        self.eviction = policy if isinstance(policy, EvictionManager) else \
            EvictionManager(policy if policy is not None else ("lru" if enable_lru else "fifo"))
        self._lock = threading.RLock()
        self._c = dict(lookups=0, queried_blocks=0, hit_blocks=0, hit_tokens=0, miss_tokens=0, inserts=0,
                       evictions=0, invalidations=0, store_lookups=0, store_hit_blocks=0, store_loads=0,
                       store_loaded_blocks=0, store_saves=0, store_saved_blocks=0)

    # -- hashing --

    def compute_block_hashes(self, tokens: Sequence[int], parent=None) -> List[str]:
        return compute_block_hashes(tokens, self.block_size, self.extra_keys, parent)

    # -- local cache --

    def __len__(self) -> int:
        return len(self.eviction)

    def __contains__(self, block_hash) -> bool:
        return block_hash in self.eviction

    def insert(self, hashes: Sequence[str], blocks: Sequence[Any], parent: Optional[str] = None) -> int:
        """Caches the blocks, a chain continuing ``parent`` (the block before the first; None: it starts one);
        returns how many were new."""
        hashes, blocks = list(hashes), list(blocks)
        if len(hashes) != len(blocks):
            raise ValueError(f"{len(hashes)} hashes but {len(blocks)} blocks")
        if len(set(hashes)) > self.max_cached_blocks:
            raise PrefixTooLongError(f"{len(hashes)} blocks can never fit a cache of {self.max_cached_blocks}",
                                     {"blocks": len(hashes), "max_cached_blocks": self.max_cached_blocks})
        with self._lock:
            held = self.eviction
            new = [h for h in dict.fromkeys(hashes) if h not in held]
            room = self.max_cached_blocks - len(held)
            if len(new) > room:
                kept = [h for h in hashes if h in held]   # blocks being updated are not victims of their own insert
                for h in kept:
                    held.pin(h)
                try:
                    if held.node_policy:
                        self._evict_now(len(new) - room, strict=True)
                    else:
                        victims = held.select_victims(len(new) - room, strict=True)
                finally:
                    for h in kept:
                        held.unpin(h)
                if not held.node_policy:
                    self._evict(victims)
            held.record_chain(hashes, blocks, parent)   # tail first (a node policy: head first, as the node stores)
            self._c["inserts"] += len(new)
            return len(new)

    def _evict(self, victims) -> None:
        if self.on_evict is not None:
            for h in victims:
                self.on_evict(h, self.eviction.value(h))
        self.eviction.record_eviction(victims)
        self._c["evictions"] += len(victims)

    def _evict_now(self, n: int, strict: bool) -> List[str]:
        victims = self.eviction.evict(n, strict, self.on_evict)
        self._c["evictions"] += len(victims)
        return victims

    def evict(self, n: int) -> List[str]:
        """Evicts up to n blocks by the policy now (pinned ones never); returns their hashes."""
        with self._lock:
            if not len(self.eviction):
                return []
            if self.eviction.node_policy:
                return self._evict_now(n, strict=False)
            victims = self.eviction.select_victims(n)
            self._evict(victims)
            return victims

    def lookup(self, hashes: Sequence[str], check_store: bool = True) -> PrefixLookup:
        hashes = list(hashes)
        with self._lock:
            hit_hashes, hit = self.eviction.lookup_prefix(hashes)
            n = len(hit)
            c = self._c
            c["lookups"] += 1
            c["queried_blocks"] += len(hashes)
            c["hit_blocks"] += n
            c["hit_tokens"] += n * self.block_size
            c["miss_tokens"] += (len(hashes) - n) * self.block_size
        below = []
        if check_store and self.store is not None and n < len(hashes):
            present = self.store.batch_is_exist([block_key(h) for h in hashes[n:]])
            for h, p in zip(hashes[n:], present):
                if p != 1:
                    break
                below.append(h)
            with self._lock:
                self._c["store_lookups"] += 1
                self._c["store_hit_blocks"] += len(below)
        if self.stats is not None:
            for h in hashes[:n]:
                self.stats.record_access(h, True, tier="engine", tokens=self.block_size)
            for h in below:
                self.stats.record_access(h, True, tokens=self.block_size)
            for h in hashes[n + len(below):]:
                self.stats.record_access(h, False, tokens=self.block_size)
        return PrefixLookup(hit, n * self.block_size, hit_hashes, below, self.block_size)

    def lookup_many(self, chains: Sequence[Sequence[str]], check_store: bool = True) -> List[PrefixLookup]:
        """``lookup`` of each chain in ``chains`` (lists of hashes), in one call: a list with one ``PrefixLookup``
        per chain, and the same hits, counters, eviction order and stats records as one ``lookup`` per chain in
        the chains' order (a chain may be empty or repeat another). For a scheduler step that looks up every
        waiting request at once: one lock, one pass over the chains in C loops, and with a store one batched
        EXISTS for the rest of every chain together (a store error raises after the local lookups counted)."""
        chains = [list(hashes) for hashes in chains]
        bs = self.block_size
        with self._lock:
            found = self.eviction.lookup_prefixes(chains)
            hit_blocks = sum(len(hit) for hit, _ in found)
            queried = sum(map(len, chains))
            c = self._c
            c["lookups"] += len(chains)
            c["queried_blocks"] += queried
            c["hit_blocks"] += hit_blocks
            c["hit_tokens"] += hit_blocks * bs
            c["miss_tokens"] += (queried - hit_blocks) * bs
        below = [[] for _ in chains]
        if check_store and self.store is not None:
            asked = [(k, len(found[k][0])) for k, hashes in enumerate(chains) if len(found[k][0]) < len(hashes)]
            if asked:
                answers = self.store.batch_is_exist([block_key(h) for k, n in asked for h in chains[k][n:]])
                at = 0
                for k, n in asked:
                    rest = chains[k][n:]
                    run = below[k]
                    for h, p in zip(rest, answers[at:at + len(rest)]):
                        if p != 1:
                            break
                        run.append(h)
                    at += len(rest)
                with self._lock:
                    self._c["store_lookups"] += len(asked)
                    self._c["store_hit_blocks"] += sum(map(len, below))
        if self.stats is not None:
            record = self.stats.record_access
            for hashes, (hit, _), run in zip(chains, found, below):
                n = len(hit)
                for h in hashes[:n]:
                    record(h, True, tier="engine", tokens=bs)
                for h in run:
                    record(h, True, tokens=bs)
                for h in hashes[n + len(run):]:
                    record(h, False, tokens=bs)
        return [PrefixLookup(values, len(hit) * bs, hit, run, bs)
                for (hit, values), run in zip(found, below)]

    def get(self, block_hash: str):
        with self._lock:
            if block_hash not in self.eviction:
                raise CacheMissError(f"block {block_hash} is not cached", {"hash": block_hash})
            self.eviction.record_access(block_hash, True)
            return self.eviction.value(block_hash)

    def invalidate(self, hashes: Sequence[str]) -> int:
        """Removes the blocks (pins too); returns how many were cached."""
        with self._lock:
            n = 0
            for h in hashes:
                if h in self.eviction:
                    self.eviction.remove(h)
                    n += 1
            self._c["invalidations"] += n
            return n

    def pin(self, hashes: Sequence[str]) -> None:
        """Pins every block (all or nothing): CacheMissError when one is not cached."""
        with self._lock:
            for h in hashes:
                if h not in self.eviction:
                    raise CacheMissError(f"cannot pin block {h}: not cached", {"hash": h})
            for h in hashes:
                self.eviction.pin(h)

    def unpin(self, hashes: Sequence[str]) -> None:
        with self._lock:
            for h in hashes:
                if self.eviction.pin_count(h) == 0:
                    raise RefCountUnderflowError(f"block {h} has no pin", {"hash": h})
            for h in hashes:
                self.eviction.unpin(h)

    def pin_count(self, block_hash: str) -> int:
        with self._lock:
            return self.eviction.pin_count(block_hash)

    def clear(self) -> None:
        with self._lock:
            for h in list(self.eviction.tracked()):
                self.eviction.remove(h)

    def get_stats(self) -> dict:
        with self._lock:
            s = dict(self._c)
            q = s["queried_blocks"]
            s["hit_rate"] = s["hit_blocks"] / q if q else 0.0
            s["cached_blocks"] = len(self.eviction)
            s["max_cached_blocks"] = self.max_cached_blocks
            m = self.eviction.metrics()
            s["pinned_blocks"] = m["pinned"]
            s["policy"] = m["policy"]
            s["re_prefills"] = m["re_prefills"]
            s["re_prefill_rate"] = m["re_prefill_rate"]
            return s

    # -- the store below --

    def _need_store(self, op: str):
        if self.store is None:
            raise ConfigMissingError(f"{op} needs a store: PrefixCache(..., store=KvStore(...))", {})
        return self.store

    @staticmethod
    def _raise_for(code: int, h: str, op: str):
        ctx = {"hash": h, "key": block_key(h), "code": E.code_name(code)}
        if code == E.NOT_FOUND:
            raise CacheMissError(f"{op}: block {h} is no longer on the node", ctx)
        if code == E.TIMEOUT:
            raise TransferTimeoutError(f"{op}: block {h}: the node did not answer in time", ctx)
        if code == E.CHECKSUM_MISMATCH:   # only a store with verify_crc reports it
            raise ChecksumMismatchError(f"{op}: block {h}: the bytes received fail the node's CRC-32C", ctx)
        if code == E.BUFFER_TOO_SMALL:
            raise MetadataMismatchError(f"{op}: block {h} is larger than its destination", ctx)
        raise TransferFailedError(f"{op}: block {h}: {E.code_name(code)}", ctx)

    def _addresses(self, store, dests, sizes):
        """(ptrs, sizes, registered) for raw addresses or buffer objects (registered here, for this call)."""
        if sizes is not None:
            return list(dests), list(sizes), []
        ptrs, lens = [], []
        for d in dests:
            p, n = _buffer_address(d)
            ptrs.append(p)
            lens.append(n)
        registered = [p for p, n in zip(ptrs, lens) if store.register_buffer(p, n) == 0]
        return ptrs, lens, registered

    def load_from_store(self, hashes: Sequence[str], dests, sizes: Optional[Sequence[int]] = None,
                        blocks: Optional[Sequence[Any]] = None) -> List[int]:
        """Reads each block's value from the node into its destination (exactly its size: a value of another
        length is MetadataMismatchError). Returns the lengths. Typed errors: CacheMissError, TransferTimeoutError,
        ChecksumMismatchError, TransferFailedError, ConfigMissingError (no store)."""
        store = self._need_store("load_from_store")
        hashes = list(hashes)
        ptrs, lens, registered = self._addresses(store, dests, sizes)
        if len(ptrs) != len(hashes):
            raise ValueError(f"{len(hashes)} hashes but {len(ptrs)} destinations")
        try:
            results = store.batch_get_into([block_key(h) for h in hashes], ptrs, lens)
        finally:
            for p in registered:
                store.unregister_buffer(p)
        for h, r, n in zip(hashes, results, lens):
            if r < 0:
                self._raise_for(r, h, "load_from_store")
            if r != n:
                raise MetadataMismatchError(f"load_from_store: block {h} holds {r} bytes, its destination {n}",
                                            {"hash": h, "stored_bytes": r, "expected_bytes": n})
        with self._lock:
            self._c["store_loads"] += 1
            self._c["store_loaded_blocks"] += len(hashes)
        if blocks is not None:
            self.insert(hashes, blocks)
        return results

    def save_to_store(self, hashes: Sequence[str], srcs, sizes: Optional[Sequence[int]] = None, parent=None) -> None:
        """Writes blocks to the node under ``kvb1:<hex>`` as a chain (``parent``: the hash the first continues)."""
        store = self._need_store("save_to_store")
        hashes = list(hashes)
        if sizes is None:
            keep = []   # read-only sources go through a writable copy (pass registered memory to avoid it)
            ptrs, lens, registered = [], [], []
            for src in srcs:
                v = memoryview(src).cast("B")
                if v.readonly:
                    v = memoryview(bytearray(v))
                    keep.append(v)
                p, n = _buffer_address(v)
                ptrs.append(p)
                lens.append(n)
                if store.register_buffer(p, n) == 0:
                    registered.append(p)
        else:
            ptrs, lens, registered = list(srcs), list(sizes), []
        try:
            results = store.batch_put_from([block_key(h) for h in hashes], ptrs, lens, chain=True,
                                           chain_parent=block_key(parent) if parent else None)
        finally:
            for p in registered:
                store.unregister_buffer(p)
        for h, r in zip(hashes, results):
            if r < 0:
                self._raise_for(r, h, "save_to_store")
        with self._lock:
            self._c["store_saves"] += 1
            self._c["store_saved_blocks"] += len(hashes)
