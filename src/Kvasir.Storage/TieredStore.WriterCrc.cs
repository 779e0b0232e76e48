using Kvasir.Protocol;
namespace Kvasir.Storage;

/// <summary>
/// Values whose CRC-32C the writer computed (a PUT with VALUE_CRC): the node stores the writer's CRC without
/// recomputing it on the receive path, and checks it once, lazily — before the value's first tier write (disk at
/// commit, the shared tier when it is queued) and before its first read. A value that fails the check is dropped and
/// counted: never written below DRAM, never served.
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
    /// Checks a leased value whose CRC is still the writer's claim. True when it matches (or was checked before); on a
    /// mismatch the lease is released, the value removed (unless a newer write replaced it) and counted, and false
    /// returned. Two readers may both check the same value; the result is the same.
    /// </summary>
    private bool CheckWriterCrc(ReadOnlySpan<byte> key, ValueLease lease)
    {
        var version = lease.Version;
        if (!version.CrcUnchecked) return true;
        if (Crc32C.Compute(lease.Span) == version.Crc32C)
        {
            version.CrcUnchecked = false;
            return true;
        }
        _dram.Release(lease);
        if (_dram.RemoveVersion(key, version)) Interlocked.Increment(ref _crcMismatches);
        return false;
    }
}
