using Kvasir.Protocol;
using Microsoft.Extensions.Logging;

namespace Kvasir.Client.Internal;

/// <summary>
/// The GET-side end of the end-to-end checksum (<see cref="KvStoreOptions.VerifyValueCrc"/>): whether hits are checked
/// against the CRC-32C their node sent, and the mismatches seen. One per node transport; shared memory uses its TCP
/// transport's.
/// </summary>
internal sealed class ValueCheck(bool enabled, ILoggerFactory? loggers)
{
    private readonly ILogger? _log = loggers?.CreateLogger("Kvasir.Client");
    private long _mismatches;

    public bool Enabled { get; } = enabled;

    public long Mismatches => Interlocked.Read(ref _mismatches);

    /// <summary><see cref="Crc32C.Append"/> as one cached delegate, for <see cref="Kvasir.Net.BufferedReceiver"/>'s per-piece callback.</summary>
    public static readonly Func<uint, ReadOnlySpan<byte>, uint> Append = Crc32C.Append;

    /// <summary>
    /// True when the finished register <paramref name="state"/> matches the node's <paramref name="expected"/> CRC; else
    /// counts the mismatch and logs it once, at Warning.
    /// </summary>
    public bool Matches(uint state, uint expected, ReadOnlySpan<byte> key, long length, string node, KvTransportKind transport)
    {
        uint actual = Crc32C.Complete(state);
        if (actual == expected) return true;
        Interlocked.Increment(ref _mismatches);
        _log?.LogWarning("kvasir: CRC-32C mismatch on GET from {Node} over {Transport}: key {Key} ({Length} bytes) has CRC {Actual:x8}, the node sent {Expected:x8}; reported as ChecksumMismatch",
            node, transport, Convert.ToHexString(key[..Math.Min(key.Length, 64)]), length, actual, expected);
        return false;
    }
}
