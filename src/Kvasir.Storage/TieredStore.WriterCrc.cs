using Kvasir.Protocol;
namespace Kvasir.Storage;

/// <summary>
/// Values whose CRC-32C the writer computed (a PUT with VALUE_CRC): the node stores the writer's CRC without
/// recomputing it on the receive path, and checks it once, lazily — before the value's first tier write (disk at
/// commit, the shared tier when it is queued) and before its first read. A value that fails the check is dropped and
/// counted: never written below DRAM, never served. A shared-memory COMMIT without a CRC from a client that proved it
/// maps the arena (<see cref="CommitCrcOwedAsync"/>) is the other lazy case: the node computes the CRC at that same first
/// read or tier write, instead of on the COMMIT's path.
/// </summary>
public sealed partial class TieredStore
{
    private long _crcMismatches;

    /// <summary>Values dropped because their bytes did not match the CRC-32C their writer sent (STATS <c>crc_mismatches</c>).</summary>
    public long CrcMismatches => Interlocked.Read(ref _crcMismatches);

    /// <summary>
    /// Marks the reservation's CRC as the writer's. With a disk tier the value crosses a tier boundary at once, so it is
    /// checked here: false (the reservation aborted, the mismatch counted) when the bytes do not match.
    /// </summary>
    private bool AcceptWriterCrc(Reservation reservation, uint crc32c)
    {
        if (_disk is null)
        {
            reservation.Version.CrcUnchecked = true;
            return true;
        }
        if (Crc32C.Compute(reservation.Span) == crc32c) return true;
        _dram.Abort(reservation);
        Interlocked.Increment(ref _crcMismatches);
        return false;
    }

    /// <summary>
    /// Stores a filled reservation whose CRC-32C nobody has computed yet: with a disk tier it is computed now (the value
    /// crosses a tier boundary at once); otherwise the value is published with its CRC owed, computed from the bytes
    /// before the first read and before a shared-tier write. So the CRC covers the bytes as they are then: bytes changed
    /// in the arena after COMMIT and before that first read are served as changed. Only for writers that can write the
    /// arena at any time anyway (docs/protocol.md § Writes without the node's passes).
    /// </summary>
    /// <param name="reservation">Filled; its bytes must not change until the task completes.</param>
    /// <param name="chainParent">As for <see cref="CommitAsync"/>: the key whose block this one continues, or null.</param>
    /// <param name="publishAfter">As for <see cref="CommitAsync"/>: publish only after this task (a chain's previous value).</param>
    public Task<WireStatus> CommitCrcOwedAsync(Reservation reservation, byte[]? chainParent = null, Task? publishAfter = null)
    {
        ArgumentNullException.ThrowIfNull(reservation);
        if (_disk is not null) return CommitAsync(reservation, Crc32C.Compute(reservation.Span), chainParent, publishAfter);
        reservation.Version.CrcOwed = true;
        reservation.Version.CrcUnchecked = true;
        return CommitAsync(reservation, 0, chainParent, publishAfter);
    }

    /// <summary>
    /// Checks a leased value whose CRC is still the writer's claim. True when it matches (or was checked before); on a
    /// mismatch the lease is released, the value removed (unless a newer write replaced it) and counted, and false
    /// returned. Two readers may both check the same value; the result is the same.
    /// </summary>
    private bool CheckWriterCrc(ReadOnlySpan<byte> key, ValueLease lease)
    {
        var version = lease.Version;
        if (!version.CrcUnchecked) return true;
        uint actual = Crc32C.Compute(lease.Span);
        if (version.CrcOwed)
        {
            // Written outside the store's lock: a racing first reader computes and writes the same value; readers that
            // see CrcUnchecked false (a volatile read) see this CRC, and one that saw it unchecked but CrcOwed already
            // false compares against this CRC below and matches.
            version.Crc32C = actual;
            version.CrcUnchecked = false;
            return true;
        }
        if (actual == version.Crc32C)
        {
            version.CrcUnchecked = false;
            return true;
        }
        _dram.Release(lease);
        if (_dram.RemoveVersion(key, version)) Interlocked.Increment(ref _crcMismatches);
        return false;
    }
}
