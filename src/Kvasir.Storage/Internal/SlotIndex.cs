using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Kvasir.Storage.Internal;

/// <summary>
/// The store's key → slot index: a chained hash table of live slots, probed with a key's bytes (hashed as
/// <see cref="ByteKeyComparer"/>, seeded per process). Laid out as <see cref="HashSet{T}"/> is — a bucket array of entry
/// numbers, entries of (hash, next, slot) reused through a free list, growth by doubling that re-buckets from the stored
/// hashes without reading a slot — so it costs what the set did (16 B an entry and 4 B a bucket, one of each per place);
/// it is the store's own so that a batch can start its lookups' memory loads ahead of them (<see cref="Prefetch"/>).
/// </summary>
/// <remarks>
/// A lookup reads three lines that depend on one another (bucket → entry → slot); at millions of keys each is a cache
/// miss, so a batch that looks its keys up one by one waits for about three misses a key in a row. <see cref="Prefetch"/>
/// issues one level for the whole batch before the next, so the misses of a level overlap.
/// Not thread-safe: every member but <see cref="Prefetch"/> runs under the store's lock.
/// </remarks>
internal sealed unsafe class SlotIndex
{
    /// <summary>Places of a new index (a power of two, as every later size).</summary>
    public const int InitialCapacity = 16;

    /// <summary>Longest chain <see cref="Prefetch"/> follows for one key (chains average under one entry; a longer one is only not prefetched).</summary>
    private const int PrefetchChainSteps = 4;

    /// <summary>
    /// Bytes of a slot <see cref="Prefetch"/> pulls in from its method-table pointer: every line of a slot with an inline key
    /// of up to 32 bytes (a heap slot with a 32-byte key is 136 bytes from there); a longer key's last lines are read as before.
    /// </summary>
    private const int PrefetchSlotBytes = 152;

    // Entry number + 1 heading each bucket's chain (0: empty); as long as _entries.
    private int[] _buckets = new int[InitialCapacity];
    private Entry[] _entries = new Entry[InitialCapacity];
    private int _used;       // entries handed out so far; the rest of _entries was never used
    private int _free = -1;  // first entry of the free list (removed entries), chained by Next; -1: none
    private int _count;

    /// <summary>Slots in the index.</summary>
    public int Count => _count;

    /// <summary>Places (entries) allocated: the index's size, <see cref="Count"/> of them in use.</summary>
    public int Capacity => _entries.Length;

    /// <summary>The hash a key is placed by.</summary>
    public static int Hash(ReadOnlySpan<byte> key) => ByteKeyComparer.Instance.GetHashCode(key);

    /// <summary>The slot holding <paramref name="key"/>, if any.</summary>
    public bool TryGetValue(ReadOnlySpan<byte> key, [NotNullWhen(true)] out Slot? slot)
    {
        int hash = Hash(key);
        Entry[] entries = _entries;
        for (int i = _buckets[hash & (_buckets.Length - 1)] - 1; i >= 0; i = entries[i].Next)
        {
            ref Entry entry = ref entries[i];
            if (entry.Hash == hash && key.SequenceEqual(entry.Slot!.Key))
            {
                slot = entry.Slot;
                return true;
            }
        }

        slot = null;
        return false;
    }

    /// <summary>Whether a slot holds <paramref name="key"/>.</summary>
    public bool Contains(ReadOnlySpan<byte> key) => TryGetValue(key, out _);

    /// <summary>Adds <paramref name="slot"/>; the caller has checked that no slot with its key is in the index.</summary>
    public void Add(Slot slot)
    {
        int hash = Hash(slot.Key);
        int i;
        if (_free >= 0)
        {
            i = _free;
            _free = _entries[i].Next;
        }
        else
        {
            if (_used == _entries.Length) Grow();
            i = _used++;
        }

        ref int bucket = ref _buckets[hash & (_buckets.Length - 1)];
        _entries[i] = new Entry { Hash = hash, Next = bucket - 1, Slot = slot };
        bucket = i + 1;
        _count++;
    }

    /// <summary>Takes <paramref name="slot"/> (this very object) out of the index; false when it is not in it.</summary>
    public bool Remove(Slot slot)
    {
        int hash = Hash(slot.Key);
        ref int bucket = ref _buckets[hash & (_buckets.Length - 1)];
        int previous = -1;
        for (int i = bucket - 1; i >= 0; previous = i, i = _entries[i].Next)
        {
            ref Entry entry = ref _entries[i];
            if (!ReferenceEquals(entry.Slot, slot)) continue;
            if (previous < 0) bucket = entry.Next + 1;
            else _entries[previous].Next = entry.Next;
            entry = new Entry { Next = _free };   // drops the reference: a removed slot is not kept alive by the index
            _free = i;
            _count--;
            return true;
        }

        return false;
    }

    /// <summary>
    /// Starts the loads that looking up keys with these hashes will make: every key's bucket, then every key's first
    /// entry, then the slot of the first entry whose hash matches. Each level is issued for the whole batch before the
    /// next, so its cache misses overlap instead of coming one after another; a lookup that follows soon finds its lines
    /// near the core. Changes nothing, and its effect is only on timing (a line it did not fetch is read as before).
    /// </summary>
    /// <remarks>
    /// May run without the store's lock: it only reads, reads each array once and bounds every index into it, follows a
    /// chain at most <see cref="PrefetchChainSteps"/> entries, and never dereferences a slot (it prefetches the object's
    /// address, read as a number). A concurrent change can only make it prefetch a line that is no longer wanted, and
    /// a prefetch of any address is a hint that cannot fault. Does nothing where the CPU has no prefetch instruction
    /// that .NET exposes (not x86).
    /// </remarks>
    public void Prefetch(ReadOnlySpan<int> hashes)
    {
        if (!Sse.IsSupported || hashes.IsEmpty) return;
        int[] buckets = _buckets;
        Entry[] entries = _entries;
        int mask = buckets.Length - 1;
        fixed (int* bucketBase = buckets)
        {
            foreach (int hash in hashes) Sse.Prefetch0(bucketBase + (hash & mask));

            foreach (int hash in hashes)
            {
                int i = bucketBase[hash & mask] - 1;
                if ((uint)i < (uint)entries.Length) Sse.Prefetch0(Unsafe.AsPointer(ref entries[i]));   // unpinned: a moved array only wastes the hint
            }

            foreach (int hash in hashes)
            {
                int i = bucketBase[hash & mask] - 1;
                for (int step = 0; step < PrefetchChainSteps && (uint)i < (uint)entries.Length; step++)
                {
                    ref Entry entry = ref entries[i];
                    if (entry.Hash == hash)
                    {
                        byte* slot = (byte*)Unsafe.As<Slot?, nint>(ref entry.Slot);
                        if (slot is null) break;
                        for (byte* line = (byte*)((nint)slot & ~63); line < slot + PrefetchSlotBytes; line += 64) Sse.Prefetch0(line);
                        break;
                    }

                    i = entry.Next;
                }
            }
        }
    }

    private void Grow()
    {
        int size = checked(_entries.Length * 2);
        var entries = new Entry[size];
        Array.Copy(_entries, entries, _used);
        var buckets = new int[size];
        // Only a full index grows (no free entries), so every entry up to _used is in a chain: re-bucket each by its stored hash.
        for (int i = 0; i < _used; i++)
        {
            ref Entry entry = ref entries[i];
            ref int bucket = ref buckets[entry.Hash & (size - 1)];
            entry.Next = bucket - 1;
            bucket = i + 1;
        }

        _entries = entries;
        _buckets = buckets;
    }

    private struct Entry
    {
        public int Hash;
        public int Next;     // next entry of the chain (or of the free list); -1: none
        public Slot? Slot;   // null in a free entry
    }
}
