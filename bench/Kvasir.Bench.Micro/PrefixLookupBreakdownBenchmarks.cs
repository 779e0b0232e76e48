using BenchmarkDotNet.Attributes;
using Kvasir.Prefix;

namespace Kvasir.Bench.Micro;

/// <summary>
/// Where a PrefixCache lookup's cost goes as the cache grows (issue 14): the same shuffled 16-block chain lookups as
/// <see cref="PrefixCacheBenchmarks"/>, under LRU (a hit moves blocks in the eviction order) and FIFO (a hit moves
/// nothing), and a probe of the chain's first block alone (<see cref="PrefixCache{TBlock}.TryGet"/>: one index bucket and
/// one entry, the hash table's floor). LRU minus FIFO is the order upkeep; FIFO minus the probe is the walk along the
/// chain, the result arrays and the counters. Per block (OperationsPerInvoke = 16) so the columns add up.
/// The chains are looked up in a shuffled order, but their hash arrays are copies laid out in that order, one after
/// the other (<see cref="Queries"/>), so the bench reads its own queries sequentially: an engine's freshly computed
/// hashes are in cache, and a bench that fetched each chain's array from a random place in 32 MB (as it did up to
/// session 6) added a far read of its own to every lookup at 1M.
/// </summary>
[MemoryDiagnoser]
public class PrefixLookupBreakdownBenchmarks
{
    private const int ChainBlocks = 16;
    private PrefixCache<int> _cache = null!;
    private BlockHash[][] _queries = null!;
    private BlockHash[][][] _groups8 = null!, _groups32 = null!;
    private int _next;

    [Params(1_000, 100_000, 1_000_000)]
    public int CachedBlocks { get; set; }

    [Params("lru", "fifo")]
    public string Policy { get; set; } = "lru";

    /// <summary>Blocks a chain (16 in the BenchmarkDotNet runs, whose per-block division is fixed at compile time; <c>prefix-cpu</c> may set others).</summary>
    public int ChainLength { get; set; } = ChainBlocks;

    /// <summary>Whether <see cref="LookupMany8"/> / <see cref="LookupMany32"/> have a full batch to look up (not when few long chains fill the cache).</summary>
    public bool HasBatches8 => _groups8.Length > 0;

    public bool HasBatches32 => _groups32.Length > 0;

    [GlobalSetup]
    public void Setup()
    {
        _cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 16, MaxCachedBlocks = CachedBlocks, Policy = EvictionManager.CreatePolicy(Policy) });
        var values = new int[ChainLength];
        var chains = new BlockHash[CachedBlocks / ChainLength][];
        for (int c = 0; c < chains.Length; c++)
        {
            chains[c] = _cache.ComputeBlockHashes(Enumerable.Range(c * 1000, ChainLength * 16).ToArray());
            _cache.Insert(chains[c], values);
        }
        _queries = Queries(chains, new Random(42));
        _groups8 = FullBatches(8);
        _groups32 = FullBatches(32);
    }

    /// <summary>
    /// <paramref name="chains"/> in a shuffled order, each a new copy allocated right after the one before (so they lie
    /// in memory in the order they are looked up, and reading query k+1 after query k is a sequential read).
    /// </summary>
    public static BlockHash[][] Queries(BlockHash[][] chains, Random random)
    {
        var order = Enumerable.Range(0, chains.Length).ToArray();
        random.Shuffle(order);
        var queries = new BlockHash[chains.Length][];
        for (int k = 0; k < order.Length; k++) queries[k] = (BlockHash[])chains[order[k]].Clone();
        GC.Collect();   // compacts them together, in allocation order, out of the allocation area
        return queries;
    }

    [Benchmark(Description = "Lookup of a cached 16-block chain", OperationsPerInvoke = ChainBlocks)]
    public long Lookup() => _cache.Lookup(_queries[_next++ % _queries.Length]).NumTokens;

    [Benchmark(Description = "LookupMany of 8 cached 16-block chains", OperationsPerInvoke = ChainBlocks * 8)]
    public long LookupMany8() => LookupMany(_groups8);

    [Benchmark(Description = "LookupMany of 32 cached 16-block chains", OperationsPerInvoke = ChainBlocks * 32)]
    public long LookupMany32() => LookupMany(_groups32);

    /// <summary>The queries in batches of <paramref name="size"/> chains, a shorter last one left out (1,000 blocks are 62 chains: one batch of 32).</summary>
    private BlockHash[][][] FullBatches(int size) => _queries.Chunk(size).Where(batch => batch.Length == size).ToArray();

    /// <summary>One <see cref="PrefixCache{TBlock}.LookupMany"/> of the next batch of <paramref name="groups"/>.</summary>
    private long LookupMany(BlockHash[][][] groups)
    {
        long tokens = 0;
        foreach (var match in _cache.LookupMany(groups[_next++ % groups.Length])) tokens += match.NumTokens;
        return tokens;
    }

    [Benchmark(Description = "Probe of the chain's first block only", OperationsPerInvoke = ChainBlocks)]
    public bool FirstBlockProbe() => _cache.TryGet(_queries[_next++ % _queries.Length][0], out _);
}
