using BenchmarkDotNet.Attributes;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Bench.Micro;

/// <summary>
/// What zeroing a shared-memory reservation at ALLOC costs (issue 16), next to the CRC-32C pass every COMMIT already
/// makes over the same bytes: the choice was between zeroing (no protocol change) and making COMMIT carry the
/// writer's CRC (a wire change in both clients). Sizes are a KV block (64 KiB), a large block (1 MiB) and a batch
/// value (16 MiB), all outside the caches after the first touch only for the largest.
/// </summary>
public class AllocZeroingBenchmarks
{
    private byte[] _data = null!;

    [Params(64 << 10, 1 << 20, 16 << 20)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = GC.AllocateUninitializedArray<byte>(Size, pinned: true);
        new Random(5).NextBytes(_data);
    }

    [Benchmark(Baseline = true, Description = "CRC-32C at COMMIT")]
    public uint Crc() => Crc32C.Compute(_data);

    [Benchmark(Description = "zeroing at ALLOC")]
    public void Zero() => Array.Clear(_data);
}
