namespace Kvasir.Storage.Internal;

/// <summary>
/// A binary min-heap of slots by (<see cref="HeapSlot.Priority"/>, <see cref="HeapSlot.Stamp"/>), each slot knowing its own
/// position (<see cref="HeapSlot.HeapIndex"/>) so that an update or removal is O(log n). Not thread-safe: used under the
/// store's lock.
/// </summary>
internal sealed class SlotHeap
{
    private HeapSlot[] _items = new HeapSlot[64];
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
            HeapSlot[] byStamp = _items[..Count];
            Array.Sort(byStamp, static (a, b) => a.Stamp.CompareTo(b.Stamp));
            for (int i = 0; i < byStamp.Length; i++)
            {
                byStamp[i].Stamp = i + 1;
            }

            _clock = byStamp.Length;
        }

        return ++_clock;
    }

    public HeapSlot? Min => Count > 0 ? _items[0] : null;

    public bool Contains(HeapSlot slot) => slot.HeapIndex >= 0;

    /// <summary>Adds the slot, or moves it to its place when its priority changed while in the heap.</summary>
    public void AddOrUpdate(HeapSlot slot)
    {
        if (slot.HeapIndex >= 0)
        {
            int i = slot.HeapIndex;
            SiftUp(i);
            SiftDown(slot.HeapIndex);
            return;
        }

        if (Count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }

        _items[Count] = slot;
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
            _items[Count] = null!;
            return;
        }

        HeapSlot last = _items[Count];
        _items[Count] = null!;
        _items[i] = last;
        last.HeapIndex = i;
        SiftUp(i);
        SiftDown(last.HeapIndex);
    }

    private static bool Less(HeapSlot a, HeapSlot b) => a.Priority < b.Priority || (a.Priority == b.Priority && a.Stamp < b.Stamp);

    private void SiftUp(int i)
    {
        HeapSlot item = _items[i];
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
        HeapSlot item = _items[i];
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

    private void Place(HeapSlot slot, int i)
    {
        _items[i] = slot;
        slot.HeapIndex = i;
    }
}
