namespace Kvasir.Prefix;

/// <summary>
/// Tracks cached blocks for one cache, holds their pins, and picks victims through an
/// <see cref="IEvictionPolicy"/> (LRU by default, FIFO, or the caller's own). It also measures what
/// eviction costs: <see cref="Evictions"/>, and the <see cref="RePrefillRate"/> — the share of inserts
/// that bring back a block evicted earlier, i.e. prefill work done twice. Thread-safe (one lock).
/// </summary>
public sealed class EvictionManager
{
    private readonly object _lock = new();
    private readonly IEvictionPolicy _policy;
    private readonly HashSet<BlockHash> _tracked = [];
    private readonly Dictionary<BlockHash, int> _pins = [];
    private readonly HashSet<BlockHash> _evicted = [];
    private readonly Queue<BlockHash> _evictedOrder = new();
    private long _evictions, _inserts, _reinserts, _accesses;

    /// <summary>
    /// A manager with <paramref name="policy"/> (default <see cref="LruPolicy"/>). It remembers the ids of
    /// the last <paramref name="evictedMemory"/> evicted blocks (default 100,000; about 100 bytes each) to
    /// count re-prefills; 0 turns that measurement off, a huge value costs memory.
    /// </summary>
    public EvictionManager(IEvictionPolicy? policy = null, int evictedMemory = 100_000)
    {
        if (evictedMemory < 0)
            throw new ConfigInvalidException($"evicted memory must be 0 or more, not {evictedMemory}", new Dictionary<string, object?> { ["evicted_memory"] = evictedMemory });
        _policy = policy ?? new LruPolicy();
        EvictedMemory = evictedMemory;
    }

    /// <summary>A policy by name: "lru" or "fifo" (case-insensitive); another name throws <see cref="ConfigInvalidException"/>.</summary>
    public static IEvictionPolicy CreatePolicy(string name) => name.ToLowerInvariant() switch
    {
        "lru" => new LruPolicy(),
        "fifo" => new FifoPolicy(),
        _ => throw new ConfigInvalidException($"unknown eviction policy '{name}' (known: lru, fifo)", new Dictionary<string, object?> { ["policy"] = name }),
    };

    /// <summary>How many evicted ids are remembered for <see cref="RePrefillRate"/>.</summary>
    public int EvictedMemory { get; }

    /// <summary>The policy's name.</summary>
    public string PolicyName => _policy.Name;

    /// <summary>Blocks tracked now.</summary>
    public int Count { get { lock (_lock) return _tracked.Count; } }

    /// <summary>Tracked blocks with at least one pin.</summary>
    public int PinnedCount { get { lock (_lock) return _pins.Count; } }

    /// <summary>Blocks evicted so far (through <see cref="Evict"/>).</summary>
    public long Evictions { get { lock (_lock) return _evictions; } }

    /// <summary>Accesses recorded so far.</summary>
    public long Accesses { get { lock (_lock) return _accesses; } }

    /// <summary>Inserts of a block that had been evicted (among the last <see cref="EvictedMemory"/>) over all inserts; 0 before any insert.</summary>
    public double RePrefillRate { get { lock (_lock) return _inserts == 0 ? 0 : (double)_reinserts / _inserts; } }

    /// <summary>Starts tracking <paramref name="block"/>; returns false (and counts an access) when it already is.</summary>
    public bool Track(BlockHash block)
    {
        lock (_lock)
        {
            if (!_tracked.Add(block))
            {
                _accesses++;
                _policy.OnAccess(block);
                return false;
            }
            _inserts++;
            if (_evicted.Remove(block)) _reinserts++;
            _policy.OnInsert(block);
            return true;
        }
    }

    /// <summary>Records a hit on a tracked block (ignored for an untracked one).</summary>
    public void RecordAccess(BlockHash block)
    {
        lock (_lock)
        {
            if (!_tracked.Contains(block)) return;
            _accesses++;
            _policy.OnAccess(block);
        }
    }

    /// <summary>Whether <paramref name="block"/> is tracked.</summary>
    public bool Contains(BlockHash block) { lock (_lock) return _tracked.Contains(block); }

    /// <summary>Stops tracking a block that left for another reason than eviction (invalidated). Pinned: <see cref="HandlePinnedException"/>.</summary>
    public bool Untrack(BlockHash block)
    {
        lock (_lock)
        {
            if (_pins.ContainsKey(block))
                throw new HandlePinnedException($"block {block} is pinned", new Dictionary<string, object?> { ["block"] = block.Hex, ["pins"] = _pins[block] });
            if (!_tracked.Remove(block)) return false;
            _policy.OnRemove(block);
            return true;
        }
    }

    /// <summary>Adds a pin to a tracked block (pins nest); an untracked one throws <see cref="CacheMissException"/>.</summary>
    public void Pin(BlockHash block)
    {
        lock (_lock)
        {
            if (!_tracked.Contains(block))
                throw new CacheMissException($"block {block} is not cached, so it cannot be pinned", new Dictionary<string, object?> { ["block"] = block.Hex });
            _pins[block] = _pins.GetValueOrDefault(block) + 1;
        }
    }

    /// <summary>Drops one pin; a block with none throws <see cref="RefCountUnderflowException"/>.</summary>
    public void Unpin(BlockHash block)
    {
        lock (_lock)
        {
            if (!_pins.TryGetValue(block, out int pins))
                throw new RefCountUnderflowException($"block {block} has no pin to drop", new Dictionary<string, object?> { ["block"] = block.Hex, ["pins"] = 0 });
            if (pins == 1) _pins.Remove(block);
            else _pins[block] = pins - 1;
        }
    }

    /// <summary>Pins held on <paramref name="block"/> (0 when none).</summary>
    public int PinCount(BlockHash block) { lock (_lock) return _pins.GetValueOrDefault(block); }

    /// <summary>
    /// The next <paramref name="count"/> victims in the policy's order, skipping pinned blocks, without
    /// removing them. Fewer tracked blocks than asked: <see cref="NoVictimException"/>. Enough tracked but
    /// too many pinned: <see cref="AllPinnedException"/>. A policy that names an untracked block:
    /// <see cref="EvictionFailedException"/>.
    /// </summary>
    public IReadOnlyList<BlockHash> SelectVictims(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_lock) return SelectLocked(count);
    }

    /// <summary>Selects <paramref name="count"/> victims as <see cref="SelectVictims"/> does and stops tracking them, counting evictions.</summary>
    public IReadOnlyList<BlockHash> Evict(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_lock)
        {
            var victims = SelectLocked(count);
            foreach (var victim in victims)
            {
                _tracked.Remove(victim);
                _policy.OnRemove(victim);
                _evictions++;
                Remember(victim);
            }
            return victims;
        }
    }

    private List<BlockHash> SelectLocked(int count)
    {
        var victims = new List<BlockHash>(count);
        if (count == 0) return victims;
        if (_tracked.Count < count)
            throw new NoVictimException($"asked to evict {count} blocks but only {_tracked.Count} are cached",
                new Dictionary<string, object?> { ["requested"] = count, ["tracked"] = _tracked.Count });
        foreach (var candidate in _policy.Candidates())
        {
            if (!_tracked.Contains(candidate))
                throw new EvictionFailedException($"policy {_policy.Name} named block {candidate}, which is not cached",
                    new Dictionary<string, object?> { ["policy"] = _policy.Name, ["block"] = candidate.Hex });
            if (_pins.ContainsKey(candidate)) continue;
            victims.Add(candidate);
            if (victims.Count == count) return victims;
        }
        throw new AllPinnedException($"asked to evict {count} blocks but only {victims.Count} of {_tracked.Count} cached blocks are unpinned",
            new Dictionary<string, object?> { ["requested"] = count, ["unpinned"] = victims.Count, ["pinned"] = _pins.Count });
    }

    private void Remember(BlockHash victim)
    {
        if (EvictedMemory == 0) return;
        if (!_evicted.Add(victim)) return;
        _evictedOrder.Enqueue(victim);
        while (_evictedOrder.Count > EvictedMemory) _evicted.Remove(_evictedOrder.Dequeue());
    }
}
