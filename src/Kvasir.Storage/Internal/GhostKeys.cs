namespace Kvasir.Storage.Internal;

/// <summary>
/// A bounded FIFO of recently evicted keys, kept as 64-bit FNV-1a hashes (8 bytes a key plus the set's entry): a
/// collision only admits a new key to a policy's main queue early, never loses data. Not thread-safe.
/// </summary>
internal sealed class GhostKeys
{
    private readonly Queue<ulong> _order = new();
    private readonly Dictionary<ulong, int> _present = [];

    public int Count => _order.Count;

    /// <summary>Remembers the key, forgetting the oldest while more than <paramref name="limit"/> are held.</summary>
    public void Add(ReadOnlySpan<byte> key, int limit)
    {
        ulong hash = Hash(key);
        _order.Enqueue(hash);
        _present[hash] = _present.GetValueOrDefault(hash) + 1;
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
    public bool Take(ReadOnlySpan<byte> key) => _present.ContainsKey(Hash(key));

    /// <summary>The 64-bit FNV-1a hash of a key (also the key of <see cref="Kvasir.Shared.FrequencySketch"/>).</summary>
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
