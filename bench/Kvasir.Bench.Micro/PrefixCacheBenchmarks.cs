using BenchmarkDotNet.Attributes;
using Kvasir.Prefix;

namespace Kvasir.Bench.Micro;

/// <summary>
/// PrefixCache (issue 14): lookup cost per block and insert throughput with 1k, 100k and 1M blocks cached. Both
/// must stay flat in the number of blocks cached (a dictionary probe and an O(1) LRU move per block).
/// Lookup walks a 16-block cached chain, chains taken in a shuffled order (a fixed seed) so that consecutive lookups
/// do not walk memory in insertion order (their hash arrays laid out in that order:
/// <see cref="PrefixLookupBreakdownBenchmarks.Queries"/>); insert adds a 16-block chain to a full cache, so each insert also evicts 16.
/// </summary>
[MemoryDiagnoser]
public class PrefixCacheBenchmarks
{
    private const int ChainBlocks = 16;
    private PrefixCache<int> _cache = null!;
    private BlockHash[][] _queries = null!;
    private BlockHash[][] _newChains = null!;
    private int[] _values = null!;
    private int _next;

    [Params(1_000, 100_000, 1_000_000)]
    public int CachedBlocks { get; set; }

    /// <summary>The cache's policy by name (<see cref="EvictionManager.CreatePolicy"/>); default LRU.</summary>
    public string Policy { get; set; } = "lru";

    [GlobalSetup]
    public void Setup()
    {
        _cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 16, MaxCachedBlocks = CachedBlocks, Policy = EvictionManager.CreatePolicy(Policy) });
        _values = new int[ChainBlocks];
        int chains = CachedBlocks / ChainBlocks;
        var cachedChains = new BlockHash[chains][];
        for (int c = 0; c < chains; c++)
        {
            cachedChains[c] = _cache.ComputeBlockHashes(Enumerable.Range(c * 1000, ChainBlocks * 16).ToArray());
            _cache.Insert(cachedChains[c], _values);
        }
        _queries = PrefixLookupBreakdownBenchmarks.Queries(cachedChains, new Random(42));
        // Twice the cache's worth of fresh chains, so every insert in a run is new (never an already cached chain).
        _newChains = new BlockHash[Math.Max(4096, 2 * chains)][];
        for (int c = 0; c < _newChains.Length; c++)
            _newChains[c] = _cache.ComputeBlockHashes(Enumerable.Range(2_000_000_000 + c * 1000, ChainBlocks * 16).ToArray());
    }

    [Benchmark(Description = "Lookup of a cached 16-block chain", OperationsPerInvoke = ChainBlocks)]
    public long LookupPerBlock() => _cache.Lookup(_queries[_next++ % _queries.Length]).NumTokens;

    [Benchmark(Description = "Insert of a new 16-block chain into a full cache (evicts 16)", OperationsPerInvoke = ChainBlocks)]
    public int InsertPerBlock() => _cache.Insert(_newChains[_next++ % _newChains.Length], _values).Inserted;

    [Benchmark(Description = "BlockHasher: 16 blocks of 16 tokens", OperationsPerInvoke = ChainBlocks)]
    public int HashPerBlock() => _cache.ComputeBlockHashes(Enumerable.Range(_next++, 256).ToArray()).Length;
}
