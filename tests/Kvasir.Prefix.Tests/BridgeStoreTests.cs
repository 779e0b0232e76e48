using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Prefix.Tests;

/// <summary>The scheduler bridge with the store below: a real node on 127.0.0.1 (port 0), two engines.</summary>
public sealed class BridgeStoreTests : PoolLeakCheck
{
    private const int B = 4, BlockBytes = 64;

    [Fact]
    public async Task PlanAsync_finds_blocks_another_engine_saved_on_the_node_and_plans_loads_for_them_not_compute()
    {
        var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 } });
        await using var _ = node;
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp });
        SchedulerBridge NewBridge() => new(NewPool(new KvPoolOptions { MaxTokens = 64 * B, BlockSize = B, BytesPerToken = 2 }),
            new PrefixCache<KvHandle>(new PrefixCacheOptions { BlockSize = B, MaxCachedBlocks = 100, Store = store }));
        var prompt = Enumerable.Range(0, 14).Select(i => (long)i * 3).ToArray();   // 3 full blocks and 2 tokens

        // Engine A computes the prompt, saves its full blocks to the node, finishes and drops its cache.
        var a = NewBridge();
        var plan = await a.PlanAsync([new ScheduledRequest("a", prompt, RequestPhase.Prefill)]);
        Assert.Equal((0L, 14L), (plan.For("a").CachedTokens, plan.For("a").ComputeTokens));
        var saves = plan.Saves.ToArray();
        Assert.Equal(3, saves.Length);
        await a.Cache.SaveAsync(saves.Select(s => s.Hash).ToArray(), saves.Select(s => (ReadOnlyMemory<byte>)TestValues.For(s.Hash.StoreKeyString, BlockBytes)).ToArray());
        a.Complete(plan);
        a.Plan([new ScheduledRequest("a", prompt, RequestPhase.Finished)]);
        a.ReleaseCache();

        // Engine B has nothing in its own memory: the bridge asks the node and plans three loads and the tail.
        var b = NewBridge();
        plan = await b.PlanAsync([new ScheduledRequest("b", prompt, RequestPhase.Prefill)]);
        var p = plan.For("b");
        Assert.Equal((0L, 12L, 2L), (p.LocalTokens, p.CachedTokens, p.ComputeTokens));
        Assert.Equal(saves.Select(s => s.Hash), p.BlocksToLoad.Select(l => l.Hash));
        Assert.Single(p.BlocksToCompute);
        Assert.Empty(plan.Saves);   // loaded blocks are not saved again
        var buffers = p.BlocksToLoad.Select(_ => new byte[BlockBytes]).ToArray();
        Assert.Equal(3, await b.Cache.LoadAsync(p.BlocksToLoad.Select(l => l.Hash).ToArray(), buffers.Select(x => (Memory<byte>)x).ToArray()));
        for (int i = 0; i < buffers.Length; i++)
            Assert.True(TestValues.Matches(buffers[i], TestValues.Key(p.BlocksToLoad[i].Hash.StoreKeyString)), $"block {i}: not the bytes engine A saved");
        b.Complete(plan);
        b.Plan([new ScheduledRequest("b", prompt, RequestPhase.Finished)]);
        b.ReleaseCache();
    }
}
