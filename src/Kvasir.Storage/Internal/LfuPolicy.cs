namespace Kvasir.Storage.Internal;

/// <summary>
/// Least frequently used with dynamic aging (LFU-DA): a slot's priority is the cache age L plus its access count, and
/// the lowest priority is evicted, L becoming that victim's priority. A newcomer therefore starts just above what was
/// last evicted, and a once-popular slot that stops being read sinks as L rises past its old count, instead of staying
/// forever as in plain LFU. Ties go to the slot reordered longest ago. O(log n) per insert, access and eviction.
/// </summary>
internal sealed class LfuPolicy : IEvictionPolicy
{
    /// <summary>
    /// Counts stop here (65,535: the most a slot holds), so one hot key cannot outlive a shift of the workload by more
    /// than this many evictions' aging.
    /// </summary>
    private const int MaxFrequency = Slot.MaxFrequency;

    private readonly SlotHeap _heap = new();
    private readonly List<HeapPlace> _passedOver = [];
    private long _age;

    public Slot NewSlot(byte[] key, ValueVersion first) => SlotKeys.NewHeapSlot(key, first);

    public void OnInsert(Slot entry)
    {
        var slot = (HeapSlot)entry;
        slot.Frequency = 1;
        Place(slot);
    }

    public void OnAccess(Slot entry)
    {
        var slot = (HeapSlot)entry;
        slot.Frequency = Math.Min(slot.Frequency + 1, MaxFrequency);
        if (_heap.Contains(slot))
        {
            Place(slot);
        }
    }

    public void OnRemove(Slot slot) => _heap.Remove((HeapSlot)slot);

    public void OnPinChanged(Slot entry)
    {
        var slot = (HeapSlot)entry;
        if (slot.IsLive && slot.PinCount == 0)
        {
            Place(slot);
        }
        else
        {
            _heap.Remove(slot);
        }
    }

    public void OnChildrenChanged(Slot slot)
    {
    }

    public Slot? TryPickVictim(Func<Slot, bool> canEvict)
        => PassOver.Pick(_heap, _passedOver, canEvict, priority => _age = Math.Max(_age, priority));

    private void Place(HeapSlot slot)
    {
        if (slot.PinCount > 0)
        {
            return;
        }

        _heap.Place(slot, _age + slot.Frequency);
    }
}
