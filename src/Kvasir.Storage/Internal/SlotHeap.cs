namespace Kvasir.Storage.Internal;

/// <summary>
/// A binary min-heap of slots by (<see cref="HeapSlot.Priority"/>, <see cref="HeapSlot.Stamp"/>), each slot knowing its own
/// position (<see cref="HeapSlot.HeapIndex"/>) so that an update or removal is O(log n). Not thread-safe: used under the
/// store's lock.
/// <para>
/// Each place holds a copy of its slot's key (priority and stamp) beside the reference, refreshed whenever the slot is
/// added or updated (the only times a policy changes the key of a slot in the heap), so comparisons read the array and
/// never the slots: at a million keys a read's update (it sinks the key about one level from depth ~18 of 19) read its
/// parent's and children's slots, each a far load in series after their array line. Measured: GET p50 of 64 keys at
/// 1M 65.3 µs against 77.6, for +17 B a key (a place is 24 B instead of 8; docs/benchmarks.md, session 15). The order,
/// and so which slot is evicted, is exactly what it was: the same comparisons on the same keys.
/// </para>
/// </summary>
internal sealed class SlotHeap
{
    private Entry[] _items = new Entry[64];

    /// <summary>A heap place: the slot and a copy of its key, so that comparisons read the array, not the slots.</summary>
    private struct Entry
    {
        public long Priority;
        public int Stamp;
        public HeapSlot Slot;

        public static Entry Of(HeapSlot slot) => new() { Priority = slot.Priority, Stamp = slot.Stamp, Slot = slot };
    }
    private int _clock;

    public int Count { get; private set; }

    /// <summary>The last stamp handed out (tests set it near <see cref="int.MaxValue"/> to reach the renumbering).</summary>
    internal int Clock
    {
        get => _clock;
        set => _clock = value;
    }

    /// <summary>
    /// A stamp later than every one handed out before (<see cref="HeapSlot.Stamp"/>: orders slots of equal priority).
    /// Before the clock would pass <see cref="int.MaxValue"/> the slots in the heap get the stamps 1..<see cref="Count"/>
    /// in the order of their old ones, so every comparison between them, and so the heap's order, stays as it was;
    /// slots outside the heap are stamped again when they are placed. O(n log n) once per 2^31 stamps.
    /// </summary>
    public int NextStamp()
    {
        if (_clock == int.MaxValue)
        {
            int[] byStamp = [.. Enumerable.Range(0, Count)];
            Array.Sort(byStamp, (a, b) => _items[a].Stamp.CompareTo(_items[b].Stamp));
            for (int i = 0; i < byStamp.Length; i++)
            {
                _items[byStamp[i]].Stamp = i + 1;
                _items[byStamp[i]].Slot.Stamp = i + 1;
            }

            _clock = byStamp.Length;
        }

        return ++_clock;
    }

    public HeapSlot? Min => Count > 0 ? _items[0].Slot : null;

    public bool Contains(HeapSlot slot) => slot.HeapIndex >= 0;

    /// <summary>Adds the slot, or moves it to its place when its priority changed while in the heap.</summary>
    public void AddOrUpdate(HeapSlot slot)
    {
        if (slot.HeapIndex >= 0)
        {
            int i = slot.HeapIndex;
            _items[i] = Entry.Of(slot);
            SiftUp(i);
            SiftDown(slot.HeapIndex);
            return;
        }

        if (Count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }

        _items[Count] = Entry.Of(slot);
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

        Entry last = _items[Count];
        _items[Count] = default;
        _items[i] = last;
        last.Slot.HeapIndex = i;
        SiftUp(i);
        SiftDown(last.Slot.HeapIndex);
    }

    private static bool Less(in Entry a, in Entry b) => a.Priority < b.Priority || (a.Priority == b.Priority && a.Stamp < b.Stamp);

    private void SiftUp(int i)
    {
        Entry item = _items[i];
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (!Less(item, _items[parent]))
            {
                break;
            }

            Place(_items[parent], i);
            i = parent;
        }

        Place(item, i);
    }

    private void SiftDown(int i)
    {
        Entry item = _items[i];
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

            Place(_items[child], i);
            i = child;
        }

        Place(item, i);
    }

    private void Place(in Entry entry, int i)
    {
        _items[i] = entry;
        entry.Slot.HeapIndex = i;
    }
}
