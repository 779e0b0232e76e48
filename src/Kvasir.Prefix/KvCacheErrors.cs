namespace Kvasir.Prefix;

// One sealed exception per error code of the engine-side KV management (issue 14). The codes, their
// meaning and whether a retry can help are the same in Python (kvasir.kv); docs/engine-side.md lists them.

/// <summary>BUDGET_EXCEEDED: A single request asks for more tokens or bytes than the pool's whole budget (or its per-request limit): it can never fit, so retrying is useless. Retryable: no.</summary>
public sealed class BudgetExceededException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("BUDGET_EXCEEDED", message, context, false, cause);

/// <summary>MEMORY_EXHAUSTED: The pool's byte budget is used up right now; retry after frees or evictions. Retryable: yes.</summary>
public sealed class MemoryExhaustedException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("MEMORY_EXHAUSTED", message, context, true, cause);

/// <summary>POOL_FULL: The pool's token (or block) budget is used up right now; retry after frees or evictions. Retryable: yes.</summary>
public sealed class PoolFullException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("POOL_FULL", message, context, true, cause);

/// <summary>INVALID_HANDLE: The handle does not belong to this pool, or is used (add-ref, pin) after its memory went back to the pool. Retryable: no.</summary>
public sealed class InvalidHandleException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("INVALID_HANDLE", message, context, false, cause);

/// <summary>DOUBLE_FREE: A handle is freed after its memory already went back to the pool. Retryable: no.</summary>
public sealed class DoubleFreeException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("DOUBLE_FREE", message, context, false, cause);

/// <summary>HANDLE_PINNED: A pinned handle or cache block cannot be freed, evicted or invalidated; unpin it first. Retryable: yes.</summary>
public sealed class HandlePinnedException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("HANDLE_PINNED", message, context, true, cause);

/// <summary>HANDLE_NOT_FOUND: No live handle has this id. Retryable: no.</summary>
public sealed class HandleNotFoundException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("HANDLE_NOT_FOUND", message, context, false, cause);

/// <summary>REF_COUNT_UNDERFLOW: An unpin (or release) without a matching pin. Retryable: no.</summary>
public sealed class RefCountUnderflowException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("REF_COUNT_UNDERFLOW", message, context, false, cause);

/// <summary>CACHE_MISS: The block is not in the prefix cache (or, for a store call, not on the node). Retryable: no.</summary>
public sealed class CacheMissException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("CACHE_MISS", message, context, false, cause);

/// <summary>PREFIX_TOO_LONG: An insert names more blocks than the prefix cache can hold at all. Retryable: no.</summary>
public sealed class PrefixTooLongException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("PREFIX_TOO_LONG", message, context, false, cause);

/// <summary>NO_VICTIM: Eviction was asked for more blocks than are tracked: nothing (or not enough) to evict. Retryable: yes.</summary>
public sealed class NoVictimException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("NO_VICTIM", message, context, true, cause);

/// <summary>EVICTION_FAILED: An eviction policy named a victim that is not tracked or is pinned (a policy bug). Retryable: no.</summary>
public sealed class EvictionFailedException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("EVICTION_FAILED", message, context, false, cause);

/// <summary>ALL_PINNED: Enough blocks are tracked, but too many of them are pinned to evict the number asked for. Retryable: yes.</summary>
public sealed class AllPinnedException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("ALL_PINNED", message, context, true, cause);

/// <summary>TRANSFER_FAILED: The store below could not be reached or refused a load or save. Retryable: yes.</summary>
public sealed class TransferFailedException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("TRANSFER_FAILED", message, context, true, cause);

/// <summary>TRANSFER_TIMEOUT: The store below did not answer a load or save in time. Retryable: yes.</summary>
public sealed class TransferTimeoutException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("TRANSFER_TIMEOUT", message, context, true, cause);

/// <summary>CHECKSUM_MISMATCH: Stored data disagrees with what is recomputed from it (an access-statistics file's summary differs from its accesses). Retryable: no.</summary>
public sealed class ChecksumMismatchException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("CHECKSUM_MISMATCH", message, context, false, cause);

/// <summary>METADATA_MISMATCH: Data does not have the shape expected: a loaded block's length differs from its buffer, or a file has another schema or a newer version. Retryable: no.</summary>
public sealed class MetadataMismatchException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("METADATA_MISMATCH", message, context, false, cause);

/// <summary>CONFIG_MISSING: A required setting is absent (a pool with no budget, a byte budget without bytes per token, a store call with no store). Retryable: no.</summary>
public sealed class ConfigMissingException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("CONFIG_MISSING", message, context, false, cause);

/// <summary>CONFIG_INVALID: A setting is out of range (block size below 1, a negative budget, an unknown policy name). Retryable: no.</summary>
public sealed class ConfigInvalidException(string message, IReadOnlyDictionary<string, object?>? context = null, Exception? cause = null)
    : KvCacheException("CONFIG_INVALID", message, context, false, cause);
