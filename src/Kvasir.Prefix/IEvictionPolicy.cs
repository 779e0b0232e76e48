namespace Kvasir.Prefix;

/// <summary>
/// The order in which an <see cref="EvictionManager"/> offers blocks for eviction. A policy only orders:
/// pins, counts and metrics are the manager's. Calls come from the manager under its lock, so a policy
/// needs no synchronisation of its own; each call should be O(1) (a cache of 1M blocks calls it per access).
/// The built-in <see cref="LruPolicy"/> and <see cref="FifoPolicy"/> are not called per block: a cache keeps their
/// order in its own slot array (links between slot indices), which is what keeps a hit to a few memory touches. The
/// node's policies (<see cref="NodePolicy"/>: <see cref="LfuPolicy"/>, <see cref="S3FifoPolicy"/>,
/// <see cref="ChainLfuPolicy"/>) are kept in arrays beside that slot array and are not called by hash either. A policy
/// of your own is called by hash, as below, and costs its own lookups on top.
/// </summary>
public interface IEvictionPolicy
{
    /// <summary>Short name for logs and stats ("lru", "fifo", "lfu", "s3fifo", "chainlfu", "chainsketch").</summary>
    string Name { get; }

    /// <summary>A block entered the cache (never called twice without <see cref="OnRemove"/> between).</summary>
    void OnInsert(BlockHash block);

    /// <summary>A cached block was hit (or re-inserted while cached).</summary>
    void OnAccess(BlockHash block);

    /// <summary>A block left the cache (evicted or invalidated).</summary>
    void OnRemove(BlockHash block);

    /// <summary>Cached blocks, first victim first. Enumerated lazily: the manager stops once it has enough unpinned ones.</summary>
    IEnumerable<BlockHash> Candidates();
}
