using BenchmarkDotNet.Attributes;
using Kvasir.Protocol;

namespace Kvasir.Bench.Micro;

/// <summary>
/// CRC-32C of one buffer. Throughput = Size / Mean (bytes per nanosecond = GB/s); the Size column is in bytes.
/// </summary>
/// <remarks>
/// The baseline is the fallback for CPUs without PCLMULQDQ (three crc32 stripes from 3 KiB, one chain below), which was
/// also every call's path before carry-less folding. Successive calls are
/// independent, so for small sizes the core overlaps them and the mean is a throughput, not a latency. On a shared
/// machine prefer <see cref="Crc32CThroughput"/> (`-- crc`), which interleaves the candidates.
/// </remarks>
[MemoryDiagnoser]
public class Crc32CBenchmarks
{
    private byte[] _data = null!;

    [Params(64, 4 << 10, 64 << 10, 1 << 20, 4 << 20)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = GC.AllocateUninitializedArray<byte>(Size, pinned: true);
        new Random(11).NextBytes(_data);
        if (Compute() != Striped())
        {
            throw new InvalidOperationException("the CRC-32C paths disagree");
        }
    }

    [Benchmark(Description = "Crc32C.Compute")]
    public uint Compute() => Crc32C.Compute(_data);

    [Benchmark(Baseline = true, Description = "striped fallback (no PCLMULQDQ)")]
    public uint Striped() => Crc32C.Complete(Crc32C.AppendStriped(Crc32C.InitialState, _data));
}
