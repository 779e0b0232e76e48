namespace Kvasir.Storage.Internal;

/// <summary>
/// The stable per-key entry of the index. Survives overwrites (pins and chain position stay with the key);
/// a removed or evicted key's slot is dead for good and a later put creates a new one.
/// Mutated only under the store's lock.
/// </summary>
internal sealed class Slot(byte[] key, ValueVersion current) : IListNode<Slot>
{
    public byte[] Key { get; } = key;

    /// <summary>The published version.</summary>
    public ValueVersion Current { get; set; } = current;

    public bool IsLive { get; set; } = true;

    public int PinCount { get; set; }

    /// <summary>The value was promoted from a lower tier (counted against the hot share of DRAM).</summary>
    public bool Promoted { get; set; }

    /// <summary>The block this one continues. May be a dead slot (orphan); only a live parent counts.</summary>
    public Slot? Parent { get; set; }

    /// <summary>Live slots whose <see cref="Parent"/> is this slot.</summary>
    public int ChildCount { get; set; }

    // Eviction policy list links.
    public Slot? ListPrev { get; set; }

    public Slot? ListNext { get; set; }

    public bool InList { get; set; }
}
