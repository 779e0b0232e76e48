namespace Kvasir.Prefix.Tests;

public sealed class PrefixCacheTests
{
    private static long[] Tokens(int count, int start = 0) => Enumerable.Range(start, count).Select(i => (long)i).ToArray();

    [Fact]
    public void The_sagellm_example_inserts_three_blocks_and_finds_all_48_tokens()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 16, MaxCachedBlocks = 100, EnableLru = true });
        var hashes = cache.ComputeBlockHashes(Tokens(48));
        Assert.Equal(3, hashes.Length);
        Assert.Equal(3, cache.Insert(hashes, [0, 1, 2]).Inserted);
        var (blocks, tokens) = cache.Lookup(hashes);
        Assert.Equal([0, 1, 2], blocks);
        Assert.Equal(48, tokens);
        Assert.Equal(1.0, cache.GetStats().HitRate);
        Assert.Equal("lru", cache.PolicyName);
        Assert.Equal(1.0, cache.GetStats().ToDictionary()["hit_rate"]);
    }

    [Fact]
    public void Lookup_stops_at_the_first_missing_block_and_counts_hit_and_miss_tokens()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 4 });
        var hashes = cache.ComputeBlockHashes(Tokens(16));
        cache.Insert([hashes[0], hashes[1], hashes[3]], [10, 11, 13]);
        var match = cache.Lookup(hashes);
        Assert.Equal(2, match.NumBlocks);
        Assert.Equal(8, match.NumTokens);
        Assert.Equal(hashes[..2], match.Hashes);
        var stats = cache.GetStats();
        Assert.Equal((1L, 8L, 8L), (stats.Lookups, stats.HitTokens, stats.MissTokens));
        Assert.Equal(0.5, stats.HitRate);
        Assert.Equal(0, new PrefixCache<int>().GetStats().HitRate);
    }

    [Fact]
    public void A_hash_already_cached_keeps_its_block_and_the_new_one_is_handed_back()
    {
        var cache = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 4 });
        var h = cache.ComputeBlockHashes(Tokens(4));
        cache.Insert(h, ["first"]);
        var result = cache.Insert(h, ["second"]);
        Assert.Equal(0, result.Inserted);
        Assert.Equal("second", Assert.Single(result.NotTaken).Value);
        Assert.Equal("first", cache.Get(h[0]));
        Assert.True(cache.TryGet(h[0], out var block) && block == "first");
        Assert.True(cache.Contains(h[0]));
        Assert.Equal(4, cache.BlockSize);
    }

    [Fact]
    public void Capacity_evicts_least_recently_used_first_and_reports_the_victims()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 3 });
        var h = cache.ComputeBlockHashes(Tokens(5));   // a chain of 5 one-token blocks
        cache.Insert(h[..3], [0, 1, 2]);
        cache.Lookup([h[0]]);                           // h0 is now the most recent
        var result = cache.Insert([h[3]], [3]);
        Assert.Equal(h[1], Assert.Single(result.Evicted).Key);
        Assert.Equal(3, cache.Count);
        Assert.Equal(1, cache.GetStats().Evictions);
        var fifo = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 3, EnableLru = false });
        fifo.Insert(h[..3], [0, 1, 2]);
        fifo.Lookup([h[0]]);
        Assert.Equal(h[0], Assert.Single(fifo.Insert([h[3]], [3]).Evicted).Key);
        Assert.Equal("fifo", fifo.PolicyName);
    }

    [Fact]
    public void Blocks_of_the_insert_itself_are_never_its_victims()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 2 });
        var h = cache.ComputeBlockHashes(Tokens(3));
        cache.Insert(h[..2], [0, 1]);
        var result = cache.Insert([h[0], h[2]], [0, 2]);   // h0 is oldest but part of this insert
        Assert.Equal(h[1], Assert.Single(result.Evicted).Key);
        Assert.True(cache.Contains(h[0]) && cache.Contains(h[2]));
    }

    [Fact]
    public void An_insert_longer_than_the_capacity_is_PrefixTooLong()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 2 });
        var h = cache.ComputeBlockHashes(Tokens(3));
        Assert.Equal("KV_PREFIX_TOO_LONG", Assert.Throws<PrefixTooLongException>(() => cache.Insert(h, [0, 1, 2])).Code);
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public void Pinned_blocks_are_not_evicted_and_a_full_pinned_cache_is_AllPinned()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 2 });
        var h = cache.ComputeBlockHashes(Tokens(4));
        cache.Insert(h[..2], [0, 1]);
        cache.Pin([h[0]]);
        Assert.Equal(h[1], Assert.Single(cache.Insert([h[2]], [2]).Evicted).Key);
        cache.Pin([h[2]]);
        Assert.Equal(1, cache.PinCount(h[2]));
        Assert.Equal("KV_ALL_PINNED", Assert.Throws<AllPinnedException>(() => cache.Insert([h[3]], [3])).Code);
        Assert.False(cache.Contains(h[3]));
        cache.Unpin([h[0], h[2]]);
        Assert.Equal("KV_REF_COUNT_UNDERFLOW", Assert.Throws<RefCountUnderflowException>(() => cache.Unpin([h[0]])).Code);
        Assert.Equal("KV_CACHE_MISS", Assert.Throws<CacheMissException>(() => cache.Pin([h[3]])).Code);
        Assert.Single(cache.Insert([h[3]], [3]).Evicted);
    }

    [Fact]
    public void Invalidate_removes_blocks_but_refuses_pinned_ones()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 2 });
        var h = cache.ComputeBlockHashes(Tokens(6));
        cache.Insert(h, [0, 1, 2]);
        cache.Pin([h[2]]);
        Assert.Equal("KV_HANDLE_PINNED", Assert.Throws<HandlePinnedException>(() => cache.Invalidate([h[1], h[2]])).Code);
        Assert.Equal(3, cache.Count);
        var removed = cache.Invalidate([h[1]]);
        Assert.Equal(1, Assert.Single(removed).Value);
        Assert.Equal(1, cache.Lookup(h).NumBlocks);   // the chain breaks at the invalidated block
        Assert.Equal(1, cache.GetStats().Invalidations);
        Assert.Equal("KV_CACHE_MISS", Assert.Throws<CacheMissException>(() => cache.Get(h[1])).Code);
        cache.Unpin([h[2]]);
    }

    [Fact]
    public void Evict_frees_unpinned_blocks_on_request_and_says_NoVictim_when_empty()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1 });
        var h = cache.ComputeBlockHashes(Tokens(2));
        cache.Insert(h, [0, 1]);
        Assert.Equal(2, cache.Evict(2).Count);
        Assert.Equal("KV_NO_VICTIM", Assert.Throws<NoVictimException>(() => cache.Evict(1)).Code);
    }

    [Fact]
    public void Re_inserting_an_evicted_block_counts_as_re_prefill()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 1 });
        var h = cache.ComputeBlockHashes(Tokens(2));
        cache.Insert([h[0]], [0]);
        cache.Insert([h[1]], [1]);
        cache.Insert([h[0]], [0]);
        Assert.Equal(1.0 / 3, cache.GetStats().RePrefillRate, 9);
    }

    [Fact]
    public async Task Store_calls_without_a_store_are_ConfigMissing_and_bad_settings_ConfigInvalid()
    {
        var cache = new PrefixCache<int>();
        Assert.False(cache.HasStore);
        Assert.Equal("KV_CONFIG_MISSING", (await Assert.ThrowsAsync<ConfigMissingException>(() => cache.LookupAsync([]))).Code);
        Assert.Throws<ConfigInvalidException>(() => new PrefixCache<int>(new PrefixCacheOptions { MaxCachedBlocks = 0 }));
        Assert.Throws<ConfigInvalidException>(() => new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 0 }));
    }

    [Fact]
    public void Lookups_and_inserts_from_many_threads_keep_the_cache_within_capacity()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 4, MaxCachedBlocks = 64 });
        var chains = Enumerable.Range(0, 32).Select(c => cache.ComputeBlockHashes(Tokens(32, c * 1000))).ToArray();
        Parallel.For(0, 8, t =>
        {
            var random = new Random(t);
            for (int i = 0; i < 5000; i++)
            {
                var chain = chains[random.Next(chains.Length)];
                var match = cache.Lookup(chain);
                cache.Insert(chain[match.NumBlocks..], Enumerable.Repeat(t, chain.Length - match.NumBlocks).ToArray());
                Assert.True(cache.Count <= 64);
            }
        });
        Assert.Equal(64, cache.Count);
    }
}
