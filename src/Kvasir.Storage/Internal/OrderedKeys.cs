namespace Kvasir.Storage.Internal;

/// <summary>
/// The index's keys in byte order (<see cref="ByteOrderComparer"/>), for scans and the expiry sweep: sorted chunks of
/// at most <see cref="ChunkCapacity"/> key references, found by binary search over each chunk's last key. About
/// 8-16 bytes a key (one reference in a chunk that is half to fully used) where a red-black tree node costs 48.
/// Add and remove are O(log n + <see cref="ChunkCapacity"/>) plus a move of the chunk list when a chunk splits or
/// empties. Not thread-safe: used under the store's lock, and not changed while enumerated.
/// </summary>
internal sealed class OrderedKeys
{
    /// <summary>Most keys in one chunk; a full chunk splits in two halves.</summary>
    internal const int ChunkCapacity = 512;

    private static readonly ByteOrderComparer Order = ByteOrderComparer.Instance;

    private readonly List<Chunk> _chunks = [];

    public int Count { get; private set; }

    /// <summary>The largest key; null when empty.</summary>
    public byte[]? Max => _chunks.Count == 0 ? null : _chunks[^1].Last;

    /// <summary>Adds a key that is not held yet (the index guarantees it); a key already held is refused with an exception.</summary>
    public void Add(byte[] key)
    {
        if (_chunks.Count == 0)
        {
            var first = new Chunk();
            first.Insert(0, key);
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

        chunk.Insert(at, key);
        Count++;
    }

    /// <summary>Removes the key; false when it is not held.</summary>
    public bool Remove(byte[] key)
    {
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

    /// <summary>The keys from <paramref name="lower"/> (inclusive) to <paramref name="upper"/> (inclusive; null: to the end), in order.</summary>
    public IEnumerable<byte[]> Between(byte[] lower, byte[]? upper)
    {
        for (int c = ChunkFor(lower); c < _chunks.Count; c++)
        {
            Chunk chunk = _chunks[c];
            int at = chunk.Search(lower);
            for (int i = at < 0 ? ~at : at; i < chunk.Count; i++)
            {
                byte[] key = chunk[i];
                if (upper is not null && Order.Compare(key, upper) > 0)
                {
                    yield break;
                }

                yield return key;
            }

            lower = [];
        }
    }

    /// <summary>The index of the first chunk whose last key is not below <paramref name="key"/>; the chunk count when none.</summary>
    private int ChunkFor(byte[] key)
    {
        int lo = 0;
        int hi = _chunks.Count - 1;
        while (lo <= hi)
        {
            int mid = lo + ((hi - lo) >> 1);
            if (Order.Compare(_chunks[mid].Last, key) < 0)
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

    /// <summary>A sorted run of keys in a fixed array of <see cref="ChunkCapacity"/> references.</summary>
    private sealed class Chunk
    {
        private readonly byte[][] _keys = new byte[ChunkCapacity][];

        public int Count { get; private set; }

        public byte[] Last => _keys[Count - 1];

        public byte[] this[int i] => _keys[i];

        /// <summary>The key's index, or the bitwise complement of where it would go.</summary>
        public int Search(byte[] key) => Array.BinarySearch(_keys, 0, Count, key, Order);

        public void Insert(int at, byte[] key)
        {
            Array.Copy(_keys, at, _keys, at + 1, Count - at);
            _keys[at] = key;
            Count++;
        }

        public void RemoveAt(int at)
        {
            Count--;
            Array.Copy(_keys, at + 1, _keys, at, Count - at);
            _keys[Count] = null!;
        }

        /// <summary>Moves the upper half of the keys into a new chunk and returns it.</summary>
        public Chunk SplitUpperHalf()
        {
            var upper = new Chunk();
            int keep = Count / 2;
            int move = Count - keep;
            Array.Copy(_keys, keep, upper._keys, 0, move);
            Array.Clear(_keys, keep, move);
            upper.Count = move;
            Count = keep;
            return upper;
        }
    }
}
