namespace Kvasir.Storage.Internal;

/// <summary>
/// First in, first out: the oldest insertion is evicted first; reads and overwrites do not reorder. Every unpinned slot
/// is a candidate; an unpinned slot, and a leased one passed over, re-enter as newest.
/// </summary>
internal sealed class FifoPolicy : ListEvictionPolicy
{
    protected override bool MoveOnAccess => false;

    protected override bool IsCandidate(Slot slot) => slot.PinCount == 0;
}
