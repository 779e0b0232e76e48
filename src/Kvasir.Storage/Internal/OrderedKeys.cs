namespace Kvasir.Storage.Internal;

/// <summary>
/// The index's slots in byte order of their keys, for scans and the expiry sweep: sorted chunks of at most
/// <see cref="ChunkCapacity"/> slot references, found by binary search over each chunk's last key. About 8-16 bytes a
/// key (one reference in a chunk that is half to fully used; keys added in order fill their chunks) where a red-black tree node costs 48.
/// Add and remove are O(log n + <see cref="ChunkCapacity"/>) plus a move of the chunk list when a chunk splits or
/// empties. Not thread-safe: used under the store's lock, and not changed while enumerated.
/// </summary>
internal sealed class OrderedKeys
{
    /// <summary>Most keys in one chunk; a full chunk splits in two halves.</summary>
    internal const int ChunkCapacity = 512;

    private readonly List<Chunk> _chunks = [];

    public int Count { get; private set; }

    /// <summary>Chunks in use (for tests of how full they are kept).</summary>
    internal int ChunkCount => _chunks.Count;

    /// <summary>The slot with the largest key; null when empty.</summary>
    public Slot? Max => _chunks.Count == 0 ? null : _chunks[^1].Last;

    /// <summary>Adds a slot whose key is not held yet (the index guarantees it); a key already held is refused with an exception.</summary>
    public void Add(Slot slot)
    {
        ReadOnlySpan<byte> key = slot.Key;
        if (_chunks.Count == 0)
        {
            var first = new Chunk();
            first.Insert(0, slot);
            _chunks.Add(first);
            Count++;
            return;
        }

        // The first chunk whose last key is not below the key; past the end, the key goes last into the last chunk.
        int c = Math.Min(ChunkFor(key), _chunks.Count - 1);
        Chunk chunk = _chunks[c];
        int at = chunk.Search(key);
        if (at >= 0)
        {
            throw new InvalidOperationException("The key is already in the ordered set.");
        }

        at = ~at;
        if (chunk.Count == ChunkCapacity && (at == ChunkCapacity || (at == 0 && c == 0)))
        {
            // Past the largest or below the smallest key of all (keys added in ascending or descending order): a new
            // chunk at that end leaves the full one full, where a split would leave two half-empty chunks behind for good.
            var fresh = new Chunk();
            fresh.Insert(0, slot);
            _chunks.Insert(at == 0 ? c : c + 1, fresh);
            Count++;
            return;
        }

        if (chunk.Count == ChunkCapacity)
        {
            Chunk upper = chunk.SplitUpperHalf();
            _chunks.Insert(c + 1, upper);
            if (at > chunk.Count)
            {
                at -= chunk.Count;
                chunk = upper;
            }
        }

        chunk.Insert(at, slot);
        Count++;
    }

    /// <summary>Removes the slot's key; false when it is not held.</summary>
    public bool Remove(Slot slot)
    {
        ReadOnlySpan<byte> key = slot.Key;
        int c = ChunkFor(key);
        if (c == _chunks.Count)
        {
            return false;
        }

        Chunk chunk = _chunks[c];
        int at = chunk.Search(key);
        if (at < 0)
        {
            return false;
        }

        chunk.RemoveAt(at);
        if (chunk.Count == 0)
        {
            _chunks.RemoveAt(c);
        }

        Count--;
        return true;
    }

    /// <summary>The slots whose keys are from <paramref name="lower"/> (inclusive) to <paramref name="upper"/> (inclusive; null: to the end), in order.</summary>
    public IEnumerable<Slot> Between(byte[] lower, byte[]? upper)
    {
        for (int c = ChunkFor(lower); c < _chunks.Count; c++)
        {
            Chunk chunk = _chunks[c];
            int at = chunk.Search(lower);
            for (int i = at < 0 ? ~at : at; i < chunk.Count; i++)
            {
                Slot slot = chunk[i];
                if (upper is not null && slot.Key.SequenceCompareTo(upper) > 0)
                {
                    yield break;
                }

                yield return slot;
            }

            lower = [];
        }
    }

    /// <summary>The index of the first chunk whose last key is not below <paramref name="key"/>; the chunk count when none.</summary>
    private int ChunkFor(ReadOnlySpan<byte> key)
    {
        int lo = 0;
        int hi = _chunks.Count - 1;
        while (lo <= hi)
        {
            int mid = lo + ((hi - lo) >> 1);
            if (_chunks[mid].Last.Key.SequenceCompareTo(key) < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return lo;
    }

    /// <summary>A run of slots sorted by key in a fixed array of <see cref="ChunkCapacity"/> references.</summary>
    private sealed class Chunk
    {
        private readonly Slot[] _slots = new Slot[ChunkCapacity];

        public int Count { get; private set; }

        public Slot Last => _slots[Count - 1];

        public Slot this[int i] => _slots[i];

        /// <summary>The key's index, or the bitwise complement of where it would go.</summary>
        public int Search(ReadOnlySpan<byte> key)
        {
            int lo = 0;
            int hi = Count - 1;
            while (lo <= hi)
            {
                int mid = lo + ((hi - lo) >> 1);
                int order = _slots[mid].Key.SequenceCompareTo(key);
                if (order == 0)
                {
                    return mid;
                }

                if (order < 0)
                {
                    lo = mid + 1;
                }
                else
                {
                    hi = mid - 1;
                }
            }

            return ~lo;
        }

        public void Insert(int at, Slot slot)
        {
            Array.Copy(_slots, at, _slots, at + 1, Count - at);
            _slots[at] = slot;
            Count++;
        }

        public void RemoveAt(int at)
        {
            Count--;
            Array.Copy(_slots, at + 1, _slots, at, Count - at);
            _slots[Count] = null!;
        }

        /// <summary>Moves the upper half of the keys into a new chunk and returns it.</summary>
        public Chunk SplitUpperHalf()
        {
            var upper = new Chunk();
            int keep = Count / 2;
            int move = Count - keep;
            Array.Copy(_slots, keep, upper._slots, 0, move);
            Array.Clear(_slots, keep, move);
            upper.Count = move;
            Count = keep;
            return upper;
        }
    }
}
