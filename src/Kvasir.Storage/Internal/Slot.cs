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

    /// <summary>When the published value expires (<see cref="Environment.TickCount64"/> ms); 0: never.</summary>
    public long ExpiresAt { get; set; }

    /// <summary>When the published value was written (<see cref="Environment.TickCount64"/> ms).</summary>
    public long WrittenAt { get; set; }

    /// <summary>The value was promoted from a lower tier (counted against the hot share of DRAM).</summary>
    public bool Promoted { get; set; }

    /// <summary>The block this one continues. May be a dead slot (orphan); only a live parent counts.</summary>
    public Slot? Parent { get; set; }

    /// <summary>Live slots whose <see cref="Parent"/> is this slot.</summary>
    public int ChildCount { get; set; }

    /// <summary>Policy state: which of the policy's queues holds the slot (S3-FIFO: small or main).</summary>
    public byte Queue { get; set; }

    /// <summary>Policy state: accesses counted by the policy (capped, aged or decremented as the policy defines).</summary>
    public int Frequency { get; set; }

    /// <summary>Policy state: the slot's position in the policy's heap (-1: not in it).</summary>
    public int HeapIndex { get; set; } = -1;

    /// <summary>Policy state: the slot's priority in the policy's heap (lower is evicted first).</summary>
    public long Priority { get; set; }

    /// <summary>Policy state: when the policy last reordered the slot (its own clock); breaks priority ties, oldest first.</summary>
    public long Stamp { get; set; }

    // Eviction policy list links.
    public Slot? ListPrev { get; set; }

    public Slot? ListNext { get; set; }

    public bool InList { get; set; }
}
