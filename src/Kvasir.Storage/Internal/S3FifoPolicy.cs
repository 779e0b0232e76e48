using Kvasir.Shared;

namespace Kvasir.Storage.Internal;

/// <summary>
/// S3-FIFO (Yang et al., SOSP 2023): three FIFO queues. New slots enter a small queue (a tenth of the candidates);
/// one read while there promotes a slot to the main queue when it reaches the small queue's end, otherwise it is
/// evicted and its key remembered in a ghost queue; a key found in the ghost queue when stored again goes straight to
/// main. Main is a FIFO with up to three second chances (a read adds one, a pass over its end spends one). One-hit
/// values leave quickly without disturbing the main queue. O(1) amortised per operation, plus one hash of the key on
/// insert and eviction; the ghost queue holds 8 bytes per remembered key, at most one per candidate.
/// </summary>
internal sealed class S3FifoPolicy : IEvictionPolicy
{
    private const byte InSmall = 1;
    private const byte InMain = 2;
    private const int MaxFrequency = 3;

    // First is newest, Last is oldest.
    private readonly IntrusiveList<ListSlot> _small = new();
    private readonly IntrusiveList<ListSlot> _main = new();
    private readonly GhostKeys _ghost = new();

    private int Candidates => _small.Count + _main.Count;

    public Slot NewSlot(byte[] key, ValueVersion first) => SlotKeys.NewListSlot(key, first);

    public void OnInsert(Slot entry)
    {
        var slot = (ListSlot)entry;
        slot.Frequency = 0;
        if (slot.PinCount > 0)
        {
            return;
        }

        if (_ghost.Contains(GhostKeys.Hash(slot.Key)))
        {
            Add(_main, slot, InMain);
        }
        else
        {
            Add(_small, slot, InSmall);
        }
    }

    public void OnAccess(Slot slot) => slot.Frequency = Math.Min(slot.Frequency + 1, MaxFrequency);

    public void OnRemove(Slot slot) => Unlink((ListSlot)slot);

    public void OnPinChanged(Slot entry)
    {
        var slot = (ListSlot)entry;
        if (slot.IsLive && slot.PinCount == 0)
        {
            if (!slot.InList)
            {
                Add(_main, slot, InMain);
            }
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
        // Each pass either evicts, promotes a slot out of small (once per slot), spends a main slot's chance (at most
        // three per slot) or passes over a refused slot; past the budget the oldest acceptable slot goes regardless.
        int budget = Math.Min((4 * Candidates) + 1, 4 * PassOver.ScanLimit);
        for (int i = 0; i < budget && Candidates > 0; i++)
        {
            bool fromSmall = _small.Count > 0 && (_main.Count == 0 || _small.Count * 10 >= Candidates);
            ListSlot slot = (fromSmall ? _small.Last : _main.Last)!;
            bool lastChance = i >= budget - 1;
            if (fromSmall && slot.Frequency > 0 && !lastChance)
            {
                _small.Remove(slot);
                slot.Frequency = 0;
                Add(_main, slot, InMain);
            }
            else if (!fromSmall && slot.Frequency > 0 && !lastChance)
            {
                slot.Frequency--;
                _main.Remove(slot);
                _main.AddFirst(slot);
            }
            else if (canEvict(slot))
            {
                if (fromSmall)
                {
                    _ghost.Add(GhostKeys.Hash(slot.Key), Math.Max(Candidates, 1));
                }

                return slot;
            }
            else
            {
                IntrusiveList<ListSlot> queue = fromSmall ? _small : _main;
                queue.Remove(slot);
                queue.AddFirst(slot);
            }
        }

        return null;
    }

    private static void Add(IntrusiveList<ListSlot> queue, ListSlot slot, byte which)
    {
        queue.AddFirst(slot);
        slot.Queue = which;
    }

    private void Unlink(ListSlot slot)
    {
        if (!slot.InList)
        {
            return;
        }

        (slot.Queue == InSmall ? _small : _main).Remove(slot);
        slot.Queue = 0;
    }
}
