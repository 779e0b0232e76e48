using System.Diagnostics.CodeAnalysis;

namespace Kvasir.Storage.Internal;

/// <summary>
/// The index's hash table: live slots by their keys' bytes, open-addressed with linear probing in two arrays, slot
/// references and their keys' hash codes, whose length is a power of two, at most three quarters full. 12 bytes a place,
/// 1.33-2.67 places a key (16-32 bytes a key), where a <see cref="HashSet{T}"/> of slots costs 20 bytes a place (entry
/// and bucket) at 1-2 places a key. A probe compares the stored hash first and loads a slot (its key held inside it,
/// <see cref="SlotKeys"/>) only on a match. Hashes are <see cref="ByteKeyComparer"/>'s, seeded per process, so a client
/// cannot precompute keys that collide. Removal shifts the following entries of the run back (no tombstones), so a table
/// that churns stays as fast as a fresh one; growing re-places the stored hashes and never reads a slot.
/// Not thread-safe: used under the store's lock.
/// </summary>
internal sealed class SlotTable
{
    private const int MinCapacity = 16;

    private Slot?[] _places = new Slot?[MinCapacity];
    private int[] _hashes = new int[MinCapacity];

    public int Count { get; private set; }

    /// <summary>Places in the table (for tests of how it grows).</summary>
    internal int Capacity => _places.Length;

    public bool Contains(ReadOnlySpan<byte> key) => TryGetValue(key, out _);

    public bool TryGetValue(ReadOnlySpan<byte> key, [NotNullWhen(true)] out Slot? slot)
    {
        Slot?[] places = _places;
        int[] hashes = _hashes;
        int mask = places.Length - 1;
        int hash = Hash(key);
        for (int i = hash & mask; places[i] is Slot candidate; i = (i + 1) & mask)
        {
            if (hashes[i] == hash && candidate.Key.SequenceEqual(key))
            {
                slot = candidate;
                return true;
            }
        }

        slot = null;
        return false;
    }

    /// <summary>Adds a slot whose key the table does not hold (the caller has looked it up).</summary>
    public void Add(Slot slot)
    {
        if (Count + 1 > (_places.Length >> 2) * 3)
        {
            Slot?[] oldPlaces = _places;
            int[] oldHashes = _hashes;
            _places = new Slot?[oldPlaces.Length * 2];
            _hashes = new int[oldPlaces.Length * 2];
            for (int i = 0; i < oldPlaces.Length; i++)
            {
                if (oldPlaces[i] is Slot moved) Place(moved, oldHashes[i]);
            }
        }

        Place(slot, Hash(slot.Key));
        Count++;
    }

    /// <summary>Removes this very slot (by reference); false when the table does not hold it.</summary>
    public bool Remove(Slot slot)
    {
        Slot?[] places = _places;
        int[] hashes = _hashes;
        int mask = places.Length - 1;
        int hole = Hash(slot.Key) & mask;
        while (!ReferenceEquals(places[hole], slot))
        {
            if (places[hole] is null) return false;
            hole = (hole + 1) & mask;
        }

        // Backward shift: an entry further along the run moves into the hole when the hole lies between its home place
        // and where it sits (cyclically), so every entry stays reachable from its home without tombstones.
        for (int i = (hole + 1) & mask; places[i] is Slot next; i = (i + 1) & mask)
        {
            int home = hashes[i] & mask;
            if (((i - home) & mask) >= ((i - hole) & mask))
            {
                places[hole] = next;
                hashes[hole] = hashes[i];
                hole = i;
            }
        }

        places[hole] = null;
        hashes[hole] = 0;
        Count--;
        return true;
    }

    private static int Hash(ReadOnlySpan<byte> key) => ByteKeyComparer.Instance.GetHashCode(key);

    private void Place(Slot slot, int hash)
    {
        int mask = _places.Length - 1;
        int i = hash & mask;
        while (_places[i] is not null)
        {
            i = (i + 1) & mask;
        }

        _places[i] = slot;
        _hashes[i] = hash;
    }
}
