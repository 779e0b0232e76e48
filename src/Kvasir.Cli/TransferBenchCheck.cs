using Kvasir.Protocol;

namespace Kvasir.Cli;

/// <summary>
/// How a transfer-bench cell checks its transfers: after the warm-up, window 0 of the initiator's region gets a
/// pattern seed that neither it nor the destination window holds (the destination's CRC-32C says so), so the CRC-32Cs
/// of the two windows agree after the measured transfers only if they moved the bytes: a write must have brought the
/// new bytes to the destination, a read must have replaced them with the destination's. The destination is the other
/// engine's region in one process, a <c>--listen</c> target's across two (its CRC asked for over a notification).
/// </summary>
public sealed class TransferBenchCheck(BenchMemory source, Func<long, int, Task<uint>> destinationChecksum)
{
    private int _seed = Random.Shared.Next(1, 251);

    /// <summary>Makes the check of the next transfers of <paramref name="length"/> bytes able to fail (see the class).</summary>
    public async Task ArmAsync(int length)
    {
        uint there = await destinationChecksum(0, length);
        for (int attempt = 0; attempt < 3; attempt++)
        {
            _seed = _seed % 250 + 1;   // 1..250: never the pattern a target starts with, and never the last cell's
            source.FillPattern(0, length, _seed);
            if (Crc32C.Compute(source.Span(0, length)) != there) return;
        }
        throw new InvalidOperationException($"cannot give the source window of {length} bytes a CRC-32C the destination does not have");
    }

    /// <summary>Whether the source and destination windows of <paramref name="length"/> bytes now hold the same bytes (by CRC-32C).</summary>
    public async Task<bool> HoldsAsync(int length) => await destinationChecksum(0, length) == Crc32C.Compute(source.Span(0, length));
}
