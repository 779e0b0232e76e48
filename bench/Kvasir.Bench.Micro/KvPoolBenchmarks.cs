using BenchmarkDotNet.Attributes;
using Kvasir.Prefix;

namespace Kvasir.Bench.Micro;

/// <summary>
/// KvPool (issue 14): one alloc + free pair, alone and with 8 threads doing the same at once on one pool (the pool
/// takes one lock per call, so this measures its contention). Token-range mode and block mode.
/// </summary>
[MemoryDiagnoser]
public class KvPoolBenchmarks
{
    private const int PairsPerThread = 10_000;
    private KvPool _pool = null!;

    [Params(false, true)]
    public bool Blocks { get; set; }

    [GlobalSetup]
    public void Setup() => _pool = new KvPool(new KvPoolOptions { MaxTokens = 1 << 20, BytesPerToken = 128, MaxBytes = 128L << 20, BlockSize = Blocks ? 16 : null });

    [Benchmark(Description = "Alloc + free, 1 thread")]
    public bool AllocFree() => _pool.Free(_pool.Alloc(64));

    [Benchmark(Description = "Alloc + free, 8 threads (per pair)", OperationsPerInvoke = 8 * PairsPerThread)]
    public void AllocFree8Threads()
    {
        var threads = new Thread[8];
        for (int t = 0; t < threads.Length; t++)
        {
            threads[t] = new Thread(() =>
            {
                for (int i = 0; i < PairsPerThread; i++) _pool.Free(_pool.Alloc(64));
            });
            threads[t].Start();
        }
        foreach (var thread in threads) thread.Join();
    }
}
