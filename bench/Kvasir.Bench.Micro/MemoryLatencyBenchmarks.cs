using BenchmarkDotNet.Attributes;

namespace Kvasir.Bench.Micro;

/// <summary>
/// What one dependent random memory access costs on this machine, by working-set size: a pointer chase through one
/// random cycle over an int array (each load's address is the previous load's value, so nothing overlaps). The floor
/// under any structure that must touch a random place per block: PrefixCacheBenchmarks reads against it
/// (docs/benchmarks.md, issue 14).
/// </summary>
public class MemoryLatencyBenchmarks
{
    private const int Steps = 1 << 16;
    private int[] _next = null!;
    private int _at;

    /// <summary>Working set in KiB: 64 KiB (L1/L2), 1 MiB (L2), 16 MiB and 64 MiB (the last level or DRAM), 256 MiB.</summary>
    [Params(64, 1024, 16 * 1024, 64 * 1024, 256 * 1024)]
    public int KiB { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        // One cycle through all cache lines (Sattolo's shuffle), a line (16 ints) apart, so every step is a new line.
        int lines = KiB * 1024 / 64;
        var order = Enumerable.Range(0, lines).ToArray();
        var random = new Random(3);
        for (int i = lines - 1; i > 0; i--)
        {
            int j = random.Next(i);
            (order[i], order[j]) = (order[j], order[i]);
        }
        _next = new int[lines * 16];
        for (int i = 0; i < lines; i++) _next[order[i] * 16] = order[(i + 1) % lines] * 16;
    }

    [Benchmark(Description = "Dependent random load (pointer chase)", OperationsPerInvoke = Steps)]
    public int Chase()
    {
        int at = _at;
        var next = _next;
        for (int i = 0; i < Steps; i++) at = next[at];
        _at = at;
        return at;
    }
}
