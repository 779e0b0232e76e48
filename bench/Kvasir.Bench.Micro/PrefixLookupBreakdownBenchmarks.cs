using BenchmarkDotNet.Attributes;
using Kvasir.Prefix;

namespace Kvasir.Bench.Micro;

/// <summary>
/// Where a PrefixCache lookup's cost goes as the cache grows (issue 14): the same shuffled 16-block chain lookups as
/// <see cref="PrefixCacheBenchmarks"/>, under LRU (a hit moves blocks in the eviction order) and FIFO (a hit moves
/// nothing), and a probe of the chain's first block alone (<see cref="PrefixCache{TBlock}.TryGet"/>: one index bucket and
/// one entry, the hash table's floor). LRU minus FIFO is the order upkeep; FIFO minus the probe is the walk along the
/// chain, the result arrays and the counters. Per block (OperationsPerInvoke = 16) so the columns add up.
/// </summary>
[MemoryDiagnoser]
public class PrefixLookupBreakdownBenchmarks
{
    private const int ChainBlocks = 16;
    private PrefixCache<int> _cache = null!;
    private BlockHash[][] _chains = null!;
    private int[] _order = null!;
    private int _next;

    [Params(1_000, 100_000, 1_000_000)]
    public int CachedBlocks { get; set; }

    [Params("lru", "fifo")]
    public string Policy { get; set; } = "lru";

    [GlobalSetup]
    public void Setup()
    {
        _cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 16, MaxCachedBlocks = CachedBlocks, Policy = EvictionManager.CreatePolicy(Policy) });
        var values = new int[ChainBlocks];
        _chains = new BlockHash[CachedBlocks / ChainBlocks][];
        for (int c = 0; c < _chains.Length; c++)
        {
            _chains[c] = _cache.ComputeBlockHashes(Enumerable.Range(c * 1000, ChainBlocks * 16).ToArray());
            _cache.Insert(_chains[c], values);
        }
        _order = Enumerable.Range(0, _chains.Length).ToArray();
        new Random(42).Shuffle(_order);
    }

    [Benchmark(Description = "Lookup of a cached 16-block chain", OperationsPerInvoke = ChainBlocks)]
    public long Lookup() => _cache.Lookup(_chains[_order[_next++ % _order.Length]]).NumTokens;

    [Benchmark(Description = "Probe of the chain's first block only", OperationsPerInvoke = ChainBlocks)]
    public bool FirstBlockProbe() => _cache.TryGet(_chains[_order[_next++ % _order.Length]][0], out _);
}
