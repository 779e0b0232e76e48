namespace Kvasir.Shared;

/// <summary>
/// S3-FIFO's ghost queue: a bounded FIFO of the 64-bit keys of values recently dropped from the small queue, with a
/// count per key for membership (8 bytes a key plus the map's entry). A key stays remembered after it is found again,
/// until the queue overflows past it. The node keys it by the <see cref="Hash"/> of the value's key (a collision only
/// admits a new key to the main queue early, never loses data); the engine side by the first 8 bytes of a block hash.
/// One source compiled into both Kvasir.Storage and Kvasir.Prefix (they may not reference each other, DESIGN.md), so
/// the engine side's s3fifo remembers exactly as the node's. Not thread-safe.
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
            if (--_present[old] == 0)
            {
                _present.Remove(old);
            }
        }
    }

    /// <summary>Whether the key is remembered; a remembered key is forgotten by the next <see cref="Add"/> that overflows, not here.</summary>
    public bool Contains(ulong key) => _present.ContainsKey(key);

    /// <summary>The 64-bit FNV-1a hash of a key (also the key of <see cref="FrequencySketch"/> in the node).</summary>
    public static ulong Hash(ReadOnlySpan<byte> key)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in key)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        return hash;
    }
}
