using Kvasir.Shared;

namespace Kvasir.Storage.Internal;

/// <summary>
/// Chain-aware LFU with dynamic aging, the store's default. A slot's priority is the cache age L at its last access
/// plus its value; the lowest priority is evicted and L becomes that victim's priority (as in <see cref="LfuPolicy"/>).
/// The value is 1 + its reads (capped at <see cref="MaxFrequency"/>, so a hot key ages out within a few rounds of L
/// once it goes cold) + 1 while another stored block continues it. So, among blocks of equal use, a chain is eaten
/// from its tail: the last block of a prompt, usually partial and on a production chat trace reused by 1% of later
/// requests against 25-34% for the blocks before it, goes first, and a prefix stays usable as long as possible. A block
/// whose parent is gone is worth nothing: when a stored block is found orphaned (its parent evicted or removed) at its
/// next placement its value is 0. Heads shared by many chains are read by each of them and so count more. Ties go to
/// the slot reordered longest ago. O(log n) per insert, read, child change and eviction; no memory beyond the slot.
/// <para>
/// With <c>remember</c> (the <see cref="EvictionPolicyKind.ChainSketch"/> variant) reads are also counted in a
/// <see cref="FrequencySketch"/> that outlives the slots, so a block that was read before, evicted and stored again
/// starts from its past reads instead of 0: on a production chat trace a block read once is read again 42% of the
/// time against 24% for a block never read, and that history is what plain LFU loses at every eviction. Costs one
/// FNV-1a hash of the key and four counters per insert and read, and 8-16 bytes per key.
/// </para>
/// </summary>
internal sealed class ChainLfuPolicy(bool remember) : IEvictionPolicy
{
    private const int MaxFrequency = 8;

    private readonly SlotHeap _heap = new();
    private readonly List<HeapPlace> _passedOver = [];
    private readonly FrequencySketch? _history = remember ? new FrequencySketch() : null;
    private long _age;

    public Slot NewSlot(byte[] key, ValueVersion first) => SlotKeys.NewHeapSlot(key, first);

    public void OnInsert(Slot entry)
    {
        var slot = (HeapSlot)entry;
        if (_history is null)
        {
            slot.Frequency = 0;
        }
        else
        {
            _history.Fit(_heap.Count + 1);
            slot.Frequency = Math.Min(_history.Estimate(GhostKeys.Hash(slot.Key)), MaxFrequency);
        }

        Place(slot);
    }

    public void OnAccess(Slot entry)
    {
        var slot = (HeapSlot)entry;
        slot.Frequency = Math.Min(slot.Frequency + 1, MaxFrequency);
        _history?.Increment(GhostKeys.Hash(slot.Key));
        Place(slot);
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

    // Called when the child count goes 0 → 1 or 1 → 0: the slot keeps its age and gains or loses the continuation's 1.
    public void OnChildrenChanged(Slot entry)
    {
        var slot = (HeapSlot)entry;
        if (_heap.Contains(slot))
        {
            _heap.Shift(slot, slot.ChildCount > 0 ? 1 : -1);
        }
    }

    public Slot? TryPickVictim(Func<Slot, bool> canEvict)
        => PassOver.Pick(_heap, _passedOver, canEvict, priority => _age = Math.Max(_age, priority));

    private static long Value(Slot slot)
        => slot.Parent is { IsLive: false } ? 0 : 1 + slot.Frequency + (slot.ChildCount > 0 ? 1 : 0);

    private void Place(HeapSlot slot)
    {
        if (slot.PinCount > 0 || !slot.IsLive)
        {
            return;
        }

        _heap.Place(slot, _age + Value(slot));
    }
}
