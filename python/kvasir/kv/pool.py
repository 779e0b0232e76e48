"""KVPool and KVHandle: a budget of KV memory in tokens (and optionally bytes), handed out as token ranges.

``KVPool(max_tokens, node_rank=None, *, max_bytes=None, bytes_per_token=None, block_size=None, rank=0,
max_handles=None, backing=False)``

* ``max_tokens``: the token budget (a virtual token space 0 .. max_tokens; each handle owns the
  contiguous range ``[token_start, token_end)``). ``None`` only with ``max_bytes``: no token limit.
* ``max_bytes``: a byte budget as well; an allocation's bytes are ``num_bytes=`` if given, else
  ``num_tokens * bytes_per_token`` (without either, alloc raises ConfigMissingError).
* ``block_size``: allocate whole blocks (ranges rounded up to and aligned on block_size tokens); the
  handle's ``num_tokens`` stays what was asked, the budget is charged for the whole blocks.
* ``backing=True`` (needs ``bytes_per_token`` and a token budget): the pool owns one host buffer of
  ``max_tokens * bytes_per_token`` bytes and ``handle.memory_ptr`` is the address of the handle's range in
  it; otherwise ``memory_ptr`` is None (the engine owns the memory, the pool only accounts for it).
* ``rank`` / ``node_rank``: stamped on every handle (``is_local(rank)`` compares them).

Reference counts and pins: ``alloc`` returns a handle with one reference; ``retain`` adds one; ``free``
drops one and returns the memory when none is left. ``pin`` / ``unpin`` are counted; the last ``free`` of a
pinned handle raises HandlePinnedError (nothing changes). Errors (kvasir.kv.errors): BudgetExceededError
(the request can never fit), PoolFullError (not enough free tokens now, no contiguous range, or
max_handles live handles), MemoryExhaustedError (not enough free bytes now), InvalidHandleError (not a
handle of this pool), DoubleFreeError (already returned), HandleNotFoundError (unknown handle_id),
RefCountUnderflowError (unpin without a pin), ConfigInvalidError / ConfigMissingError (options).

Thread-safe: one lock guards the accounting, so the budgets hold under any interleaving of threads.
Allocation is first fit over a sorted list of free ranges, coalesced on free.
"""
import bisect
import ctypes
import itertools
import threading
import uuid
from typing import Any, Dict, List, Optional

from .errors import (BudgetExceededError, ConfigInvalidError, ConfigMissingError, DoubleFreeError, HandleNotFoundError,
                     HandlePinnedError, InvalidHandleError, MemoryExhaustedError, PoolFullError, RefCountUnderflowError)

__all__ = ["KVPool", "KVHandle"]

_pool_ids = itertools.count(1)


class KVHandle:
    """One allocation of a KVPool. The sagellm fields are plain attributes; the live counts are read from the pool."""

    __slots__ = ("handle_id", "request_id", "num_tokens", "token_start", "token_end", "dtype", "device", "layout",
                 "memory_ptr", "rank", "node_rank", "num_bytes", "_pool", "_pool_id")

    def __init__(self, pool, handle_id, request_id, num_tokens, token_start, token_end, dtype, device, layout,
                 memory_ptr, rank, node_rank, num_bytes):
        self.handle_id = handle_id
        self.request_id = request_id
        self.num_tokens = num_tokens
        self.token_start = token_start
        self.token_end = token_end
        self.dtype = dtype
        self.device = device
        self.layout = layout
        self.memory_ptr = memory_ptr
        self.rank = rank
        self.node_rank = node_rank
        self.num_bytes = num_bytes
        self._pool = pool
        self._pool_id = pool.pool_id

    @property
    def ref_count(self) -> int:
        return self._pool.ref_count(self)

    @property
    def pin_count(self) -> int:
        return self._pool.pin_count(self)

    @property
    def is_freed(self) -> bool:
        return not self._pool.is_live(self)

    def is_local(self, rank: int) -> bool:
        """True when this handle's memory belongs to ``rank``."""
        return self.rank == rank

    def to_dict(self) -> Dict[str, Any]:
        return {"handle_id": self.handle_id, "request_id": self.request_id, "num_tokens": self.num_tokens,
                "token_start": self.token_start, "token_end": self.token_end, "dtype": self.dtype,
                "device": self.device, "layout": self.layout, "memory_ptr": self.memory_ptr, "rank": self.rank,
                "node_rank": self.node_rank, "num_bytes": self.num_bytes}

    def __repr__(self) -> str:
        return f"KVHandle({self.handle_id}, tokens [{self.token_start}, {self.token_end}), request {self.request_id!r})"


class _Live:
    __slots__ = ("refs", "pins", "start", "length", "nbytes")

    def __init__(self, start, length, nbytes):
        self.refs, self.pins, self.start, self.length, self.nbytes = 1, 0, start, length, nbytes


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigInvalidError(f"{name} must be an int >= 1, not {value!r}", {name: repr(value)})
    return value


class KVPool:
    def __init__(self, max_tokens: Optional[int], node_rank: Optional[int] = None, *, max_bytes: Optional[int] = None,
                 bytes_per_token: Optional[int] = None, block_size: Optional[int] = None, rank: int = 0,
                 max_handles: Optional[int] = None, backing: bool = False):
        if max_tokens is None and max_bytes is None:
            raise ConfigMissingError("a KVPool needs a budget: max_tokens, max_bytes or both", {})
        self.max_tokens = _positive("max_tokens", max_tokens, allow_none=True)
        self.max_bytes = _positive("max_bytes", max_bytes, allow_none=True)
        self.bytes_per_token = _positive("bytes_per_token", bytes_per_token, allow_none=True)
        self.block_size = _positive("block_size", block_size, allow_none=True)
        self.max_handles = _positive("max_handles", max_handles, allow_none=True)
        self.rank = rank
        self.node_rank = node_rank
        self.pool_id = next(_pool_ids)
        self._lock = threading.Lock()
        self._live: Dict[str, _Live] = {}
        self._handles: Dict[str, KVHandle] = {}
        space = self.max_tokens if self.max_tokens is not None else 2 ** 62
        self._free_starts: List[int] = [0]
        self._free_lengths: List[int] = [space]
        self.used_tokens = 0
        self.used_bytes = 0
        self.peak_tokens = 0
        self.peak_bytes = 0
        self.allocs = 0
        self.frees = 0
        self._buffer = None
        self._base = None
        if backing:
            if self.bytes_per_token is None or self.max_tokens is None:
                raise ConfigMissingError("backing=True needs bytes_per_token and max_tokens", {})
            self._buffer = ctypes.create_string_buffer(self.max_tokens * self.bytes_per_token)
            self._base = ctypes.addressof(self._buffer)

    # -- accounting --

    @property
    def free_tokens(self) -> Optional[int]:
        return None if self.max_tokens is None else self.max_tokens - self.used_tokens

    @property
    def free_bytes(self) -> Optional[int]:
        return None if self.max_bytes is None else self.max_bytes - self.used_bytes

    @property
    def num_handles(self) -> int:
        return len(self._live)

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {"max_tokens": self.max_tokens, "used_tokens": self.used_tokens, "free_tokens": self.free_tokens,
                    "max_bytes": self.max_bytes, "used_bytes": self.used_bytes, "free_bytes": self.free_bytes,
                    "peak_tokens": self.peak_tokens, "peak_bytes": self.peak_bytes, "handles": len(self._live),
                    "pinned_handles": sum(1 for v in self._live.values() if v.pins), "allocs": self.allocs,
                    "frees": self.frees, "free_ranges": len(self._free_starts)}

    # -- alloc / free --

    def alloc(self, num_tokens: int, device: str = "cpu", dtype: Optional[str] = None, layout: Optional[str] = None,
              request_id: Optional[str] = None, num_bytes: Optional[int] = None) -> KVHandle:
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"num_tokens must be an int >= 1, not {num_tokens!r}")
        length = num_tokens if self.block_size is None else -(-num_tokens // self.block_size) * self.block_size
        if num_bytes is None and self.bytes_per_token is not None:
            num_bytes = length * self.bytes_per_token
        if self.max_bytes is not None and num_bytes is None:
            raise ConfigMissingError("this pool has a byte budget: pass num_bytes= or create it with bytes_per_token=",
                                     {"num_tokens": num_tokens})
        ctx = {"num_tokens": num_tokens, "reserved_tokens": length, "num_bytes": num_bytes, "request_id": request_id}
        if self.max_tokens is not None and length > self.max_tokens:
            raise BudgetExceededError(f"{length} tokens can never fit a budget of {self.max_tokens}",
                                      dict(ctx, max_tokens=self.max_tokens))
        if self.max_bytes is not None and num_bytes > self.max_bytes:
            raise BudgetExceededError(f"{num_bytes} bytes can never fit a budget of {self.max_bytes}",
                                      dict(ctx, max_bytes=self.max_bytes))
        with self._lock:
            if self.max_handles is not None and len(self._live) >= self.max_handles:
                raise PoolFullError(f"{len(self._live)} live handles, the most this pool allows",
                                    dict(ctx, max_handles=self.max_handles))
            if self.max_tokens is not None and length > self.max_tokens - self.used_tokens:
                raise PoolFullError(f"{length} tokens asked, {self.max_tokens - self.used_tokens} free",
                                    dict(ctx, free_tokens=self.max_tokens - self.used_tokens))
            if self.max_bytes is not None and num_bytes > self.max_bytes - self.used_bytes:
                raise MemoryExhaustedError(f"{num_bytes} bytes asked, {self.max_bytes - self.used_bytes} free",
                                           dict(ctx, free_bytes=self.max_bytes - self.used_bytes))
            start = self._take_range(length)
            if start is None:
                raise PoolFullError(f"{length} tokens free but not contiguous", dict(ctx, free_ranges=len(self._free_starts)))
            nbytes = num_bytes or 0
            self.used_tokens += length
            self.used_bytes += nbytes
            self.peak_tokens = max(self.peak_tokens, self.used_tokens)
            self.peak_bytes = max(self.peak_bytes, self.used_bytes)
            self.allocs += 1
            hid = str(uuid.uuid4())
            ptr = None if self._base is None else self._base + start * self.bytes_per_token
            handle = KVHandle(self, hid, request_id, num_tokens, start, start + num_tokens, dtype, device, layout, ptr,
                              self.rank, self.node_rank, num_bytes)
            self._live[hid] = _Live(start, length, nbytes)
            self._handles[hid] = handle
            return handle

    def _take_range(self, length: int) -> Optional[int]:
        for i, (s, n) in enumerate(zip(self._free_starts, self._free_lengths)):
            if n >= length:
                if n == length:
                    del self._free_starts[i]
                    del self._free_lengths[i]
                else:
                    self._free_starts[i] = s + length
                    self._free_lengths[i] = n - length
                return s
        return None

    def _give_range(self, start: int, length: int) -> None:
        i = bisect.bisect_left(self._free_starts, start)
        starts, lengths = self._free_starts, self._free_lengths
        if i > 0 and starts[i - 1] + lengths[i - 1] == start:
            i -= 1
            lengths[i] += length
        else:
            starts.insert(i, start)
            lengths.insert(i, length)
        if i + 1 < len(starts) and starts[i] + lengths[i] == starts[i + 1]:
            lengths[i] += lengths[i + 1]
            del starts[i + 1]
            del lengths[i + 1]

    def _entry(self, handle, op: str) -> _Live:
        """The live record of ``handle`` (a KVHandle or a handle_id); the lock is held."""
        if isinstance(handle, str):
            live = self._live.get(handle)
            if live is None:
                raise HandleNotFoundError(f"{op}: no live handle {handle}", {"handle_id": handle})
            return live
        if not isinstance(handle, KVHandle) or handle._pool_id != self.pool_id:
            raise InvalidHandleError(f"{op}: {handle!r} is not a handle of this pool",
                                     {"handle": repr(handle), "pool_id": self.pool_id})
        live = self._live.get(handle.handle_id)
        if live is None:
            raise DoubleFreeError(f"{op}: handle {handle.handle_id} was already freed", {"handle_id": handle.handle_id})
        return live

    def free(self, handle) -> bool:
        """Drops one reference of ``handle`` (a KVHandle or its handle_id); True when that returned the memory."""
        with self._lock:
            live = self._entry(handle, "free")
            hid = handle if isinstance(handle, str) else handle.handle_id
            if live.refs == 1 and live.pins:
                raise HandlePinnedError(f"free: handle {hid} is pinned ({live.pins} pins)", {"handle_id": hid, "pins": live.pins})
            live.refs -= 1
            if live.refs:
                return False
            del self._live[hid]
            del self._handles[hid]
            self._give_range(live.start, live.length)
            self.used_tokens -= live.length
            self.used_bytes -= live.nbytes
            self.frees += 1
            return True

    def retain(self, handle) -> int:
        """Adds a reference; returns the new count."""
        with self._lock:
            live = self._entry(handle, "retain")
            live.refs += 1
            return live.refs

    def pin(self, handle) -> int:
        with self._lock:
            live = self._entry(handle, "pin")
            live.pins += 1
            return live.pins

    def unpin(self, handle) -> int:
        with self._lock:
            live = self._entry(handle, "unpin")
            if live.pins == 0:
                hid = handle if isinstance(handle, str) else handle.handle_id
                raise RefCountUnderflowError(f"unpin: handle {hid} has no pin", {"handle_id": hid})
            live.pins -= 1
            return live.pins

    def get(self, handle_id: str) -> KVHandle:
        with self._lock:
            h = self._handles.get(handle_id)
            if h is None:
                raise HandleNotFoundError(f"no live handle {handle_id}", {"handle_id": handle_id})
            return h

    def ref_count(self, handle) -> int:
        live = self._live.get(handle.handle_id)
        return live.refs if live else 0

    def pin_count(self, handle) -> int:
        live = self._live.get(handle.handle_id)
        return live.pins if live else 0

    def is_live(self, handle) -> bool:
        return handle.handle_id in self._live

    def handles(self) -> List[KVHandle]:
        with self._lock:
            return list(self._handles.values())
