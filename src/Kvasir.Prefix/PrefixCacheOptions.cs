using Kvasir.Client;

namespace Kvasir.Prefix;

/// <summary>Settings of a <see cref="PrefixCache{TBlock}"/>.</summary>
public sealed class PrefixCacheOptions
{
    /// <summary>Tokens per block. Default 16. Must be at least 1 and equal to the engine's KV block size; blocks of another size never match.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>
    /// Blocks the cache holds at most. Default 10,000; 1 to 2^29. Inserting past it evicts in the policy's order; an
    /// insert of more blocks than this throws <see cref="PrefixTooLongException"/>. Memory grows with the blocks held
    /// (doubling, up to this): per block one slot of 52 bytes plus the block value, rounded up to 8 (56 bytes for an int),
    /// plus two to four 8-byte index buckets — about 72 MB at 1M int blocks — and the 100,000 evicted hashes kept for the
    /// re-prefill rate (3 MB: an 8-byte ring slot and two to four 8-byte set buckets each).
    /// </summary>
    public int MaxCachedBlocks { get; init; } = 10_000;

    /// <summary>Extra keys mixed into every block hash (model id, LoRA id, cache salt). Default none. Engines sharing a store must use the same ones for the same model.</summary>
    public IReadOnlyList<string>? ExtraKeys { get; init; }

    /// <summary>
    /// The eviction policy. Default null: LRU when <see cref="EnableLru"/> is true, else FIFO. By name:
    /// <see cref="EvictionManager.CreatePolicy"/> ("lru", "fifo", or the node's "lfu", "s3fifo", "chainlfu",
    /// "chainsketch": docs/eviction.md). A policy instance belongs to one cache; sharing it between caches corrupts both orders.
    /// </summary>
    public IEvictionPolicy? Policy { get; init; }

    /// <summary>sagellm's <c>enable_lru</c>: with no <see cref="Policy"/>, true picks LRU (default), false FIFO.</summary>
    public bool EnableLru { get; init; } = true;

    /// <summary>
    /// The store as the tier below, or null (default): then only the local calls work and the store calls
    /// throw <see cref="ConfigMissingException"/>. The cache does not own the store (it does not dispose it).
    /// </summary>
    public KvStore? Store { get; init; }
}
