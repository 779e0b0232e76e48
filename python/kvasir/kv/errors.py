"""The KVCacheError family: one class per sagellm-kv-cache error code, each with a stable code string.

``KVCacheError(code, message, context=None, cause=None)``; ``to_dict()`` gives
``{"error_type", "code": "KV_<NAME>", "message", "context", "retryable"}``. ``retryable`` says whether the
same call may succeed later without the caller changing it (after frees, unpins, evictions or a retry
of the transfer). Each subclass documents where kvasir.kv raises it.
"""
from typing import Any, Dict, Optional

__all__ = [
    "KVCacheError", "BudgetExceededError", "MemoryExhaustedError", "PoolFullError", "InvalidHandleError",
    "DoubleFreeError", "HandlePinnedError", "HandleNotFoundError", "RefCountUnderflowError", "CacheMissError",
    "PrefixTooLongError", "NoVictimError", "EvictionFailedError", "AllPinnedError", "TransferFailedError",
    "TransferTimeoutError", "ChecksumMismatchError", "MetadataMismatchError", "ConfigMissingError",
    "ConfigInvalidError", "ERROR_CLASSES", "error_for_code",
]


class KVCacheError(Exception):
    """Base of every kvasir.kv error. ``code`` is ``"KV_<NAME>"`` (a bare ``"<NAME>"`` is accepted)."""

    retryable = False
    default_code = "KV_UNKNOWN"

    def __init__(self, code: Optional[str] = None, message: str = "", context: Optional[Dict[str, Any]] = None,
                 cause: Optional[BaseException] = None):
        code = code or self.default_code
        self.code = code if code.startswith("KV_") else "KV_" + code
        self.message = message
        self.context = dict(context or {})
        self.cause = cause
        super().__init__(f"{self.code}: {message}")
        if cause is not None:
            self.__cause__ = cause

    def to_dict(self) -> Dict[str, Any]:
        return {"error_type": type(self).__name__, "code": self.code, "message": self.message,
                "context": dict(self.context), "retryable": self.retryable}


def _kind(name: str, code: str, retryable: bool, doc: str, *bases):
    def init(self, message: str = "", context=None, cause=None):
        KVCacheError.__init__(self, code, message, context, cause)
    cls = type(name, (KVCacheError,) + bases, {"__init__": init, "retryable": retryable,
                                               "default_code": "KV_" + code, "__doc__": doc})
    return cls


# KVPool
BudgetExceededError = _kind("BudgetExceededError", "BUDGET_EXCEEDED", False,
                            "KVPool.alloc: the request alone is larger than the pool's whole token or byte budget.")
MemoryExhaustedError = _kind("MemoryExhaustedError", "MEMORY_EXHAUSTED", True,
                             "KVPool.alloc: the byte budget (max_bytes) has too few free bytes now.")
PoolFullError = _kind("PoolFullError", "POOL_FULL", True,
                      "KVPool.alloc: too few free tokens now (or no contiguous range, or max_handles reached).")
InvalidHandleError = _kind("InvalidHandleError", "INVALID_HANDLE", False,
                           "KVPool: the argument is not a KVHandle of this pool.")
DoubleFreeError = _kind("DoubleFreeError", "DOUBLE_FREE", False,
                        "KVPool.free / release: the handle's memory was already returned.")
HandlePinnedError = _kind("HandlePinnedError", "HANDLE_PINNED", True,
                          "KVPool.free: the last reference of a pinned handle (unpin it first).")
HandleNotFoundError = _kind("HandleNotFoundError", "HANDLE_NOT_FOUND", False,
                            "KVPool.get / free by id: no live handle has that handle_id.")
RefCountUnderflowError = _kind("RefCountUnderflowError", "REF_COUNT_UNDERFLOW", False,
                               "KVPool.unpin / PrefixCache.unpin: the pin count is already zero.")
# PrefixCache
CacheMissError = _kind("CacheMissError", "CACHE_MISS", False,
                       "PrefixCache.get / pin of a block not cached; load_from_store of a block the node no longer has.")
PrefixTooLongError = _kind("PrefixTooLongError", "PREFIX_TOO_LONG", False,
                           "PrefixCache.insert of more blocks than max_cached_blocks (can never fit).")
# EvictionManager
NoVictimError = _kind("NoVictimError", "NO_VICTIM", True,
                      "EvictionManager.select_victims(n > 0) with no block tracked at all.")
EvictionFailedError = _kind("EvictionFailedError", "EVICTION_FAILED", True,
                            "EvictionManager.select_victims(n, strict=True): fewer than n evictable blocks "
                            "(some, but not all, are pinned); PrefixCache.insert when it cannot make room.")
AllPinnedError = _kind("AllPinnedError", "ALL_PINNED", True,
                       "EvictionManager.select_victims: blocks are tracked but every one is pinned.")
# the store below
TransferFailedError = _kind("TransferFailedError", "TRANSFER_FAILED", True,
                            "load_from_store / save_to_store: the node answered an error (unavailable, out of memory, ...).")
TransferTimeoutError = _kind("TransferTimeoutError", "TRANSFER_TIMEOUT", True,
                             "load_from_store / save_to_store: the node did not answer within the request timeout.")
ChecksumMismatchError = _kind("ChecksumMismatchError", "CHECKSUM_MISMATCH", True,
                              "load_from_store with a store that verifies CRC-32C: the bytes received do not match.")
MetadataMismatchError = _kind("MetadataMismatchError", "METADATA_MISMATCH", False,
                              "load_from_store: the stored value's length differs from the block's; "
                              "read_stats: another schema or a newer version.")
# configuration
ConfigMissingError = _kind("ConfigMissingError", "CONFIG_MISSING", False,
                           "A call needs something not configured: a store for load/save, a byte size under a "
                           "byte budget, the kvasir CLI for plots.")
ConfigInvalidError = _kind("ConfigInvalidError", "CONFIG_INVALID", False,
                           "A constructor or option value out of range (block_size < 1, max_tokens < 1, unknown policy).",
                           ValueError)

ERROR_CLASSES = {cls.default_code: cls for cls in (
    BudgetExceededError, MemoryExhaustedError, PoolFullError, InvalidHandleError, DoubleFreeError, HandlePinnedError,
    HandleNotFoundError, RefCountUnderflowError, CacheMissError, PrefixTooLongError, NoVictimError,
    EvictionFailedError, AllPinnedError, TransferFailedError, TransferTimeoutError, ChecksumMismatchError,
    MetadataMismatchError, ConfigMissingError, ConfigInvalidError)}


def error_for_code(code: str, message: str = "", context=None, cause=None) -> KVCacheError:
    """The typed error of ``code`` (``"KV_POOL_FULL"`` or ``"POOL_FULL"``); a plain KVCacheError if unknown."""
    full = code if code.startswith("KV_") else "KV_" + code
    cls = ERROR_CLASSES.get(full)
    return cls(message, context, cause) if cls else KVCacheError(full, message, context, cause)
