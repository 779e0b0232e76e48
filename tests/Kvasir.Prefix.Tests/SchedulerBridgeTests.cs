namespace Kvasir.Prefix.Tests;

public sealed class SchedulerBridgeTests : PoolLeakCheck
{
    private const int B = 4;

    private (SchedulerBridge Bridge, KvPool Pool) NewBridge(int poolBlocks, int cacheBlocks = 100)
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = poolBlocks * B, BlockSize = B, BytesPerToken = 2 });
        return (new SchedulerBridge(pool, new PrefixCache<KvHandle>(new PrefixCacheOptions { BlockSize = B, MaxCachedBlocks = cacheBlocks })), pool);
    }

    private static long[] Seq(int count, int start = 0) => Enumerable.Range(start, count).Select(i => (long)i).ToArray();

    [Fact]
    public void A_small_engine_loop_reuses_a_shared_prefix_and_returns_the_pool_to_zero()
    {
        var (bridge, pool) = NewBridge(poolBlocks: 32);
        var system = Seq(8);                                       // a shared 2-block system prompt
        var a = system.Concat(Seq(6, 100)).ToList();               // 14 tokens: 3 full blocks + 2
        var b = system.Concat(Seq(5, 200)).ToList();               // 13 tokens

        // Step 1: prefill A. Nothing cached: all 14 tokens computed into 4 blocks.
        var plan = bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Prefill)]);
        var pa = plan.For("a");
        Assert.Equal((0L, 14L), (pa.CachedTokens, pa.ComputeTokens));
        Assert.Equal(4, pa.BlocksToCompute.Count);
        Assert.Equal(3, plan.Saves.Count());
        Assert.Equal(1, plan.Lookups);
        bridge.Complete(plan);
        Assert.Equal(3, bridge.Cache.Count);

        // Step 2: A decodes two tokens (fills block 3, 16 tokens), B arrives with higher priority.
        a.AddRange([900, 901]);
        plan = bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Decode), new ScheduledRequest("b", b.ToArray(), RequestPhase.Prefill, Priority: 5)]);
        Assert.Equal("b", plan.Requests[0].RequestId);
        var pb = plan.For("b");
        Assert.Equal(8, pb.LocalTokens);
        Assert.Equal(5, pb.ComputeTokens);
        Assert.Equal(2, pb.BlocksToCompute.Count);
        var pa2 = plan.For("a");
        Assert.Equal(2, pa2.ComputeTokens);
        Assert.Empty(pa2.Allocated);                                 // 16 tokens still fit 4 blocks
        Assert.Single(pa2.Inserts);                                  // block 3 is now full
        bridge.Complete(plan);

        // Step 3: A decodes into a fifth block; B finishes; A is preempted.
        a.Add(902);
        plan = bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Decode), new ScheduledRequest("b", b.ToArray(), RequestPhase.Finished)]);
        Assert.Single(plan.For("a").Allocated);
        Assert.Equal(4, plan.For("b").Freed.Count);
        bridge.Complete(plan);
        plan = bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Preempted)]);
        Assert.Equal(5, plan.Frees.Count());
        Assert.Equal(0, bridge.ActiveRequests);

        // A comes back: its four full blocks are still cached; only the tail is computed.
        plan = bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Prefill)]);
        Assert.Equal((16L, 1L), (plan.For("a").CachedTokens, plan.For("a").ComputeTokens));
        bridge.Complete(plan);
        bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Finished)]);

        Assert.True(bridge.ReleaseCache() > 0);
        Assert.Equal(0, bridge.Cache.Count);
        Assert.Equal(0, pool.UsedTokens);
    }

    [Fact]
    public void A_full_pool_evicts_cached_blocks_then_defers_what_still_does_not_fit()
    {
        var (bridge, pool) = NewBridge(poolBlocks: 4);
        var plan = bridge.Plan([new ScheduledRequest("a", Seq(16), RequestPhase.Prefill)]);
        bridge.Complete(plan);
        bridge.Plan([new ScheduledRequest("a", Seq(16), RequestPhase.Finished)]);
        Assert.Equal(4, bridge.Cache.Count);                         // the pool is all cache now
        plan = bridge.Plan([new ScheduledRequest("b", Seq(8, 500), RequestPhase.Prefill)]);
        Assert.False(plan.For("b").Deferred);
        Assert.Equal(2, bridge.Cache.Count);                         // two cached blocks made room
        plan = bridge.Plan([new ScheduledRequest("c", Seq(40, 900), RequestPhase.Prefill)]);
        Assert.True(plan.For("c").Deferred);
        Assert.Equal(2, bridge.Cache.Count);                         // deferred before evicting anything
        Assert.Equal(16, pool.UsedTokens);
        bridge.Plan([new ScheduledRequest("b", Seq(8, 500), RequestPhase.Finished)]);
        bridge.ReleaseCache();
    }

    [Fact]
    public void A_step_looks_up_all_its_new_prompts_at_once_with_what_one_lookup_each_finds()
    {
        var (bridge, pool) = NewBridge(poolBlocks: 32);
        var system = Seq(8);                                          // a 2-block prefix every prompt shares
        var plan = bridge.Plan([new ScheduledRequest("a", system, RequestPhase.Prefill)]);
        bridge.Complete(plan);
        bridge.Plan([new ScheduledRequest("a", system, RequestPhase.Finished)]);
        long before = bridge.Cache.GetStats().Lookups;
        plan = bridge.Plan([
            new ScheduledRequest("b", [.. system, .. Seq(6, 100)], RequestPhase.Prefill),
            new ScheduledRequest("c", Seq(12, 300), RequestPhase.Prefill, Priority: 2),
            new ScheduledRequest("d", system[..4], RequestPhase.Prefill, Priority: 1),
        ]);
        Assert.Equal(3, plan.Lookups);
        Assert.Equal(before + 3, bridge.Cache.GetStats().Lookups);    // one lookup each, none repeated
        Assert.Equal((8L, 6L), (plan.For("b").LocalTokens, plan.For("b").ComputeTokens));
        Assert.Equal((0L, 12L), (plan.For("c").LocalTokens, plan.For("c").ComputeTokens));
        Assert.Equal((4L, 0L), (plan.For("d").LocalTokens, plan.For("d").ComputeTokens));
        var shared = bridge.Cache.ComputeBlockHashes(system);
        Assert.Equal((2, 1), (bridge.Cache.PinCount(shared[0]), bridge.Cache.PinCount(shared[1])));   // b and d; b
        bridge.Complete(plan);
        bridge.Plan([new ScheduledRequest("b", [], RequestPhase.Finished), new ScheduledRequest("c", [], RequestPhase.Finished), new ScheduledRequest("d", [], RequestPhase.Finished)]);
        bridge.ReleaseCache();
        Assert.Equal(0, pool.UsedTokens);
    }

    [Fact]
    public void A_prefix_looked_up_with_the_step_and_then_evicted_by_an_earlier_admission_is_looked_up_again()
    {
        // The step's prompts are looked up together before any admission allocates. Here the first admission (higher
        // priority) needs a cached block's room, evicts part of the later prompt's prefix, and the later prompt finds
        // out when it pins: it looks up again and plans from what is still cached.
        var (bridge, pool) = NewBridge(poolBlocks: 8);
        var system = Seq(8);
        var plan = bridge.Plan([new ScheduledRequest("a", system, RequestPhase.Prefill)]);
        bridge.Complete(plan);
        bridge.Plan([new ScheduledRequest("a", system, RequestPhase.Finished)]);
        Assert.Equal(2, bridge.Cache.Count);                          // 6 pool blocks free, 2 cached
        long before = bridge.Cache.GetStats().Lookups;
        plan = bridge.Plan([
            new ScheduledRequest("y", [.. system, .. Seq(4, 900)], RequestPhase.Prefill),
            new ScheduledRequest("x", Seq(28, 500), RequestPhase.Prefill, Priority: 5),   // 7 blocks: one cached block must go
        ]);
        Assert.False(plan.For("x").Deferred);
        Assert.Equal(7, plan.For("x").Allocated.Count);
        Assert.Equal(1, bridge.Cache.Count);
        Assert.Equal(2, plan.Lookups);
        Assert.Equal(before + 3, bridge.Cache.GetStats().Lookups);    // y's looked up again after its prefix lost a block
        Assert.True(plan.For("y").Deferred);                          // no room left for y's other blocks
        Assert.Equal(0, bridge.Cache.GetStats().PinnedBlocks);        // the deferred request holds nothing
        bridge.Complete(plan);
        bridge.Plan([new ScheduledRequest("x", [], RequestPhase.Finished)]);
        bridge.ReleaseCache();
        Assert.Equal(0, pool.UsedTokens);
    }

    [Fact]
    public void A_pool_of_another_block_size_is_ConfigInvalid()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 64, BlockSize = 8 });
        Assert.Throws<ConfigInvalidException>(() => new SchedulerBridge(pool, new PrefixCache<KvHandle>(new PrefixCacheOptions { BlockSize = 4 })));
    }

    [Fact]
    public void Under_chainlfu_a_block_filled_while_decoding_continues_the_requests_chain_so_the_chain_goes_from_its_tail()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 64 * B, BlockSize = B, BytesPerToken = 2 });
        var cache = new PrefixCache<KvHandle>(new PrefixCacheOptions { BlockSize = B, MaxCachedBlocks = 100, Policy = EvictionManager.CreatePolicy("chainlfu") });
        var bridge = new SchedulerBridge(pool, cache);
        var a = Seq(2 * B).ToList();
        var plan = bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Prefill)]);
        bridge.Complete(plan);                                        // blocks 0 and 1, one insert: a chain
        a.AddRange(Seq(B, 500));
        plan = bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Decode)]);
        var third = Assert.Single(plan.For("a").Inserts).Hash;       // block 2 filled while decoding
        bridge.Complete(plan);
        bridge.Complete(bridge.Plan([new ScheduledRequest("a", a.ToArray(), RequestPhase.Finished)]));

        // Block 2 continues block 1, so block 1 is not the chain's tail: the tail goes first, and what stays is reachable.
        var evicted = Assert.Single(cache.Evict(1));
        pool.Free(evicted.Value);                                     // the cache's reference (the bridge frees what its inserts evict)
        Assert.Equal(third, evicted.Key);
        Assert.Equal(2, cache.Lookup(cache.ComputeBlockHashes(a.ToArray())).NumBlocks);
        foreach (var (_, handle) in cache.Evict(cache.Count)) pool.Free(handle);
    }
}
