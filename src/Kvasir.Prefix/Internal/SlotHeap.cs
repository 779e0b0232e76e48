namespace Kvasir.Prefix.Internal;

/// <summary>
/// A binary min-heap of slots by (priority, stamp), the slots' fields in arrays indexed by slot and each slot knowing its
/// place in the heap, so an update or removal is O(log n): the node's SlotHeap over slot indices instead of objects.
/// Stamps are unique, so the order is total and the minimum does not depend on how the heap's array is laid out.
/// </summary>
internal sealed class SlotHeap
{
    private int[] _items = new int[64];
    private long[] _priority = [];
    private long[] _stamp = [];
    private int[] _index = [];

    public int Count { get; private set; }

    public int Min => Count > 0 ? _items[0] : -1;

    public void Resize(int slots)
    {
        int old = _index.Length;
        if (slots <= old) return;
        Array.Resize(ref _priority, slots);
        Array.Resize(ref _stamp, slots);
        Array.Resize(ref _index, slots);
        Array.Fill(_index, -1, old, slots - old);
    }

    public bool Contains(int slot) => _index[slot] >= 0;

    public long PriorityOf(int slot) => _priority[slot];

    /// <summary>Sets the slot's priority and stamp and puts it in its place (adding it when absent).</summary>
    public void Set(int slot, long priority, long stamp)
    {
        _priority[slot] = priority;
        _stamp[slot] = stamp;
        AddOrUpdate(slot);
    }

    /// <summary>Changes the priority of a slot in the heap, keeping its stamp.</summary>
    public void Adjust(int slot, long delta)
    {
        _priority[slot] += delta;
        AddOrUpdate(slot);
    }

    /// <summary>Adds the slot with the priority and stamp it holds, or moves it to its place.</summary>
    public void AddOrUpdate(int slot)
    {
        int i = _index[slot];
        if (i >= 0)
        {
            SiftUp(i);
            SiftDown(_index[slot]);
            return;
        }
        if (Count == _items.Length) Array.Resize(ref _items, _items.Length * 2);
        _items[Count] = slot;
        _index[slot] = Count++;
        SiftUp(_index[slot]);
    }

    public void Remove(int slot)
    {
        int i = _index[slot];
        if (i < 0) return;
        _index[slot] = -1;
        Count--;
        if (i == Count) return;
        int last = _items[Count];
        _items[i] = last;
        _index[last] = i;
        SiftUp(i);
        SiftDown(_index[last]);
    }

    private bool Less(int a, int b) => _priority[a] < _priority[b] || (_priority[a] == _priority[b] && _stamp[a] < _stamp[b]);

    private void SiftUp(int i)
    {
        int item = _items[i];
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (!Less(item, _items[parent])) break;
            Place(_items[parent], i);
            i = parent;
        }
        Place(item, i);
    }

    private void SiftDown(int i)
    {
        int item = _items[i];
        while (true)
        {
            int child = (2 * i) + 1;
            if (child >= Count) break;
            if (child + 1 < Count && Less(_items[child + 1], _items[child])) child++;
            if (!Less(_items[child], item)) break;
            Place(_items[child], i);
            i = child;
        }
        Place(item, i);
    }

    private void Place(int slot, int i)
    {
        _items[i] = slot;
        _index[slot] = i;
    }
}
