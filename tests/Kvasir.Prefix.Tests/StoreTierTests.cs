using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Prefix.Tests;

/// <summary>The store as the tier below, with a real node on 127.0.0.1 (port 0) over TCP.</summary>
public sealed class StoreTierTests
{
    private const int BlockBytes = 4096;

    private static async Task<(TestNode Node, KvStore Store)> StartAsync()
    {
        var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 } });
        var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp });
        return (node, store);
    }

    private static byte[] Kv(BlockHash hash) => TestValues.For(hash.StoreKeyString, BlockBytes);

    [Fact]
    public async Task A_prefix_evicted_locally_is_found_on_the_node_and_loaded_byte_exact()
    {
        var (node, store) = await StartAsync();
        await using var _ = node;
        await using var __ = store;
        var cache = new PrefixCache<byte[]>(new PrefixCacheOptions { BlockSize = 16, MaxCachedBlocks = 4, Store = store, ExtraKeys = ["model-a"] });
        var prompt = Enumerable.Range(0, 64).Select(i => (long)i * 7).ToArray();
        var hashes = cache.ComputeBlockHashes(prompt);
        Assert.Equal(4, hashes.Length);

        // Compute the prefix, cache it in engine memory and save it to the node.
        var values = hashes.Select(Kv).ToArray();
        cache.Insert(hashes, values);
        await cache.SaveAsync(hashes, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray());

        // Another prompt fills the engine cache: the first prefix leaves engine memory.
        var other = cache.ComputeBlockHashes(Enumerable.Range(10_000, 64).Select(i => (long)i).ToArray());
        var evicted = cache.Insert(other, other.Select(Kv).ToArray()).Evicted;
        Assert.True(evicted.Select(e => e.Key).ToHashSet().SetEquals(hashes), "the first prefix's four blocks are the ones evicted");
        Assert.Equal(0, cache.Lookup(hashes).NumBlocks);

        // Lookup through the store: nothing local, all 64 tokens on the node.
        var found = await cache.LookupAsync(hashes);
        Assert.Equal((0L, 64L, 64L), (found.LocalTokens, found.StoreTokens, found.TotalTokens));
        Assert.Equal(hashes, found.StoreHashes);

        // Load into the engine's buffers: byte-exact.
        var buffers = hashes.Select(_ => new byte[BlockBytes]).ToArray();
        int loaded = await cache.LoadAsync(found.StoreHashes, buffers.Select(b => (Memory<byte>)b).ToArray());
        Assert.Equal(4, loaded);
        for (int i = 0; i < hashes.Length; i++)
            Assert.True(TestValues.Matches(buffers[i], TestValues.Key(hashes[i].StoreKeyString)), $"block {i} loaded from the node differs from what was saved");
        cache.Insert(hashes[..2], buffers[..2]);
        var stats = cache.GetStats();
        Assert.Equal((1L, 64L, 4L, 4L), (stats.StoreLookups, stats.StoreHitTokens, stats.StoreLoadedBlocks, stats.StoreSavedBlocks));
    }

    [Fact]
    public async Task LookupManyAsync_gives_what_one_LookupAsync_per_chain_gives()
    {
        var (node, store) = await StartAsync();
        await using var _ = node;
        await using var __ = store;
        var options = () => new PrefixCacheOptions { BlockSize = 4, MaxCachedBlocks = 64, Store = store };
        var single = new PrefixCache<int>(options());
        var batched = new PrefixCache<int>(options());
        var a = single.ComputeBlockHashes(Enumerable.Range(0, 24).Select(i => (long)i).ToArray());          // 6 blocks
        var b = single.ComputeBlockHashes(Enumerable.Range(1000, 16).Select(i => (long)i).ToArray());       // 4 blocks
        var c = single.ComputeBlockHashes(Enumerable.Range(5000, 12).Select(i => (long)i).ToArray());       // 3, nowhere
        foreach (var cache in new[] { single, batched }) cache.Insert(a[..2], [0, 1]);
        await single.SaveAsync([a[2], a[3], a[5]], [new byte[8], new byte[8], new byte[8]], parent: a[1]);   // a gap at a[4]
        await single.SaveAsync(b[..3], [new byte[8], new byte[8], new byte[8]]);
        IReadOnlyList<BlockHash>[] chains = [a, b, c, [], a[..2], b, a[3..]];
        var many = await batched.LookupManyAsync(chains);
        Assert.Equal(chains.Length, many.Count);
        for (int k = 0; k < chains.Length; k++)
        {
            var one = await single.LookupAsync(chains[k]);
            Assert.Equal(one.Local.Blocks, many[k].Local.Blocks);
            Assert.Equal(one.Local.Hashes, many[k].Local.Hashes);
            Assert.Equal(one.StoreHashes, many[k].StoreHashes);
        }
        Assert.Equal([a[2], a[3]], many[0].StoreHashes);                // stops at the gap
        Assert.Equal(b[..3], many[1].StoreHashes);
        Assert.Empty(many[2].StoreHashes);
        Assert.Equal([a[3]], many[6].StoreHashes);                      // a chain may start anywhere; a[4] is missing
        var (s, m) = (single.GetStats(), batched.GetStats() with { StoreSavedBlocks = single.GetStats().StoreSavedBlocks });
        Assert.Equal(s, m);
        Assert.Equal((7L, (2 + 3 + 3 + 1) * 4L), (m.StoreLookups, m.StoreHitTokens));
        Assert.Equal("KV_CONFIG_MISSING", (await Assert.ThrowsAsync<ConfigMissingException>(() => new PrefixCache<int>().LookupManyAsync([a]))).Code);
    }

    [Fact]
    public async Task Lookup_continues_the_local_match_and_stops_at_the_first_block_missing_on_the_node()
    {
        var (node, store) = await StartAsync();
        await using var _ = node;
        await using var __ = store;
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 4, Store = store });
        var h = cache.ComputeBlockHashes(Enumerable.Range(0, 20).Select(i => (long)i).ToArray());
        cache.Insert([h[0]], [0]);
        await cache.SaveAsync([h[1], h[2], h[4]], [new byte[8], new byte[8], new byte[8]], parent: h[0]);
        var found = await cache.LookupAsync(h);
        Assert.Equal((4L, 8L), (found.LocalTokens, found.StoreTokens));
        Assert.Equal([h[1], h[2]], found.StoreHashes);

        // A block gone from the node since the lookup ends the loaded run; a wrong-size buffer is MetadataMismatch.
        await store.RemoveAsync([h[2].StoreKey()]);
        Assert.Equal(1, await cache.LoadAsync([h[1], h[2]], [new byte[8], new byte[8]]));
        Assert.Equal("KV_METADATA_MISMATCH", (await Assert.ThrowsAsync<MetadataMismatchException>(() => cache.LoadAsync([h[1]], [new byte[9]]))).Code);
        await Assert.ThrowsAsync<MetadataMismatchException>(() => cache.LoadAsync([h[1]], [new byte[7]]));
    }

    [Fact]
    public async Task A_node_that_is_gone_is_TransferFailed()
    {
        var (node, store) = await StartAsync();
        await using var __ = store;
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 4, Store = store });
        var h = cache.ComputeBlockHashes(Enumerable.Range(0, 8).Select(i => (long)i).ToArray());
        await node.Node.StopAsync();
        node.Stopped = true;
        var e = await Assert.ThrowsAnyAsync<KvCacheException>(() => cache.LoadAsync(h, [new byte[8], new byte[8]]));
        Assert.True(e is TransferFailedException or TransferTimeoutException, $"expected a transfer error, got {e}");
        Assert.True(e.Retryable);
        await Assert.ThrowsAnyAsync<KvCacheException>(() => cache.SaveAsync(h, [new byte[8], new byte[8]]));
    }

    [Fact]
    public async Task A_block_corrupted_on_the_node_ends_the_loaded_prefix_there_and_never_reaches_the_engine()
    {
        // The client verifies each value's CRC-32C (KvStoreOptions.VerifyValueCrc); a block whose bytes fail it is a miss
        // at that block, as a block the node no longer has: the engine loads the prefix before it and recomputes the rest.
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 }, SharedMemory = true });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Shm, VerifyValueCrc = true });
        var cache = new PrefixCache<byte[]>(new PrefixCacheOptions { BlockSize = 16, MaxCachedBlocks = 4, Store = store });
        var hashes = cache.ComputeBlockHashes(Enumerable.Range(0, 64).Select(i => (long)i * 3).ToArray());
        var values = hashes.Select(Kv).ToArray();
        await cache.SaveAsync(hashes, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray());
        var buffers = hashes.Select(_ => new byte[BlockBytes]).ToArray();
        // A first load lets the node check the writer's CRCs (done once, lazily) while the bytes are good.
        Assert.Equal(4, await cache.LoadAsync(hashes, buffers.Select(b => (Memory<byte>)b).ToArray()));

        FlipInArena(node.Store.SharedMemoryPath!, values[2], 1000);
        buffers = hashes.Select(_ => new byte[BlockBytes]).ToArray();
        int loaded = await cache.LoadAsync(hashes, buffers.Select(b => (Memory<byte>)b).ToArray());

        Assert.Equal(2, loaded);
        Assert.Equal(values[0], buffers[0]);
        Assert.Equal(values[1], buffers[1]);
        Assert.Equal(1L, store.ChecksumMismatches);
    }

    /// <summary>Flips the byte at <paramref name="offset"/> of the value's only copy in the node's arena file (found by its first 64 bytes).</summary>
    private static void FlipInArena(string arenaPath, byte[] value, int offset)
    {
        using var file = new FileStream(arenaPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var arena = new byte[file.Length];
        file.ReadExactly(arena);
        int at = arena.AsSpan().IndexOf(value.AsSpan(0, 64));
        Assert.True(at >= 0 && arena.AsSpan(at + 64).IndexOf(value.AsSpan(0, 64)) < 0, "the value is not in the arena file exactly once");
        file.Position = at + offset;
        file.WriteByte((byte)(arena[at + offset] ^ 0x5A));
    }
}
