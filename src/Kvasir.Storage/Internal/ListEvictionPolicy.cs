namespace Kvasir.Storage.Internal;

/// <summary>
/// A recency list of candidate slots (intrusive, O(1) per operation): head is hot, tail is cold.
/// Subclasses decide which slots are candidates.
/// </summary>
internal abstract class ListEvictionPolicy : IEvictionPolicy
{
    /// <summary>Candidates examined per victim search before giving up; bounds time spent under the lock.</summary>
    private const int ScanLimit = 1024;

    private Slot? _hot;
    private Slot? _cold;

    public int Count { get; private set; }

    public void OnInsert(Slot slot)
    {
        if (IsCandidate(slot))
        {
            LinkHot(slot);
        }
    }

    public void OnAccess(Slot slot)
    {
        if (slot.InPolicyList)
        {
            Unlink(slot);
            LinkHot(slot);
        }
    }

    public void OnRemove(Slot slot)
    {
        if (slot.InPolicyList)
        {
            Unlink(slot);
        }
    }

    public void OnPinChanged(Slot slot) => Reevaluate(slot, joinCold: false);

    // A slot that becomes a candidate because its chain lost its tail is worth little: its continuation is gone.
    public void OnChildrenChanged(Slot slot) => Reevaluate(slot, joinCold: true);

    public Slot? TryPickVictim(Func<Slot, bool> canEvict)
    {
        int budget = Math.Min(Count, ScanLimit);
        for (int i = 0; i < budget && _cold is Slot slot; i++)
        {
            if (canEvict(slot))
            {
                return slot;
            }

            Unlink(slot);
            LinkHot(slot);
        }

        return null;
    }

    /// <summary>Whether the slot may be chosen as a victim at all (ignoring transient leases).</summary>
    protected abstract bool IsCandidate(Slot slot);

    private void Reevaluate(Slot slot, bool joinCold)
    {
        bool candidate = slot.IsLive && IsCandidate(slot);
        if (candidate && !slot.InPolicyList)
        {
            if (joinCold)
            {
                LinkCold(slot);
            }
            else
            {
                LinkHot(slot);
            }
        }
        else if (!candidate && slot.InPolicyList)
        {
            Unlink(slot);
        }
    }

    private void LinkHot(Slot slot)
    {
        slot.PolicyPrev = null;
        slot.PolicyNext = _hot;
        if (_hot is not null)
        {
            _hot.PolicyPrev = slot;
        }

        _hot = slot;
        _cold ??= slot;
        slot.InPolicyList = true;
        Count++;
    }

    private void LinkCold(Slot slot)
    {
        slot.PolicyNext = null;
        slot.PolicyPrev = _cold;
        if (_cold is not null)
        {
            _cold.PolicyNext = slot;
        }

        _cold = slot;
        _hot ??= slot;
        slot.InPolicyList = true;
        Count++;
    }

    private void Unlink(Slot slot)
    {
        if (slot.PolicyPrev is not null)
        {
            slot.PolicyPrev.PolicyNext = slot.PolicyNext;
        }
        else
        {
            _hot = slot.PolicyNext;
        }

        if (slot.PolicyNext is not null)
        {
            slot.PolicyNext.PolicyPrev = slot.PolicyPrev;
        }
        else
        {
            _cold = slot.PolicyPrev;
        }

        slot.PolicyPrev = null;
        slot.PolicyNext = null;
        slot.InPolicyList = false;
        Count--;
    }
}
