namespace Kvasir.Storage.Internal;

/// <summary>Where a version is in its life. Space is freed only from <see cref="Retired"/> with no leases, or on abort.</summary>
internal enum VersionState : byte
{
    /// <summary>Reserved, being written by a producer, invisible to readers.</summary>
    Reserved,

    /// <summary>The current value of a live slot.</summary>
    Published,

    /// <summary>Overwritten, removed or evicted: invisible, freed when its last lease is released.</summary>
    Retired,

    /// <summary>Its space has gone back to the allocator.</summary>
    Freed,
}

/// <summary>How far a version's <see cref="ValueVersion.Crc32C"/> is known to match its bytes.</summary>
internal enum CrcCheck : byte
{
    /// <summary>Computed by the node, or a claim checked since.</summary>
    Checked,

    /// <summary>The writer's claim, not checked yet.</summary>
    Claimed,

    /// <summary>No claim: the node owes the CRC, computed from the bytes at the first read or tier write.</summary>
    Owed,
}

/// <summary>
/// One stored value: an allocation in the arena plus its metadata (48 bytes an object: a length fits an
/// <see cref="int"/> because <see cref="StoreOptions.MaxValueBytes"/> does, a namespace index a <see cref="short"/>,
/// and the two CRC flags share one byte). Mutated only under the store's lock, except the CRC check state.
/// A value staged outside the arena is a <see cref="StagedVersion"/>; a key's first published value is its
/// <see cref="Slot"/> itself (one object a key, not two).
/// </summary>
internal class ValueVersion
{
    private readonly int _length;
    private byte _crcCheck;
    private short _namespace = -1;

    public ValueVersion(long offset, long length)
    {
        Offset = offset;
        _length = checked((int)length);
    }

    /// <summary>A copy of <paramref name="from"/>'s fields (a slot taking over its first version).</summary>
    protected ValueVersion(ValueVersion from)
    {
        Offset = from.Offset;
        _length = from._length;
        _crcCheck = Volatile.Read(ref from._crcCheck);
        _namespace = from._namespace;
        Crc32C = from.Crc32C;
        Sequence = from.Sequence;
        LeaseCount = from.LeaseCount;
        State = from.State;
    }

    public long Offset { get; }

    public long Length => _length;

    public uint Crc32C { get; set; }

    /// <summary>
    /// True while <see cref="Crc32C"/> is the writer's claim (a PUT with VALUE_CRC), not yet checked against the bytes,
    /// or owed (<see cref="CrcOwed"/>): the first reader or tier write checks it (see <see cref="TieredStore"/>).
    /// Read and cleared outside the lock; setting it keeps an owed CRC owed.
    /// </summary>
    public bool CrcUnchecked
    {
        get => Volatile.Read(ref _crcCheck) != (byte)CrcCheck.Checked;
        set => Volatile.Write(ref _crcCheck, (byte)(!value ? CrcCheck.Checked : CrcOwed ? CrcCheck.Owed : CrcCheck.Claimed));
    }

    /// <summary>
    /// With <see cref="CrcUnchecked"/>: there is no claim to check — the writer sent none (a shared-memory COMMIT from a
    /// client that proved it maps the arena) and the node owes the CRC, computed from the bytes at the first read or tier
    /// write. Set before publication; reads false again once a reader has computed the CRC (then <see cref="Crc32C"/> is it).
    /// </summary>
    public bool CrcOwed
    {
        get => Volatile.Read(ref _crcCheck) == (byte)CrcCheck.Owed;
        set => Volatile.Write(ref _crcCheck, (byte)(value ? CrcCheck.Owed : CrcCheck.Checked));
    }

    /// <summary>The write's place in the node's order of writes (<see cref="Tiers.VersionClock"/>); larger is newer. 0 before publication.</summary>
    public long Sequence { get; set; }

    public int LeaseCount { get; set; }

    /// <summary>The namespace whose budget counts this version's length (index into the store's quotas); -1: none or no longer counted.</summary>
    public int Namespace
    {
        get => _namespace;
        set => _namespace = checked((short)value);
    }

    public VersionState State { get; set; }
}

/// <summary>A value staged outside the arena, for a cold read (<see cref="StagingArea"/>): its space goes back to <see cref="Owner"/>.</summary>
internal sealed class StagedVersion(long offset, long length, StagingArea owner) : ValueVersion(offset, length)
{
    public StagingArea Owner { get; } = owner;
}
