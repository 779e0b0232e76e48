namespace Kvasir.Storage.Internal;

/// <summary>
/// Chain blocks waiting for a parent that was not stored yet when they were published: a PUT flagged
/// <c>PARENT_FOLLOWS</c> (a striped chain's run, whose parent is the last key of a run still in flight on another
/// connection). When a key is published, the blocks waiting for it are linked to it, each only if it still holds the
/// version it waited with (an overwrite or a removal meanwhile set its own link) and has no live parent. A wait ends
/// unlinked after the window, and past <c>maxWaits</c> the oldest is dropped: a block that stays a root
/// only weakens the eviction order for its chain, it never loses a byte. Used under the store's lock.
/// </summary>
internal sealed class LateParents(TimeSpan window, int maxWaits)
{
    private readonly Dictionary<byte[], List<Wait>> _byParent = new(ByteKeyComparer.Instance);

    // Waits in the order they began (all windows are equal, so also in deadline order). A wait that ended by a link stays
    // here until it reaches the head, or until the queue holds twice as many as still wait (then it is compacted), so a
    // wait whose parent never comes cannot keep a stream of linked ones behind it for a whole window.
    private Queue<Wait> _order = new();
    private readonly long _windowMs = (long)window.TotalMilliseconds;

    /// <summary>Blocks waiting now.</summary>
    public int Count { get; private set; }

    /// <summary>A block and the version it waits with, under its parent's key, until <see cref="Deadline"/>.</summary>
    private sealed class Wait(byte[] parent, Slot child, ValueVersion version, long deadline)
    {
        public byte[] Parent { get; } = parent;
        public Slot Child { get; } = child;
        public ValueVersion Version { get; } = version;
        public long Deadline { get; } = deadline;
        public bool Done { get; set; }
    }

    /// <summary>Makes <paramref name="child"/> (holding <paramref name="version"/>) wait for <paramref name="parent"/>.</summary>
    public void Add(ReadOnlySpan<byte> parent, Slot child, ValueVersion version, long now)
    {
        Expire(now);
        while (Count >= maxWaits && _order.TryDequeue(out var oldest)) Drop(oldest);
        var wait = new Wait(parent.ToArray(), child, version, now + _windowMs);
        if (!_byParent.TryGetValue(wait.Parent, out var waits)) _byParent[wait.Parent] = waits = [];
        waits.Add(wait);
        _order.Enqueue(wait);
        Count++;
        if (_order.Count > 2 * Math.Max(Count, 1024)) _order = new Queue<Wait>(_order.Where(w => !w.Done));
    }

    /// <summary>Entries in the queue, ended ones included (tests: it stays within twice the waits, or 2,048).</summary>
    internal int Queued => _order.Count;

    /// <summary>
    /// Links to <paramref name="parent"/> (just published under <paramref name="key"/>) the blocks waiting for it that
    /// may still take it; returns how many were linked.
    /// </summary>
    public int LinkWaiting(ReadOnlySpan<byte> key, Slot parent, IEvictionPolicy policy, long now)
    {
        if (Count == 0) return 0;
        Expire(now);
        if (!_byParent.GetAlternateLookup<ReadOnlySpan<byte>>().Remove(key, out _, out var waits)) return 0;
        int linked = 0;
        foreach (var wait in waits)
        {
            wait.Done = true;
            Count--;
            Slot child = wait.Child;
            if (child.IsLive && child.Current == wait.Version && child.Parent is not { IsLive: true })
            {
                ChainLinks.SetParent(child, parent, policy);
                if (child.Parent == parent) linked++;
            }
        }

        if (Count == 0) _order.Clear();   // every entry left has ended
        return linked;
    }

    /// <summary>Ends the waits whose window has passed (the queue is in deadline order: all windows are equal).</summary>
    private void Expire(long now)
    {
        while (_order.TryPeek(out var oldest) && (oldest.Done || oldest.Deadline <= now))
        {
            _order.Dequeue();
            Drop(oldest);
        }
    }

    private void Drop(Wait wait)
    {
        if (wait.Done) return;
        wait.Done = true;
        Count--;
        if (_byParent.TryGetValue(wait.Parent, out var waits))
        {
            waits.Remove(wait);
            if (waits.Count == 0) _byParent.Remove(wait.Parent);
        }
    }
}
