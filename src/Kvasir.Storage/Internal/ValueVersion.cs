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

/// <summary>
/// One stored value: an allocation in the arena plus its metadata (56 bytes an object). Mutated only under the store's
/// lock. A value staged outside the arena is a <see cref="StagedVersion"/>.
/// </summary>
internal class ValueVersion(long offset, long length)
{
    public long Offset { get; } = offset;

    public long Length { get; } = length;

    public uint Crc32C { get; set; }

    /// <summary>
    /// True while <see cref="Crc32C"/> is the writer's claim (a PUT with VALUE_CRC), not yet checked against the bytes:
    /// the first reader or tier write checks it (see <see cref="TieredStore"/>). Read and cleared outside the lock.
    /// </summary>
    public bool CrcUnchecked
    {
        get => Volatile.Read(ref _crcUnchecked);
        set => Volatile.Write(ref _crcUnchecked, value);
    }

    private bool _crcUnchecked;

    /// <summary>
    /// With <see cref="CrcUnchecked"/>: there is no claim to check — the writer sent none (a shared-memory COMMIT from a
    /// client that proved it maps the arena) and the node owes the CRC, computed from the bytes at the first read or tier
    /// write. Set before publication, never changed after.
    /// </summary>
    public bool CrcOwed { get; set; }

    /// <summary>The write's place in the node's order of writes (<see cref="Tiers.VersionClock"/>); larger is newer. 0 before publication.</summary>
    public long Sequence { get; set; }

    public int LeaseCount { get; set; }

    /// <summary>The namespace whose budget counts this version's length (index into the store's quotas); -1: none or no longer counted.</summary>
    public int Namespace { get; set; } = -1;

    public VersionState State { get; set; }
}

/// <summary>A value staged outside the arena, for a cold read (<see cref="StagingArea"/>): its space goes back to <see cref="Owner"/>.</summary>
internal sealed class StagedVersion(long offset, long length, StagingArea owner) : ValueVersion(offset, length)
{
    public StagingArea Owner { get; } = owner;
}
