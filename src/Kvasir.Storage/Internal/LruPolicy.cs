namespace Kvasir.Storage.Internal;

/// <summary>Least recently used first. Every unpinned slot is a candidate; chain links are ignored. An unpinned slot re-enters as most recent.</summary>
internal sealed class LruPolicy : ListEvictionPolicy
{
    protected override bool IsCandidate(Slot slot) => slot.PinCount == 0;
}
