namespace Kvasir.Storage;

/// <summary>Which values the store gives up first when it needs room. docs/eviction.md compares them on a production trace.</summary>
public enum EvictionPolicyKind
{
    /// <summary>Least recently used first. Chain links are recorded but do not influence the choice.</summary>
    Lru,

    /// <summary>
    /// Only chain leaves (values no present value continues) are evicted, least recently used leaf first,
    /// so what survives of a chain is always a prefix of it. See <see cref="KvArenaStore.Commit"/>.
    /// </summary>
    PrefixAware,

    /// <summary>Oldest insertion first; reads do not reorder.</summary>
    Fifo,

    /// <summary>Least frequently used with dynamic aging (LFU-DA): access count plus the age of the cache at the last access.</summary>
    Lfu,

    /// <summary>S3-FIFO: a small probation FIFO, a main FIFO with second chances, and a ghost queue of recently dropped keys.</summary>
    S3Fifo,

    /// <summary>
    /// Chain-aware LFU with dynamic aging (this project's design, the default): reads plus one while another block
    /// continues this one, so a chain goes from its tail and orphans are worth nothing. See docs/eviction.md.
    /// </summary>
    ChainLfu,

    /// <summary>
    /// <see cref="ChainLfu"/> that remembers reads across evictions in a frequency sketch (TinyLFU-style, 8 bytes per
    /// key): a block stored again after it was evicted starts from its past reads. See docs/eviction.md.
    /// </summary>
    ChainSketch,
}
