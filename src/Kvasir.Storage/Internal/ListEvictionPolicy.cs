namespace Kvasir.Storage.Internal;

/// <summary>
/// A recency list of candidate slots (intrusive, O(1) per operation): head is hot, tail is cold.
/// Subclasses decide which slots are candidates.
/// </summary>
internal abstract class ListEvictionPolicy : IEvictionPolicy
{
    /// <summary>Candidates examined per victim search before giving up; bounds time spent under the lock.</summary>
    private const int ScanLimit = 1024;

    // First is hot, Last is cold.
    private readonly IntrusiveList<ListSlot> _recency = new();

    public int Count => _recency.Count;

    public Slot NewSlot(byte[] key, ValueVersion first) => SlotKeys.NewListSlot(key, first);

    public void OnInsert(Slot entry)
    {
        var slot = (ListSlot)entry;
        if (IsCandidate(slot))
        {
            _recency.AddFirst(slot);
        }
    }

    public void OnAccess(Slot entry)
    {
        var slot = (ListSlot)entry;
        if (MoveOnAccess && slot.InList)
        {
            _recency.Remove(slot);
            _recency.AddFirst(slot);
        }
    }

    public void OnRemove(Slot entry)
    {
        var slot = (ListSlot)entry;
        _recency.Remove(slot);
    }

    public void OnPinChanged(Slot slot) => Reevaluate((ListSlot)slot, joinCold: false);

    // A slot that becomes a candidate because its chain lost its tail is worth little: its continuation is gone.
    public void OnChildrenChanged(Slot slot) => Reevaluate((ListSlot)slot, joinCold: true);

    public Slot? TryPickVictim(Func<Slot, bool> canEvict)
    {
        int budget = Math.Min(Count, ScanLimit);
        for (int i = 0; i < budget && _recency.Last is ListSlot slot; i++)
        {
            if (canEvict(slot))
            {
                return slot;
            }

            _recency.Remove(slot);
            _recency.AddFirst(slot);
        }

        return null;
    }

    /// <summary>Whether a read or overwrite makes the slot most recent (false: insertion order only).</summary>
    protected virtual bool MoveOnAccess => true;

    /// <summary>Whether the slot may be chosen as a victim at all (ignoring transient leases).</summary>
    protected abstract bool IsCandidate(Slot slot);

    private void Reevaluate(ListSlot slot, bool joinCold)
    {
        bool candidate = slot.IsLive && IsCandidate(slot);
        if (candidate && !slot.InList)
        {
            if (joinCold)
            {
                _recency.AddLast(slot);
            }
            else
            {
                _recency.AddFirst(slot);
            }
        }
        else if (!candidate && slot.InList)
        {
            _recency.Remove(slot);
        }
    }
}
