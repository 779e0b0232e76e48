namespace Kvasir.Storage.Internal;

/// <summary>
/// Chooses which slot to evict. Called under the store's lock. A policy tracks only its candidates (for example it
/// drops pinned slots), so victims are found without walking over values that can never be evicted.
/// </summary>
internal interface IEvictionPolicy
{
    /// <summary>A new slot of the kind this policy keeps its state in, not yet published, holding a copy of <paramref name="first"/> as its version.</summary>
    Slot NewSlot(byte[] key, ValueVersion first);

    /// <summary>A new slot has been published.</summary>
    void OnInsert(Slot slot);

    /// <summary>The slot was read or overwritten.</summary>
    void OnAccess(Slot slot);

    /// <summary>The slot left the index (removed or evicted).</summary>
    void OnRemove(Slot slot);

    /// <summary>The slot's pin count changed; a slot that becomes a candidate enters as most recently used.</summary>
    void OnPinChanged(Slot slot);

    /// <summary>The slot's live child count changed; a slot that becomes a candidate this way enters at the cold end.</summary>
    void OnChildrenChanged(Slot slot);

    /// <summary>
    /// The coldest candidate that <paramref name="canEvict"/> accepts, or null. Rejected candidates (typically leased)
    /// are moved to the hot end, and at most a bounded number are examined per call.
    /// </summary>
    Slot? TryPickVictim(Func<Slot, bool> canEvict);
}
