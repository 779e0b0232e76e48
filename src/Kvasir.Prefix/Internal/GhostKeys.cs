namespace Kvasir.Prefix.Internal;

/// <summary>
/// S3-FIFO's ghost queue: a bounded FIFO of the 64-bit keys of blocks recently evicted from the small queue, with a
/// count per key for membership (8 bytes a key plus the map's entry). As the node's: a key stays remembered after it
/// is found again, until the queue overflows past it. Not thread-safe.
/// </summary>
internal sealed class GhostKeys
{
    private readonly Queue<ulong> _order = new();
    private readonly Dictionary<ulong, int> _present = [];

    public int Count => _order.Count;

    /// <summary>Remembers the key, forgetting the oldest while more than <paramref name="limit"/> are held.</summary>
    public void Add(ulong key, int limit)
    {
        _order.Enqueue(key);
        _present[key] = _present.GetValueOrDefault(key) + 1;
        while (_order.Count > limit)
        {
            ulong old = _order.Dequeue();
            if (--_present[old] == 0) _present.Remove(old);
        }
    }

    public bool Contains(ulong key) => _present.ContainsKey(key);
}
