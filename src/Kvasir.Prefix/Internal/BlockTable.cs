using System.Runtime.InteropServices;

namespace Kvasir.Prefix.Internal;

/// <summary>
/// Every cached block of one cache in one slot array, with no object per block: an entry holds the full hash, the
/// caller's value and its two links in the eviction order (slot indices): 48 bytes with a 4-byte value. Pins are rare
/// (blocks in use) and live beside the array, in a map from slot to count that is not consulted while nothing is
/// pinned. An open-addressed index (linear probing, at most half full, 8 bytes a bucket: a 32-bit tag from the hash's
/// first bytes, the slot, and two bits saying whether the block that followed it in a chain sits in the next or the
/// previous slot) maps a hash to its slot; the full 32 bytes are compared on the entry, so two hashes that share their tag (or their first
/// eight bytes) are both found. A hit therefore touches one bucket and one entry, plus the entries beside it when an
/// LRU hit moves it to the back of the order (a looked-up chain that is one run in the order moves as one piece:
/// <see cref="AccessRun"/>). Each entry also remembers the slot of the block that last followed it in
/// an inserted or looked-up chain (a hint, checked against the full hash): a chain inserted together sits in adjacent
/// slots, so a lookup of it touches the index once, for its first block, and then walks neighbouring entries (guessed
/// a fixed step apart, so their loads overlap: <see cref="MatchPrefix"/>).
/// <para>
/// Slots are stable while a block is cached: a removed block's slot goes on a free list and the next insert reuses
/// it. Growth doubles the slot array (indices and links unchanged, so the eviction order survives) and rebuilds the
/// index. The built-in policies (<see cref="LruPolicy"/>, <see cref="FifoPolicy"/>) keep their order in the
/// entries' links; the node's policies (<see cref="NodePolicy"/>) in a <see cref="SlotOrder"/> of arrays indexed by slot
/// beside the entries (called with the slot, never by hash); any other <see cref="IEvictionPolicy"/> is called by hash,
/// as its interface says.
/// </para>
/// Not thread-safe: the owner (<see cref="PrefixCache{TBlock}"/>, <see cref="EvictionManager"/>) serialises calls.
/// </summary>
internal sealed partial class BlockTable<TValue>
{
    private const int None = -1;
    private const int Free = -2;   // Prev of a slot on the free list
    private const uint Fibonacci = 0x9E3779B9U;

    // A bucket: tag << 32 | step bits | (slot + 1). Slot + 1 needs at most 30 bits (MaxSlots is 2^29), so bits 30 and 31
    // say where the block's successor in a chain was seen: the next slot (StepUp), the previous one (StepDown), or not
    // known (neither). A hint like the entry's Child, checked against the full hash before it counts.
    private const uint SlotBits = 0x3FFF_FFFF;
    private const ulong StepUp = 1UL << 30, StepDown = 1UL << 31, StepBits = StepUp | StepDown;

    /// <summary>The most blocks one table holds: 2^29 (its index of twice as many 8-byte buckets is then 8 GiB).</summary>
    public const int MaxSlots = 1 << 29;

    private struct Entry
    {
        public BlockHash Hash;
        public TValue Value;
        public int Prev, Next;   // eviction order while cached; once removed Prev is Free and Next links the free list
        public int Child;        // the slot of the block that last followed this one in a chain, or -1: a hint only
    }

    private readonly IEvictionPolicy _policy;
    private readonly IEvictionPolicy? _external;   // null: the order lives in the entries' links or in _order
    private readonly SlotOrder? _order;            // a node policy's order, in arrays beside the entries
    private readonly Func<int, bool> _canEvict;
    private readonly bool _moveOnAccess;
    private readonly int _maxSlots;
    private readonly RecentEvictions _recent;
    private readonly Dictionary<int, int> _pins = [];   // slot -> pins, only for pinned blocks
    private Entry[] _entries;
    private ulong[] _buckets;   // tag << 32 | (slot + 1); 0 marks an empty bucket
    private int _shift, _used, _free = None, _head = None, _tail = None;
    private int _movingFirst = None, _movingLast = None;   // a run whose move to the back of the order is pending (AccessRun), or -1

    /// <param name="policy">the eviction order</param>
    /// <param name="evictedMemory">evicted hashes remembered to count re-prefills (0: none)</param>
    /// <param name="maxSlots">the most blocks ever held at once (growth stops there); int.MaxValue when unbounded</param>
    public BlockTable(IEvictionPolicy policy, int evictedMemory, int maxSlots)
    {
        _policy = policy;
        if (policy is IIntrusiveOrder intrusive) _moveOnAccess = intrusive.MovesOnAccess;
        else if (policy is NodePolicy node) _order = node.CreateOrder();
        else _external = policy;
        _canEvict = slot => !IsPinned(slot);
        _maxSlots = Math.Min(maxSlots, MaxSlots);
        _recent = new RecentEvictions(evictedMemory);
        _entries = new Entry[Math.Min(64, maxSlots)];
        _order?.Resize(_entries.Length);
        _buckets = [];
        Rehash();
    }

    public string PolicyName => _policy.Name;

    /// <summary>Blocks held.</summary>
    public int Count { get; private set; }

    /// <summary>Blocks with at least one pin.</summary>
    public int PinnedCount { get; private set; }

    public long Evictions { get; private set; }

    public long Inserts { get; private set; }

    public long Reinserts { get; private set; }

    public long Accesses { get; private set; }

    /// <summary>Inserts of a recently evicted block over all inserts; 0 before any insert.</summary>
    public double RePrefillRate => Inserts == 0 ? 0 : (double)Reinserts / Inserts;

    /// <summary>Bytes of the slot array and the index: what a lookup reads from.</summary>
    public long TableBytes => (long)_entries.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<Entry>() + (long)_buckets.Length * sizeof(ulong);

    /// <summary>Slots allocated (held plus free); grows by doubling, never shrinks.</summary>
    public int SlotCapacity => _entries.Length;

    public BlockHash HashAt(int slot) => _entries[slot].Hash;

    public TValue ValueAt(int slot) => _entries[slot].Value;

    public int PinsAt(int slot) => PinnedCount > 0 && _pins.TryGetValue(slot, out int pins) ? pins : 0;

    private bool IsPinned(int slot) => PinnedCount > 0 && _pins.ContainsKey(slot);

    /// <summary>The slot holding <paramref name="hash"/>, or -1.</summary>
    public int Find(in BlockHash hash) => Find(hash, out _);

    /// <summary>The slot holding <paramref name="hash"/>, or -1; <paramref name="at"/> is its bucket (or the empty one that ended the probe).</summary>
    private int Find(in BlockHash hash, out int at)
    {
        uint tag = Tag(hash);
        var buckets = _buckets;
        int mask = buckets.Length - 1;
        for (at = Home(tag); ; at = (at + 1) & mask)
        {
            ulong bucket = buckets[at];
            if (bucket == 0) return None;
            int slot = SlotOf(bucket);
            if ((uint)(bucket >> 32) == tag && _entries[slot].Hash == hash) return slot;
        }
    }

    /// <summary>
    /// How many of <paramref name="hashes"/>, from the first, are held; their slots go to <paramref name="slots"/>, and
    /// each matched block's successor hint is set to the next matched one. The first block is found through the index;
    /// its bucket's step bits say whether its successor sat in the next or the previous slot, and where they do the
    /// second block is guessed there (no second far read of the index); where they do not, the second is found through
    /// the index too. The next ones are first looked for at slots that fixed step apart, then each through its
    /// predecessor's hint (one entry, usually the neighbouring slot). Where a hint fails, the rest of the chain is
    /// probed in stages (all buckets, then all entries) rather than block after block, so the loads of one stage do
    /// not wait on each other and the memory system serves them in parallel.
    /// </summary>
    public int MatchPrefix(ReadOnlySpan<BlockHash> hashes, Span<int> slots)
    {
        if (hashes.IsEmpty) return 0;
        int first = Find(hashes[0], out int home);
        if ((slots[0] = first) == None) return 0;
        if (hashes.Length == 1) return 1;
        // A chain inserted together has its first block's bucket marked with the step, so one far read of the index
        // serves the whole chain. Without the mark the second block's bucket is read: a tag only names a candidate slot
        // (the walk checks the full hash there); no bucket with the tag means the block is not held.
        int step = StepOf(_buckets[home]);
        int second = step != 0 ? first + step : SlotByTag(Tag(hashes[1]));
        if (second == None && step == 0) return 1;   // (a marked step from slot 0 down names no slot: the walk below falls back)
        // A chain inserted together sits in slots a fixed step apart (the next free slots: ascending, or descending
        // when they come back from the free list). Guessing each slot from that step puts every address up front, so
        // the loads of the chain's entries overlap instead of each waiting for the last entry's hint; a guess counts
        // only where the full hash matches.
        var entries = _entries;
        int i = 1;
        step = second - first;
        for (int slot = second; i < hashes.Length && (uint)slot < (uint)_used; i++, slot += step)
        {
            ref var entry = ref entries[slot];
            if (entry.Prev == Free || entry.Hash != hashes[i]) break;
            slots[i] = slot;
        }
        for (; i < hashes.Length; i++)
        {
            int child = _entries[slots[i - 1]].Child;
            if (child == None || _entries[child].Prev == Free || _entries[child].Hash != hashes[i]) break;
            slots[i] = child;
        }
        int matched = i == hashes.Length ? i : i + ProbeInStages(hashes[i..], slots[i..]);
        for (int j = 1; j < matched; j++) _entries[slots[j - 1]].Child = slots[j];
        if (matched > 1) MarkStep(home, first, slots[1]);
        return matched;
    }

    /// <summary>
    /// Sets the successor hint of <paramref name="parent"/> to <paramref name="child"/> (both held), and the step bits of
    /// the parent's bucket (found from its hash: a near read while inserting, which has just probed it).
    /// </summary>
    public void Follow(int parent, int child)
    {
        ref var entry = ref _entries[parent];
        entry.Child = child;
        var buckets = _buckets;
        int mask = buckets.Length - 1;
        int b = Home(Tag(entry.Hash));
        while (SlotOf(buckets[b]) != parent) b = (b + 1) & mask;
        MarkStep(b, parent, child);
    }

    /// <summary>The step bits of <paramref name="hash"/>'s bucket: +1, -1, or 0 (not known, or not held). For tests.</summary>
    public int MarkedStep(in BlockHash hash) => Find(hash, out int at) == None ? 0 : StepOf(_buckets[at]);

    /// <summary>Sets the step bits of the bucket at <paramref name="at"/> (holding <paramref name="slot"/>) for a successor in <paramref name="child"/>; writes only on a change.</summary>
    private void MarkStep(int at, int slot, int child)
    {
        ulong bucket = _buckets[at], marked = (bucket & ~StepBits) | StepFlag(slot, child);
        if (marked != bucket) _buckets[at] = marked;
    }

    private int ProbeInStages(ReadOnlySpan<BlockHash> hashes, Span<int> slots)
    {
        for (int i = 0; i < hashes.Length; i++) slots[i] = SlotByTag(Tag(hashes[i]));
        for (int i = 0; i < hashes.Length; i++)
        {
            int slot = slots[i];
            if (slot == None) return i;
            if (_entries[slot].Hash != hashes[i])
            {
                slot = Find(hashes[i]);   // same tag, another hash: probe on
                if (slot == None) return i;
                slots[i] = slot;
            }
        }
        return hashes.Length;
    }

    /// <summary>The slot in the first bucket with <paramref name="tag"/>, or -1 when the probe meets an empty bucket first (no hash with this tag is held).</summary>
    private int SlotByTag(uint tag) => SlotOf(BucketByTag(tag));

    /// <summary>The first bucket with <paramref name="tag"/>, or 0 (empty) when the probe meets an empty bucket first.</summary>
    private ulong BucketByTag(uint tag)
    {
        var buckets = _buckets;
        int mask = buckets.Length - 1;
        int b = Home(tag);
        while (buckets[b] != 0 && (uint)(buckets[b] >> 32) != tag) b = (b + 1) & mask;
        return buckets[b];
    }

    /// <summary>
    /// Starts holding <paramref name="hash"/> with <paramref name="value"/>, continuing the block in <paramref name="parent"/>
    /// (-1: none; only a node policy keeps the link); when held already, counts an access (a node policy relinks it to
    /// <paramref name="parent"/> first, as the node does when a block is stored again) and keeps the old value (false).
    /// </summary>
    public bool Track(in BlockHash hash, TValue value, out int slot, int parent = None)
    {
        slot = Find(hash);
        if (slot != None)
        {
            if (_order is not null)
            {
                Accesses++;
                _order.Reinsert(slot, hash.Prefix, parent);
            }
            else Access(slot);
            return false;
        }
        slot = Add(hash, value, parent);
        return true;
    }

    /// <summary>A hit: counts it and moves the block in the order as the policy says.</summary>
    public void Access(int slot)
    {
        Settle();
        Accesses++;
        if (_external is not null) _external.OnAccess(_entries[slot].Hash);
        else if (_moveOnAccess && slot != _tail)
        {
            Unlink(slot);
            LinkLast(slot);
        }
        else if (_order is not null) _order.Access(slot, _entries[slot].Hash.Prefix);
    }

    /// <summary>
    /// Hits on a matched chain, in its order (<paramref name="slots"/> as <see cref="MatchPrefix"/> gave them): the same
    /// as <see cref="Access"/> on each, first to last. Under LRU a chain that already sits as one run in the order (it
    /// was inserted or last looked up together: each entry's next is the chain's next block) is moved to the back as
    /// one piece, three link updates instead of six per block; otherwise block by block. Under FIFO hits are only counted.
    /// </summary>
    /// <param name="slots">the matched chain's slots</param>
    /// <param name="deferMove">
    /// leave the run's move for the next call into the table, asking the CPU now for the entries of the run's two outer
    /// neighbours in the order, whose links the move rewrites. On a table beyond the caches those two entries are far, and
    /// the lock's next interlocked instruction waits until a store to a line not yet in the cache is done: made now, the
    /// move would hold the lookup for one more far read after its entries; left pending, the lines arrive while the
    /// caller works and the next call finds them near. Every
    /// call that reads or changes the order (<see cref="Access"/>, <see cref="AccessRun"/>, adding, removing, choosing
    /// victims) makes a pending move first, so the order anyone sees is the same as with the move made here.
    /// </param>
    public void AccessRun(ReadOnlySpan<int> slots, bool deferMove = false)
    {
        if (slots.IsEmpty) return;
        Settle();
        if (_external is null && _order is null && !_moveOnAccess)
        {
            Accesses += slots.Length;   // FIFO: a hit changes no order
            return;
        }
        if (_external is not null || !_moveOnAccess || !IsRun(slots))
        {
            foreach (int slot in slots) Access(slot);
            return;
        }
        Accesses += slots.Length;
        int first = slots[0], last = slots[^1];
        if (last == _tail) return;                          // already the most recent, in this order
        if (!deferMove)
        {
            MoveToBack(first, last);
            return;
        }
        (_movingFirst, _movingLast) = (first, last);
        int before = _entries[first].Prev, after = _entries[last].Next;   // after: last is not the tail
        if (before != None) Kvasir.Net.CacheHints.Prefetch(ref _entries[before]);
        Kvasir.Net.CacheHints.Prefetch(ref _entries[after]);
    }

    /// <summary>Makes the move to the back of the LRU order that <see cref="AccessRun"/> left pending, if any: first thing in every call that reads or changes the order.</summary>
    private void Settle()
    {
        if (_movingFirst == None) return;
        int first = _movingFirst;
        _movingFirst = None;
        MoveToBack(first, _movingLast);
    }

    /// <summary>Moves the run from <paramref name="first"/> to <paramref name="last"/> (linked in this order, <paramref name="last"/> not the tail) to the back of the order.</summary>
    private void MoveToBack(int first, int last)
    {
        ref var head = ref _entries[first];
        ref var end = ref _entries[last];
        if (head.Prev == None) _head = end.Next;
        else _entries[head.Prev].Next = end.Next;
        _entries[end.Next].Prev = head.Prev;
        head.Prev = _tail;
        _entries[_tail].Next = first;
        end.Next = None;
        _tail = last;
    }

    /// <summary>Whether the slots follow each other in the eviction order (a repeated slot never does: the order has no cycle).</summary>
    private bool IsRun(ReadOnlySpan<int> slots)
    {
        for (int i = 1; i < slots.Length; i++)
            if (_entries[slots[i - 1]].Next != slots[i]) return false;
        return true;
    }

    public void Pin(int slot)
    {
        ref int pins = ref CollectionsMarshal.GetValueRefOrAddDefault(_pins, slot, out bool existed);
        pins++;
        if (!existed) PinnedCount++;
    }

    /// <summary>Drops one pin of a pinned block (the caller checks that it has one).</summary>
    public void Unpin(int slot)
    {
        if (!_pins.TryGetValue(slot, out int pins)) return;
        if (pins > 1) _pins[slot] = pins - 1;
        else
        {
            _pins.Remove(slot);
            PinnedCount--;
        }
    }

    /// <summary>Stops holding the block in <paramref name="slot"/> (invalidated; pins are the caller's check).</summary>
    public void Remove(int slot) => Remove(slot, evicted: false);

    private void Remove(int slot, bool evicted)
    {
        Settle();
        ref var entry = ref _entries[slot];
        if (PinnedCount > 0 && _pins.Remove(slot)) PinnedCount--;
        RemoveFromIndex(Tag(entry.Hash), slot);
        if (_external is not null) _external.OnRemove(entry.Hash);
        else if (_order is not null) _order.Remove(slot, entry.Hash.Prefix, evicted);
        else Unlink(slot);
        entry = default;
        entry.Prev = Free;
        entry.Next = _free;
        _free = slot;
        Count--;
    }

    /// <summary>Removes a victim, counting the eviction and remembering its hash for the re-prefill rate.</summary>
    public void Evict(int slot)
    {
        Evictions++;
        _recent.Remember(_entries[slot].Hash);
        Remove(slot, evicted: true);
    }

    /// <summary>
    /// Evicts <paramref name="count"/> unpinned blocks in the policy's order, adding each to <paramref name="into"/> before
    /// it goes. The built-in and custom policies select them all, then evict (as <see cref="SelectVictims"/>); a node
    /// policy picks and evicts one at a time, as the node does, so that evicting a block can change what goes next (a
    /// chain's parent left without children). Errors as <see cref="SelectVictims"/>, thrown before anything is evicted.
    /// </summary>
    public void EvictVictims(int count, List<KeyValuePair<BlockHash, TValue>> into)
    {
        if (_order is null)
        {
            foreach (int slot in SelectVictims(count))
            {
                into.Add(new(_entries[slot].Hash, _entries[slot].Value));
                Evict(slot);
            }
            return;
        }
        CheckVictims(count);
        for (int i = 0; i < count; i++)
        {
            int slot;
            while ((slot = _order.Pick(_canEvict)) == None)
            {
                // A search that spent its budget on pinned blocks moved them on; an unpinned one exists (checked).
            }
            into.Add(new(_entries[slot].Hash, _entries[slot].Value));
            Evict(slot);
        }
    }

    private void CheckVictims(int count)
    {
        if (Count < count)
            throw new NoVictimException($"asked to evict {count} blocks but only {Count} are cached",
                new Dictionary<string, object?> { ["requested"] = count, ["tracked"] = Count });
        if (Count - PinnedCount < count)
            throw new AllPinnedException($"asked to evict {count} blocks but only {Count - PinnedCount} of {Count} cached blocks are unpinned",
                new Dictionary<string, object?> { ["requested"] = count, ["unpinned"] = Count - PinnedCount, ["pinned"] = PinnedCount });
    }

    /// <summary>Bytes a node policy keeps beside the slot array (0 for the others).</summary>
    public long OrderBytes => _order?.BytesFor(_entries.Length) ?? 0;

    /// <summary>
    /// The next <paramref name="count"/> victims in the policy's order, skipping pinned blocks, without removing
    /// them. Errors as <see cref="EvictionManager.SelectVictims"/>.
    /// </summary>
    public List<int> SelectVictims(int count)
    {
        Settle();
        var victims = new List<int>(count);
        if (count == 0) return victims;
        if (Count < count)
            throw new NoVictimException($"asked to evict {count} blocks but only {Count} are cached",
                new Dictionary<string, object?> { ["requested"] = count, ["tracked"] = Count });
        if (_order is not null)
        {
            CheckVictims(count);
            _order.Peek(count, _canEvict, victims);
            return victims;
        }
        if (_external is null)
        {
            for (int slot = _head; slot != None; slot = _entries[slot].Next)
            {
                if (IsPinned(slot)) continue;
                victims.Add(slot);
                if (victims.Count == count) return victims;
            }
        }
        else
        {
            foreach (var candidate in _external.Candidates())
            {
                int slot = Find(candidate);
                if (slot == None)
                    throw new EvictionFailedException($"policy {_policy.Name} named block {candidate}, which is not cached",
                        new Dictionary<string, object?> { ["policy"] = _policy.Name, ["block"] = candidate.Hex });
                if (IsPinned(slot)) continue;
                victims.Add(slot);
                if (victims.Count == count) return victims;
            }
        }
        throw new AllPinnedException($"asked to evict {count} blocks but only {victims.Count} of {Count} cached blocks are unpinned",
            new Dictionary<string, object?> { ["requested"] = count, ["unpinned"] = victims.Count, ["pinned"] = PinnedCount });
    }

    private int Add(in BlockHash hash, TValue value, int parent)
    {
        Settle();
        Inserts++;
        if (_recent.Forget(hash)) Reinserts++;
        int slot;
        if (_free != None)
        {
            slot = _free;
            _free = _entries[slot].Next;
        }
        else
        {
            if (_used == _entries.Length) Grow();
            slot = _used++;
        }
        ref var entry = ref _entries[slot];
        entry.Hash = hash;
        entry.Value = value;
        entry.Prev = None;
        entry.Child = None;
        AddToIndex(Tag(hash), slot);
        if (_external is not null) _external.OnInsert(hash);
        else if (_order is not null) _order.Insert(slot, hash.Prefix, parent);
        else LinkLast(slot);
        Count++;
        return slot;
    }

    /// <summary>The index's 32 bits of a hash: its first four bytes (SHA-256 output is uniform).</summary>
    private static uint Tag(in BlockHash hash) => (uint)(hash.Prefix >> 32);

    private static int SlotOf(ulong bucket) => (int)((uint)bucket & SlotBits) - 1;

    /// <summary>Where a bucket's step bits place its block's successor: +1, -1, or 0 (not known).</summary>
    private static int StepOf(ulong bucket) => (bucket & StepUp) != 0 ? 1 : (bucket & StepDown) != 0 ? -1 : 0;

    /// <summary>The step bits for a block in <paramref name="slot"/> followed by one in <paramref name="child"/>.</summary>
    private static ulong StepFlag(int slot, int child) => child < 0 ? 0 : child == slot + 1 ? StepUp : child == slot - 1 ? StepDown : 0;

    private int Home(uint tag) => (int)((tag * Fibonacci) >> _shift);

    private void AddToIndex(uint tag, int slot, ulong step = 0)
    {
        int mask = _buckets.Length - 1;
        int b = Home(tag);
        while (_buckets[b] != 0) b = (b + 1) & mask;
        _buckets[b] = ((ulong)tag << 32) | step | (uint)(slot + 1);
    }

    /// <summary>Deletes the bucket of <paramref name="slot"/> and shifts the probe run behind it back (no tombstones).</summary>
    private void RemoveFromIndex(uint tag, int slot)
    {
        int mask = _buckets.Length - 1;
        int hole = Home(tag);
        while (SlotOf(_buckets[hole]) != slot) hole = (hole + 1) & mask;
        for (int next = (hole + 1) & mask; _buckets[next] != 0; next = (next + 1) & mask)
        {
            if (LinearProbing.MustStay(hole, next, Home((uint)(_buckets[next] >> 32)))) continue;
            _buckets[hole] = _buckets[next];
            hole = next;
        }
        _buckets[hole] = default;
    }

    private void Grow()
    {
        if (_entries.Length >= _maxSlots)
            throw new InvalidOperationException($"a block table holds at most {_maxSlots} blocks");   // PrefixCache checks its capacity first
        int size = (int)Math.Min((long)_entries.Length * 2, _maxSlots);
        Array.Resize(ref _entries, size);
        _order?.Resize(size);
        Rehash();
    }

    /// <summary>A new index of at least twice the slots (so at most half full), refilled from the held entries.</summary>
    private void Rehash()
    {
        int bits = Math.Max(4, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)_entries.Length * 2 - 1));
        _buckets = new ulong[1 << bits];
        _shift = 32 - bits;
        // Growth happens only when the free list is empty, so every slot below _used is held. The step bits come back
        // from the entries' successor hints.
        for (int slot = 0; slot < _used; slot++) AddToIndex(Tag(_entries[slot].Hash), slot, StepFlag(slot, _entries[slot].Child));
    }

    private void LinkLast(int slot)
    {
        ref var entry = ref _entries[slot];
        entry.Prev = _tail;
        entry.Next = None;
        if (_tail == None) _head = slot;
        else _entries[_tail].Next = slot;
        _tail = slot;
    }

    private void Unlink(int slot)
    {
        ref var entry = ref _entries[slot];
        if (entry.Prev == None) _head = entry.Next;
        else _entries[entry.Prev].Next = entry.Next;
        if (entry.Next == None) _tail = entry.Prev;
        else _entries[entry.Next].Prev = entry.Prev;
    }
}
