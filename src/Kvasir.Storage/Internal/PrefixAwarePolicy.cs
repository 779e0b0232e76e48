namespace Kvasir.Storage.Internal;

/// <summary>
/// Chain-aware eviction: only leaves (unpinned slots with no live child) are candidates, least recently used first.
/// A parent whose last child has gone becomes a leaf at the cold end, so a chain is eaten from its tail and what
/// survives of it is always a prefix. A pinned member never becomes a candidate, so its ancestors never become
/// leaves either and survive with it: the prefix property holds with pins too.
/// </summary>
internal sealed class PrefixAwarePolicy : ListEvictionPolicy
{
    protected override bool IsCandidate(Slot slot) => slot.PinCount == 0 && slot.ChildCount == 0;
}
