using BenchmarkDotNet.Attributes;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Bench.Micro;

/// <summary>
/// CRC-32C of one buffer. Throughput = Size / Mean (bytes per nanosecond = GB/s); the Size column is in bytes.
/// </summary>
/// <remarks>
/// The baseline feeds the same bytes in pieces just under <see cref="Crc32C.InterleaveThreshold"/>, so it always takes
/// the single dependent chain: the ratio shows what the three-stripe path gains (or costs) at each size. Successive
/// calls are independent, so for small sizes the core overlaps them and the mean is a throughput, not a latency.
/// </remarks>
[MemoryDiagnoser]
public class Crc32CBenchmarks
{
    private const int Piece = Crc32C.InterleaveThreshold - 8;

    private byte[] _data = null!;

    [Params(64, 4 << 10, 64 << 10, 1 << 20)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = GC.AllocateUninitializedArray<byte>(Size, pinned: true);
        new Random(11).NextBytes(_data);
        if (Compute() != SingleChain())
        {
            throw new InvalidOperationException("the single-chain baseline disagrees with Crc32C.Compute");
        }
    }

    [Benchmark(Description = "Crc32C.Compute")]
    public uint Compute() => Crc32C.Compute(_data);

    [Benchmark(Baseline = true, Description = "single chain (pieces < threshold)")]
    public uint SingleChain()
    {
        uint state = Crc32C.InitialState;
        ReadOnlySpan<byte> data = _data;
        while (data.Length > Piece)
        {
            state = Crc32C.Append(state, data[..Piece]);
            data = data[Piece..];
        }

        return Crc32C.Complete(Crc32C.Append(state, data));
    }
}
