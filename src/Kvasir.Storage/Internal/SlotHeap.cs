namespace Kvasir.Storage.Internal;

/// <summary>
/// A binary min-heap of slots by priority, ties broken by stamp (the slot placed longest ago first), each slot knowing
/// its own position (<see cref="HeapSlot.HeapIndex"/>) so that an update or removal is O(log n). Not thread-safe: used
/// under the store's lock.
/// <para>
/// A slot's priority and stamp live only here, in its place beside the reference (<see cref="HeapPlace"/>), not in the
/// slot: comparisons read the array and never the slots (at a million keys a read's update sinks the key about one
/// level from depth ~18 of 19, and reading its parent's and children's slots was a far load each, in series: GET p50 of
/// 64 keys at 1M 65.3 µs against 77.6, docs/benchmarks.md, session 15), and a key costs its place's 24 B and no more
/// (session 16: the slot's own copy, 12 B, is gone). A slot outside the heap (pinned, dead, or taken out while a victim
/// search passes it over) has no priority; the search keeps the places it takes out (<see cref="TakeMin"/>,
/// <see cref="Restore"/>).
/// </para>
/// </summary>
internal sealed class SlotHeap
{
    private HeapPlace[] _items = new HeapPlace[64];

    private int _clock;

    public int Count { get; private set; }

    /// <summary>The last stamp handed out (tests set it near <see cref="int.MaxValue"/> to reach the renumbering).</summary>
    internal int Clock
    {
        get => _clock;
        set => _clock = value;
    }

    /// <summary>
    /// A stamp later than every one handed out before (it orders slots of equal priority). Before the clock would pass
    /// <see cref="int.MaxValue"/> the slots in the heap get the stamps 1..<see cref="Count"/> in the order of their old
    /// ones, so every comparison between them, and so the heap's order, stays as it was; slots outside the heap are
    /// stamped again when they are placed. O(n log n) once per 2^31 stamps.
    /// </summary>
    private int NextStamp()
    {
        if (_clock == int.MaxValue)
        {
            int[] byStamp = [.. Enumerable.Range(0, Count)];
            Array.Sort(byStamp, (a, b) => _items[a].Stamp.CompareTo(_items[b].Stamp));
            for (int i = 0; i < byStamp.Length; i++)
            {
                _items[byStamp[i]] = _items[byStamp[i]] with { Stamp = i + 1 };
            }

            _clock = byStamp.Length;
        }

        return ++_clock;
    }

    public bool Contains(HeapSlot slot) => slot.HeapIndex >= 0;

    /// <summary>
    /// Gives the slot <paramref name="priority"/> and a stamp later than all before (so among equal priorities it goes
    /// last), adding it or moving it to its new place.
    /// </summary>
    public void Place(HeapSlot slot, long priority) => Put(new HeapPlace(slot, priority, NextStamp()));

    /// <summary>Moves a slot in the heap by <paramref name="delta"/> of priority, keeping its stamp.</summary>
    public void Shift(HeapSlot slot, long delta)
    {
        HeapPlace place = _items[slot.HeapIndex];
        Put(place with { Priority = place.Priority + delta });
    }

    /// <summary>Takes the lowest slot out with its priority and stamp, for <see cref="Restore"/>; false when empty.</summary>
    public bool TakeMin(out HeapPlace min)
    {
        if (Count == 0)
        {
            min = default;
            return false;
        }

        min = _items[0];
        Remove(min.Slot);
        return true;
    }

    /// <summary>Puts back a place that <see cref="TakeMin"/> took out, with its priority and stamp (its order among the others is what it was).</summary>
    public void Restore(in HeapPlace place) => Put(place);

    private void Put(in HeapPlace place)
    {
        HeapSlot slot = place.Slot;
        if (slot.HeapIndex >= 0)
        {
            int i = slot.HeapIndex;
            _items[i] = place;
            SiftUp(i);
            SiftDown(slot.HeapIndex);
            return;
        }

        if (Count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }

        _items[Count] = place;
        slot.HeapIndex = Count++;
        SiftUp(slot.HeapIndex);
    }

    /// <summary>Takes the slot out; a slot not in the heap is left alone.</summary>
    public void Remove(HeapSlot slot)
    {
        int i = slot.HeapIndex;
        if (i < 0)
        {
            return;
        }

        slot.HeapIndex = -1;
        Count--;
        if (i == Count)
        {
            _items[Count] = default;
            return;
        }

        HeapPlace last = _items[Count];
        _items[Count] = default;
        _items[i] = last;
        last.Slot.HeapIndex = i;
        SiftUp(i);
        SiftDown(last.Slot.HeapIndex);
    }

    private static bool Less(in HeapPlace a, in HeapPlace b) => a.Priority < b.Priority || (a.Priority == b.Priority && a.Stamp < b.Stamp);

    private void SiftUp(int i)
    {
        HeapPlace item = _items[i];
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (!Less(item, _items[parent]))
            {
                break;
            }

            MoveTo(_items[parent], i);
            i = parent;
        }

        MoveTo(item, i);
    }

    private void SiftDown(int i)
    {
        HeapPlace item = _items[i];
        while (true)
        {
            int child = (2 * i) + 1;
            if (child >= Count)
            {
                break;
            }

            if (child + 1 < Count && Less(_items[child + 1], _items[child]))
            {
                child++;
            }

            if (!Less(_items[child], item))
            {
                break;
            }

            MoveTo(_items[child], i);
            i = child;
        }

        MoveTo(item, i);
    }

    private void MoveTo(in HeapPlace place, int i)
    {
        _items[i] = place;
        place.Slot.HeapIndex = i;
    }
}

/// <summary>A place of a <see cref="SlotHeap"/>: the slot, its priority (lower is evicted first) and its stamp (breaks ties, oldest first).</summary>
internal readonly record struct HeapPlace(HeapSlot Slot, long Priority, int Stamp);
