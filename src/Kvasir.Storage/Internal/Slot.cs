namespace Kvasir.Storage.Internal;

/// <summary>
/// The stable per-key entry of the index. Survives overwrites (pins and chain position stay with the key);
/// a removed or evicted key's slot is dead for good and a later put creates a new one. The eviction policy makes
/// slots (<see cref="IEvictionPolicy.NewSlot"/>) of the kind that carries its own state: <see cref="ListSlot"/> for
/// the list policies, <see cref="HeapSlot"/> for the heap ones, so no slot carries the other kind's fields.
/// A slot is also its key's first published version (<see cref="Current"/> is the slot itself until an overwrite):
/// the version's fields are copied in when the slot is made, which saves the second object's header and reference
/// for every key that is written once. After an overwrite those fields are the old version's, retired and freed
/// like any other. The key's bytes are held by the concrete slot (<see cref="SlotKeys"/>): inside the slot object for
/// keys of up to <see cref="SlotKeys.MaxInlineBytes"/> bytes, a key array beside it for longer ones. Mutated only under
/// the store's lock.
/// </summary>
internal abstract class Slot : ValueVersion
{
    /// <summary>A slot whose published version is a copy of <paramref name="first"/> (which is then dropped).</summary>
    protected Slot(ValueVersion first)
        : base(first is StagedVersion ? throw new ArgumentException("A staged value is never published.", nameof(first)) : first)
    {
        Current = this;
    }

    /// <summary>
    /// The key's bytes, immutable and readable for the slot's whole life (a dead slot's too). The span points into
    /// the slot (or its key array): copy it (<see cref="ReadOnlySpan{T}.ToArray"/>) to keep the key beyond the call.
    /// </summary>
    public abstract ReadOnlySpan<byte> Key { get; }

    /// <summary>The published version: the slot itself until the key is overwritten.</summary>
    public ValueVersion Current { get; set; }

    public bool IsLive
    {
        get => (_flags & LiveFlag) != 0;
        set => _flags = (byte)(value ? _flags | LiveFlag : _flags & ~LiveFlag);
    }

    public int PinCount { get; set; }

    /// <summary>When the published value expires (<see cref="Environment.TickCount64"/> ms); 0: never.</summary>
    public long ExpiresAt { get; set; }

    /// <summary>When the published value was written (<see cref="Environment.TickCount64"/> ms).</summary>
    public long WrittenAt { get; set; }

    /// <summary>The value was promoted from a lower tier (counted against the hot share of DRAM).</summary>
    public bool Promoted
    {
        get => (_flags & PromotedFlag) != 0;
        set => _flags = (byte)(value ? _flags | PromotedFlag : _flags & ~PromotedFlag);
    }

    /// <summary>The block this one continues. May be a dead slot (orphan); only a live parent counts.</summary>
    public Slot? Parent { get; set; }

    /// <summary>Live slots whose <see cref="Parent"/> is this slot.</summary>
    public int ChildCount { get; set; }

    /// <summary>
    /// Policy state: accesses counted by the policy (capped, aged or decremented as the policy defines), at most
    /// <see cref="MaxFrequency"/>: 16 bits, so that the slot's own fields take 48 bytes (below).
    /// </summary>
    public int Frequency
    {
        get => _frequency;
        set => _frequency = (ushort)Math.Clamp(value, 0, MaxFrequency);
    }

    /// <summary>The largest <see cref="Frequency"/> a slot holds.</summary>
    public const int MaxFrequency = ushort.MaxValue;

    /// <summary>The length of a key held inside the slot (<see cref="SlotKeys"/>); 0 for a key held in its own array.</summary>
    private protected byte InlineKeyLength { get; set; }

    /// <summary>
    /// One word of policy state, read as the slot's kind needs it: a <see cref="HeapSlot"/>'s place in its heap, a
    /// <see cref="ListSlot"/>'s queue and whether it is linked. One word for both keeps the slot's own fields (two
    /// references, two longs, two ints, this word, the frequency, the key's length and the flags) at 48 bytes, so a
    /// heap slot adds no field of its own: 128 bytes with its version's fields and a 32-byte key.
    /// </summary>
    private protected int PolicyWord;

    private const byte LiveFlag = 1, PromotedFlag = 2;

    private ushort _frequency;

    private byte _flags = LiveFlag;
}

/// <summary>A slot of a list policy (LRU, FIFO, prefix-aware, S3-FIFO): its links in the policy's list. Made by <see cref="SlotKeys.NewListSlot"/>.</summary>
internal abstract class ListSlot(ValueVersion first) : Slot(first), IListNode<ListSlot>
{
    private const int InListBit = 1 << 8;

    public ListSlot? ListPrev { get; set; }

    public ListSlot? ListNext { get; set; }

    /// <summary>Which of the policy's queues holds the slot (S3-FIFO: small or main).</summary>
    public byte Queue
    {
        get => (byte)PolicyWord;
        set => PolicyWord = (PolicyWord & ~0xFF) | value;
    }

    /// <summary>Whether the slot is linked into one of the policy's lists.</summary>
    public bool InList
    {
        get => (PolicyWord & InListBit) != 0;
        set => PolicyWord = value ? PolicyWord | InListBit : PolicyWord & ~InListBit;
    }
}

/// <summary>
/// A slot of a heap policy (LFU, chain LFU): its place in the policy's <see cref="SlotHeap"/>, which keeps the slot's
/// priority and stamp in that place. Made by <see cref="SlotKeys.NewHeapSlot"/>.
/// </summary>
internal abstract class HeapSlot : Slot
{
    protected HeapSlot(ValueVersion first)
        : base(first)
    {
        PolicyWord = -1;
    }

    /// <summary>Policy state: the slot's position in the policy's heap (-1: not in it).</summary>
    public int HeapIndex
    {
        get => PolicyWord;
        set => PolicyWord = value;
    }
}
