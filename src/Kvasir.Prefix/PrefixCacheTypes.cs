namespace Kvasir.Prefix;

/// <summary>
/// The longest cached prefix of a looked-up chain: its blocks (the engine's values), their hashes and the
/// tokens they cover. Deconstructs as sagellm's <c>(hit_blocks, num_tokens)</c>.
/// </summary>
public sealed record PrefixMatch<TBlock>(IReadOnlyList<TBlock> Blocks, IReadOnlyList<BlockHash> Hashes, long NumTokens)
{
    /// <summary>Blocks matched.</summary>
    public int NumBlocks => Blocks.Count;

    /// <summary>(hit blocks, token count), as in Python.</summary>
    public void Deconstruct(out IReadOnlyList<TBlock> blocks, out long numTokens) => (blocks, numTokens) = (Blocks, NumTokens);
}

/// <summary>
/// A lookup through the cache and the store below: the local match, then the blocks that continue it on the
/// node (<see cref="StoreHashes"/>, the longest run present there, found by one batched EXISTS).
/// </summary>
public sealed record StoreLookup<TBlock>(PrefixMatch<TBlock> Local, IReadOnlyList<BlockHash> StoreHashes, int BlockSize)
{
    /// <summary>Tokens served by the engine's own memory.</summary>
    public long LocalTokens => Local.NumTokens;

    /// <summary>Tokens more that the store holds right after the local prefix.</summary>
    public long StoreTokens => (long)StoreHashes.Count * BlockSize;

    /// <summary>Tokens that need no prefill: <see cref="LocalTokens"/> + <see cref="StoreTokens"/>.</summary>
    public long TotalTokens => LocalTokens + StoreTokens;
}

/// <summary>What an insert did: blocks newly cached, blocks evicted to make room, and the caller's blocks not taken because their hash was already cached.</summary>
public sealed record InsertResult<TBlock>(int Inserted, IReadOnlyList<KeyValuePair<BlockHash, TBlock>> Evicted, IReadOnlyList<KeyValuePair<BlockHash, TBlock>> NotTaken);

/// <summary>Counters of a prefix cache. Hit rate is by tokens: hit tokens over hit + miss tokens (0 before any lookup).</summary>
public sealed record PrefixCacheStats(
    long Lookups, long HitTokens, long MissTokens, long Inserts, long Evictions, long Invalidations,
    int CachedBlocks, int PinnedBlocks, int Capacity, double RePrefillRate,
    long StoreLookups, long StoreHitTokens, long StoreLoadedBlocks, long StoreSavedBlocks)
{
    /// <summary>Hit tokens / (hit + miss tokens); 0 when nothing was looked up.</summary>
    public double HitRate => HitTokens + MissTokens == 0 ? 0 : (double)HitTokens / (HitTokens + MissTokens);

    /// <summary>The counters by snake_case name, as Python's <c>get_stats()</c>.</summary>
    public IReadOnlyDictionary<string, object> ToDictionary() => new Dictionary<string, object>
    {
        ["hit_rate"] = HitRate,
        ["lookups"] = Lookups,
        ["hit_tokens"] = HitTokens,
        ["miss_tokens"] = MissTokens,
        ["inserts"] = Inserts,
        ["evictions"] = Evictions,
        ["invalidations"] = Invalidations,
        ["cached_blocks"] = CachedBlocks,
        ["pinned_blocks"] = PinnedBlocks,
        ["capacity"] = Capacity,
        ["re_prefill_rate"] = RePrefillRate,
        ["store_lookups"] = StoreLookups,
        ["store_hit_tokens"] = StoreHitTokens,
        ["store_loaded_blocks"] = StoreLoadedBlocks,
        ["store_saved_blocks"] = StoreSavedBlocks,
    };
}
