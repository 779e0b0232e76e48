using Kvasir.Prefix.Internal;

namespace Kvasir.Prefix;

/// <summary>
/// Tracks cached blocks for one cache, holds their pins, and picks victims through an
/// <see cref="IEvictionPolicy"/> (LRU by default, FIFO, or the caller's own). It also measures what
/// eviction costs: <see cref="Evictions"/>, and the <see cref="RePrefillRate"/> — the share of inserts
/// that bring back a block evicted earlier, i.e. prefill work done twice. Blocks live in one slot array
/// (<see cref="BlockTable{TValue}"/>, the same structure a <see cref="PrefixCache{TBlock}"/> keeps), so every
/// call is O(1) per block named and touches a few cache lines. Thread-safe (one lock).
/// </summary>
public sealed class EvictionManager
{
    private readonly object _lock = new();
    private readonly BlockTable<byte> _table;

    /// <summary>
    /// A manager with <paramref name="policy"/> (default <see cref="LruPolicy"/>). It remembers the ids of
    /// the last <paramref name="evictedMemory"/> evicted blocks (default 100,000; 24 to 40 bytes each) to
    /// count re-prefills; 0 turns that measurement off, a huge value costs memory.
    /// </summary>
    public EvictionManager(IEvictionPolicy? policy = null, int evictedMemory = 100_000)
    {
        if (evictedMemory < 0)
            throw new ConfigInvalidException($"evicted memory must be 0 or more, not {evictedMemory}", new Dictionary<string, object?> { ["evicted_memory"] = evictedMemory });
        _table = new BlockTable<byte>(policy ?? new LruPolicy(), evictedMemory, int.MaxValue);
        EvictedMemory = evictedMemory;
    }

    /// <summary>The names <see cref="CreatePolicy"/> knows: the node's policies of the same names (docs/eviction.md) but "prefix".</summary>
    public static IReadOnlyList<string> PolicyNames { get; } = ["lru", "fifo", "lfu", "s3fifo", "chainlfu", "chainsketch"];

    /// <summary>
    /// A policy by name (case-insensitive): "lru", "fifo", "lfu" (<see cref="LfuPolicy"/>), "s3fifo"
    /// (<see cref="S3FifoPolicy"/>), "chainlfu" or "chainsketch" (<see cref="ChainLfuPolicy"/>); another name throws
    /// <see cref="ConfigInvalidException"/>.
    /// </summary>
    public static IEvictionPolicy CreatePolicy(string name) => name.ToLowerInvariant() switch
    {
        "lru" => new LruPolicy(),
        "fifo" => new FifoPolicy(),
        "lfu" => new LfuPolicy(),
        "s3fifo" => new S3FifoPolicy(),
        "chainlfu" => new ChainLfuPolicy(),
        "chainsketch" => new ChainLfuPolicy(remember: true),
        _ => throw new ConfigInvalidException($"unknown eviction policy '{name}' (known: {string.Join(", ", PolicyNames)})", new Dictionary<string, object?> { ["policy"] = name }),
    };

    /// <summary>How many evicted ids are remembered for <see cref="RePrefillRate"/>.</summary>
    public int EvictedMemory { get; }

    /// <summary>The policy's name.</summary>
    public string PolicyName => _table.PolicyName;

    /// <summary>Blocks tracked now.</summary>
    public int Count { get { lock (_lock) return _table.Count; } }

    /// <summary>Tracked blocks with at least one pin.</summary>
    public int PinnedCount { get { lock (_lock) return _table.PinnedCount; } }

    /// <summary>Blocks evicted so far (through <see cref="Evict"/>).</summary>
    public long Evictions { get { lock (_lock) return _table.Evictions; } }

    /// <summary>Accesses recorded so far.</summary>
    public long Accesses { get { lock (_lock) return _table.Accesses; } }

    /// <summary>Inserts of a block that had been evicted (among the last <see cref="EvictedMemory"/>) over all inserts; 0 before any insert.</summary>
    public double RePrefillRate { get { lock (_lock) return _table.RePrefillRate; } }

    /// <summary>Starts tracking <paramref name="block"/>; returns false (and counts an access) when it already is.</summary>
    public bool Track(BlockHash block) => Track(block, null);

    /// <summary>
    /// As <see cref="Track(BlockHash)"/>, the block continuing <paramref name="parent"/> (null, or a block not tracked:
    /// none). Only <see cref="ChainLfuPolicy"/> uses the link; a tracked block is relinked, as the node does.
    /// </summary>
    public bool Track(BlockHash block, BlockHash? parent)
    {
        lock (_lock) return _table.Track(block, 0, out _, parent is BlockHash p ? _table.Find(p) : -1);
    }

    /// <summary>Records a hit on a tracked block (ignored for an untracked one).</summary>
    public void RecordAccess(BlockHash block)
    {
        lock (_lock)
        {
            int slot = _table.Find(block);
            if (slot >= 0) _table.Access(slot);
        }
    }

    /// <summary>Whether <paramref name="block"/> is tracked.</summary>
    public bool Contains(BlockHash block) { lock (_lock) return _table.Find(block) >= 0; }

    /// <summary>Stops tracking a block that left for another reason than eviction (invalidated). Pinned: <see cref="HandlePinnedException"/>.</summary>
    public bool Untrack(BlockHash block)
    {
        lock (_lock)
        {
            int slot = _table.Find(block);
            if (slot < 0) return false;
            if (_table.PinsAt(slot) > 0)
                throw new HandlePinnedException($"block {block} is pinned", new Dictionary<string, object?> { ["block"] = block.Hex, ["pins"] = _table.PinsAt(slot) });
            _table.Remove(slot);
            return true;
        }
    }

    /// <summary>Adds a pin to a tracked block (pins nest); an untracked one throws <see cref="CacheMissException"/>.</summary>
    public void Pin(BlockHash block)
    {
        lock (_lock)
        {
            int slot = _table.Find(block);
            if (slot < 0)
                throw new CacheMissException($"block {block} is not cached, so it cannot be pinned", new Dictionary<string, object?> { ["block"] = block.Hex });
            _table.Pin(slot);
        }
    }

    /// <summary>Drops one pin; a block with none throws <see cref="RefCountUnderflowException"/>.</summary>
    public void Unpin(BlockHash block)
    {
        lock (_lock)
        {
            int slot = _table.Find(block);
            if (slot < 0 || _table.PinsAt(slot) == 0)
                throw new RefCountUnderflowException($"block {block} has no pin to drop", new Dictionary<string, object?> { ["block"] = block.Hex, ["pins"] = 0 });
            _table.Unpin(slot);
        }
    }

    /// <summary>Pins held on <paramref name="block"/> (0 when none).</summary>
    public int PinCount(BlockHash block)
    {
        lock (_lock)
        {
            int slot = _table.Find(block);
            return slot < 0 ? 0 : _table.PinsAt(slot);
        }
    }

    /// <summary>
    /// The next <paramref name="count"/> victims in the policy's order, skipping pinned blocks, without
    /// removing them. Fewer tracked blocks than asked: <see cref="NoVictimException"/>. Enough tracked but
    /// too many pinned: <see cref="AllPinnedException"/>. A policy that names an untracked block:
    /// <see cref="EvictionFailedException"/>.
    /// </summary>
    public IReadOnlyList<BlockHash> SelectVictims(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_lock) return _table.SelectVictims(count).ConvertAll(_table.HashAt);
    }

    /// <summary>
    /// Evicts <paramref name="count"/> victims in the policy's order and stops tracking them, counting evictions. The
    /// node's policies pick and evict one at a time, as the node does (under <see cref="ChainLfuPolicy"/> evicting a
    /// chain's tail can make its parent the next victim, which <see cref="SelectVictims"/> does not foresee). Errors as
    /// <see cref="SelectVictims"/>, before anything is evicted.
    /// </summary>
    public IReadOnlyList<BlockHash> Evict(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_lock)
        {
            var evicted = new List<KeyValuePair<BlockHash, byte>>(count);
            _table.EvictVictims(count, evicted);
            return evicted.ConvertAll(e => e.Key);
        }
    }
}
