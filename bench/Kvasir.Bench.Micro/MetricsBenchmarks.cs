using BenchmarkDotNet.Attributes;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Bench.Micro;

/// <summary>
/// What the data path pays for observability, per request: the plain interlocked counters (baseline),
/// the System.Diagnostics.Metrics record (two counters and the latency histogram, with the node's
/// Prometheus exporter listening, as it always is), and the heatmap's per-key count. None may allocate.
/// </summary>
[MemoryDiagnoser]
public class MetricsBenchmarks
{
    private CacheNode _node = null!;
    private byte[] _key = null!;

    [GlobalSetup]
    public void Setup()
    {
        _node = new CacheNode(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 } });
        _key = "layer12/block-000042/0123456789abcdef"u8.ToArray();
        _node.Metrics.Request(Opcode.Get, WireStatus.Ok, 16, 1000);   // the series exist before measuring
        _ = _node.Exporter.Render();
    }

    [GlobalCleanup]
    public void Cleanup() => _node.StopAsync().GetAwaiter().GetResult();

    [Benchmark(Baseline = true)]
    public void Counters() => _node.Counters.Request(Opcode.Get, 16);

    [Benchmark]
    public void MetricsRequest() => _node.Metrics.Request(Opcode.Get, WireStatus.Ok, 16, 12_345);

    [Benchmark]
    public void HeatmapKey() => _node.Heatmap.Record(_key);
}
