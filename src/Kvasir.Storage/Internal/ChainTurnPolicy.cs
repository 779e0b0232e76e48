namespace Kvasir.Storage.Internal;

/// <summary>
/// Chain-turn aware LRU. A chain that has been continued before (a conversation at its n-th turn) is more likely to be
/// continued again: on a production chat trace a first turn is followed up 31% of the time, a fourth turn 59%. So each
/// slot gets a class, its chain's turn: the reads its own block has had plus the turn it inherited from its parent when
/// stored (a parent with at most one other continuation passes its turn on; a shared head with many, such as a system
/// prompt, does not). One LRU list per class (capped at <see cref="Classes"/> − 1); the victim is the tail whose idle
/// time divided by its class weight is largest, so a slot of a well-continued chain stays up to
/// <see cref="Weights"/>[^1] times longer than a first-turn slot. Time is the policy's own event count, so a replay at
/// any speed chooses the same victims. O(<see cref="Classes"/>) per eviction, O(1) otherwise; no memory beyond the
/// slot's fields.
/// </summary>
internal sealed class ChainTurnPolicy : IEvictionPolicy
{
    private const int Classes = 5;

    /// <summary>How much longer a class may stay idle than class 0 before it is evicted.</summary>
    private static readonly double[] Weights = [1.0, 1.6, 2.2, 2.8, 3.4];

    // Per class: First is most recent, Last is least recent.
    private readonly IntrusiveList<Slot>[] _lists = [.. Enumerable.Range(0, Classes).Select(_ => new IntrusiveList<Slot>())];
    private long _clock;

    public void OnInsert(Slot slot)
    {
        slot.Frequency = 0;
        slot.Turn = slot.Parent is { IsLive: true } parent && parent.ChildCount <= 2 ? ChainTurn(parent) : 0;
        Touch(slot);
    }

    public void OnAccess(Slot slot)
    {
        slot.Frequency = (int)Math.Min((long)slot.Frequency + 1, int.MaxValue);
        Touch(slot);
    }

    public void OnRemove(Slot slot) => Unlink(slot);

    public void OnPinChanged(Slot slot)
    {
        if (slot.IsLive && slot.PinCount == 0)
        {
            Touch(slot);
        }
        else
        {
            Unlink(slot);
        }
    }

    public void OnChildrenChanged(Slot slot)
    {
    }

    public Slot? TryPickVictim(Func<Slot, bool> canEvict)
    {
        for (int i = 0; i < PassOver.ScanLimit; i++)
        {
            Slot? best = null;
            double bestIdle = -1;
            for (int c = 0; c < Classes; c++)
            {
                if (_lists[c].Last is Slot tail && (_clock - tail.Stamp) / Weights[c] > bestIdle)
                {
                    best = tail;
                    bestIdle = (_clock - tail.Stamp) / Weights[c];
                }
            }

            if (best is null || canEvict(best))
            {
                return best;
            }

            Touch(best);
        }

        return null;
    }

    private static int ChainTurn(Slot slot) => (int)Math.Min((long)slot.Turn + slot.Frequency, int.MaxValue);

    private void Touch(Slot slot)
    {
        if (slot.PinCount > 0)
        {
            return;
        }

        Unlink(slot);
        int c = Math.Min(ChainTurn(slot), Classes - 1);
        _lists[c].AddFirst(slot);
        slot.Queue = (byte)c;
        slot.Stamp = ++_clock;
    }

    private void Unlink(Slot slot)
    {
        if (slot.InList)
        {
            _lists[slot.Queue].Remove(slot);
        }
    }
}
