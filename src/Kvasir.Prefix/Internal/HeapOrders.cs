using Kvasir.Shared;

namespace Kvasir.Prefix.Internal;

/// <summary>
/// The victim search of the heap policies: the lowest (priority, stamp) that <c>canEvict</c> accepts; refused slots keep
/// their priority and stamp and go back, so a pinned block costs one pop and one push per search that meets it.
/// </summary>
internal abstract class HeapOrder : SlotOrder
{
    protected readonly SlotHeap Heap = new();
    private readonly List<int> _passed = [];
    protected long Age;
    protected long Clock;

    public override int Pick(Func<int, bool> canEvict)
    {
        _passed.Clear();
        int victim = -1;
        while (Heap.Min is int slot and >= 0)
        {
            if (canEvict(slot))
            {
                victim = slot;
                break;
            }
            Heap.Remove(slot);
            _passed.Add(slot);
        }
        foreach (int slot in _passed) Heap.AddOrUpdate(slot);
        return victim;
    }

    public override void Peek(int count, Func<int, bool> canEvict, List<int> into)
    {
        _passed.Clear();
        while (into.Count < count && Heap.Min is int slot and >= 0)
        {
            Heap.Remove(slot);
            _passed.Add(slot);
            if (canEvict(slot)) into.Add(slot);
        }
        foreach (int slot in _passed) Heap.AddOrUpdate(slot);
    }

    /// <summary>An evicted block's priority becomes the cache's age (dynamic aging), as in the node.</summary>
    protected void Aged(int slot) => Age = Math.Max(Age, Heap.PriorityOf(slot));
}

/// <summary>
/// LFU with dynamic aging (LFU-DA), the node's <c>lfu</c>: priority = age + reads (counted from 1 at insert, capped at
/// 65,535), the lowest evicted first and its priority becoming the age; ties to the block reordered longest ago.
/// O(log n) per insert, read and eviction; 28 bytes a slot (priority, stamp, place in the heap, the heap's entry, count).
/// </summary>
internal sealed class LfuOrder : HeapOrder
{
    private const int MaxFrequency = ushort.MaxValue;
    private int[] _frequency = [];

    public override void Resize(int slots)
    {
        Heap.Resize(slots);
        if (slots > _frequency.Length) Array.Resize(ref _frequency, slots);
    }

    public override void Insert(int slot, ulong key, int parent)
    {
        _frequency[slot] = 1;
        Place(slot);
    }

    public override void Access(int slot, ulong key)
    {
        _frequency[slot] = Math.Min(_frequency[slot] + 1, MaxFrequency);
        if (Heap.Contains(slot)) Place(slot);
    }

    public override void Remove(int slot, ulong key, bool evicted)
    {
        if (evicted) Aged(slot);
        Heap.Remove(slot);
    }

    public override long BytesFor(int slots) => (long)slots * (8 + 8 + 4 + 4 + 4);

    private void Place(int slot) => Heap.Set(slot, Age + _frequency[slot], ++Clock);
}

/// <summary>
/// Chain-aware LFU with dynamic aging, the node's default (<c>chainlfu</c>) and, with a frequency sketch, its
/// <c>chainsketch</c>: priority = age at the last placement + value, value = 1 + reads (capped at 8) + 1 while a cached
/// block continues this one, and 0 for a block whose parent is gone (found at its next placement). So among blocks of
/// equal use a chain is evicted from its tail and its prefix stays reachable. The chain parent of a block is the one
/// before it in the insert that stored it (or the parent given to that insert); a relink, a parent that is not cached,
/// or one that would close a cycle follow the node's rules. O(log n) per insert, read, child change and eviction, plus
/// a walk up the chain only when a block that has children is relinked; 44 bytes a slot (52 with the sketch's 8 per
/// block, whose counters outlive the blocks).
/// </summary>
internal sealed class ChainLfuOrder(bool remember) : HeapOrder
{
    private const int MaxFrequency = 8;
    private const int MaxAncestorWalk = 1 << 16;

    private readonly FrequencySketch? _history = remember ? new FrequencySketch() : null;
    private int[] _frequency = [];
    private int[] _parent = [];       // the slot this one continues, or -1; live only while _gen[parent] == _parentGen[slot]
    private uint[] _parentGen = [];
    private uint[] _gen = [];         // bumped each time the slot's block leaves, so links to it die with it
    private int[] _children = [];     // live blocks linked to this one

    public override void Resize(int slots)
    {
        Heap.Resize(slots);
        if (slots <= _frequency.Length) return;
        int old = _frequency.Length;
        Array.Resize(ref _frequency, slots);
        Array.Resize(ref _parent, slots);
        Array.Resize(ref _parentGen, slots);
        Array.Resize(ref _gen, slots);
        Array.Resize(ref _children, slots);
        Array.Fill(_parent, -1, old, slots - old);
    }

    public override void Insert(int slot, ulong key, int parent)
    {
        _parent[slot] = -1;
        _children[slot] = 0;
        SetParent(slot, parent);
        if (_history is null) _frequency[slot] = 0;
        else
        {
            _history.Fit(Heap.Count + 1);
            _frequency[slot] = Math.Min(_history.Estimate(key), MaxFrequency);
        }
        Place(slot);
    }

    public override void Reinsert(int slot, ulong key, int parent)
    {
        SetParent(slot, parent);
        Access(slot, key);
    }

    public override void Access(int slot, ulong key)
    {
        _frequency[slot] = Math.Min(_frequency[slot] + 1, MaxFrequency);
        _history?.Increment(key);
        Place(slot);
    }

    public override void Remove(int slot, ulong key, bool evicted)
    {
        if (evicted) Aged(slot);
        Heap.Remove(slot);
        Detach(slot);
        _gen[slot]++;
    }

    public override long BytesFor(int slots) => (long)slots * (8 + 8 + 4 + 4 + 4 + 4 + 4 + 4 + 4 + (_history is null ? 0 : 8));

    /// <summary>The live parent of <paramref name="slot"/>, or -1 (none, or gone: an orphan).</summary>
    private int LiveParent(int slot)
    {
        int parent = _parent[slot];
        return parent >= 0 && _gen[parent] == _parentGen[slot] ? parent : -1;
    }

    private bool IsOrphan(int slot) => _parent[slot] >= 0 && _gen[_parent[slot]] != _parentGen[slot];

    private long Value(int slot) => IsOrphan(slot) ? 0 : 1 + _frequency[slot] + (_children[slot] > 0 ? 1 : 0);

    private void Place(int slot) => Heap.Set(slot, Age + Value(slot), ++Clock);

    // The node's ChainLinks.SetParent: a link to itself or one closing a cycle makes a root; an unchanged live link
    // stays; a dead link stays dead when the block is stored again as a root (it is still an orphan).
    private void SetParent(int slot, int parent)
    {
        if (parent >= 0 && (parent == slot || (_children[slot] > 0 && IsAncestorOf(slot, parent)))) parent = -1;
        if (LiveParent(slot) == parent) return;
        Detach(slot);
        if (parent < 0) return;
        _parent[slot] = parent;
        _parentGen[slot] = _gen[parent];
        if (++_children[parent] == 1) ChildrenChanged(parent);
    }

    private void Detach(int slot)
    {
        int parent = LiveParent(slot);
        _parent[slot] = -1;
        if (parent >= 0 && --_children[parent] == 0) ChildrenChanged(parent);
    }

    // Children 0 → 1 or 1 → 0: the block keeps its age and stamp and gains or loses the continuation's 1.
    private void ChildrenChanged(int slot)
    {
        if (Heap.Contains(slot)) Heap.Adjust(slot, _children[slot] > 0 ? 1 : -1);
    }

    private bool IsAncestorOf(int candidate, int descendant)
    {
        for (int current = descendant, steps = 0; current >= 0; current = LiveParent(current), steps++)
        {
            if (current == candidate || steps >= MaxAncestorWalk) return true;
        }
        return false;
    }
}
