using System.Diagnostics.CodeAnalysis;

namespace Kvasir.Storage.Internal;

/// <summary>
/// The index's hash table: live slots by their keys' bytes, open-addressed with linear probing in one array of slot
/// references whose length is a power of two, at most three quarters full. 8 bytes a place, 1.33-2.67 places a key
/// (11-21 bytes a key), where a <see cref="HashSet{T}"/> of slots costs 20 bytes a place (entry and bucket) at 1-2
/// places a key. A probe compares the slot's key itself (held inside the slot, <see cref="SlotKeys"/>), so a lookup
/// loads the array and about 1.5 slots. Hashes are <see cref="ByteKeyComparer"/>'s, seeded per process, so a client
/// cannot precompute keys that collide. Removal shifts the following entries of the run back (no tombstones), so a
/// table that churns stays as fast as a fresh one.
/// </summary>
/// <remarks>
/// Hazard: growing (doubling) rehashes every key, reading every slot: O(n) under the store's lock once per doubling
/// (about 0.1 s at a million keys on a loaded machine), where a hash set copies its stored hash codes instead. Not
/// thread-safe: used under the store's lock.
/// </remarks>
internal sealed class SlotTable
{
    private const int MinCapacity = 16;

    private Slot?[] _places = new Slot?[MinCapacity];

    public int Count { get; private set; }

    /// <summary>Places in the table (for tests of how it grows).</summary>
    internal int Capacity => _places.Length;

    public bool Contains(ReadOnlySpan<byte> key) => TryGetValue(key, out _);

    public bool TryGetValue(ReadOnlySpan<byte> key, [NotNullWhen(true)] out Slot? slot)
    {
        Slot?[] places = _places;
        int mask = places.Length - 1;
        for (int i = Home(key, mask); places[i] is Slot candidate; i = (i + 1) & mask)
        {
            if (candidate.Key.SequenceEqual(key))
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
            Slot?[] old = _places;
            _places = new Slot?[old.Length * 2];
            foreach (Slot? moved in old)
            {
                if (moved is not null) Place(moved);
            }
        }

        Place(slot);
        Count++;
    }

    /// <summary>Removes this very slot (by reference); false when the table does not hold it.</summary>
    public bool Remove(Slot slot)
    {
        Slot?[] places = _places;
        int mask = places.Length - 1;
        int hole = Home(slot.Key, mask);
        while (!ReferenceEquals(places[hole], slot))
        {
            if (places[hole] is null) return false;
            hole = (hole + 1) & mask;
        }

        // Backward shift: an entry further along the run moves into the hole when the hole lies between its home place
        // and where it sits (cyclically), so every entry stays reachable from its home without tombstones.
        for (int i = (hole + 1) & mask; places[i] is Slot next; i = (i + 1) & mask)
        {
            int home = Home(next.Key, mask);
            if (((i - home) & mask) >= ((i - hole) & mask))
            {
                places[hole] = next;
                hole = i;
            }
        }

        places[hole] = null;
        Count--;
        return true;
    }

    private static int Home(ReadOnlySpan<byte> key, int mask) => ByteKeyComparer.Instance.GetHashCode(key) & mask;

    private void Place(Slot slot)
    {
        int mask = _places.Length - 1;
        int i = Home(slot.Key, mask);
        while (_places[i] is not null)
        {
            i = (i + 1) & mask;
        }

        _places[i] = slot;
    }
}
