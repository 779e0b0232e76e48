using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// A value on the disk tier is read while the arena is full of pinned values, so no cold read can be put in DRAM and
/// nothing may be evicted: the value is still there, so the reader must get it, never a miss. TCP readers are served
/// from the staging area beside the arena, also on the read that would promote it; a shared-memory LEASE that cannot
/// stage it in the arena answers OUT_OF_MEMORY, and the client reads the key over TCP (docs/tiers.md § GET).
/// </summary>
public sealed class ColdReadRoomTests
{
    private const int Mi = 1 << 20;

    [Theory]
    [InlineData(KvTransportKind.Tcp)]
    [InlineData(KvTransportKind.Shm)]
    public async Task A_cold_value_read_while_every_value_in_dram_is_pinned_is_served_every_time(KvTransportKind transport)
    {
        using var dir = new TempDir();
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            SharedMemory = true,
            Store = new StoreOptions { Capacity = 16 * Mi, MaxValueBytes = 2 * Mi },
            Tiers = new TierOptions { DiskPath = dir.Path, DiskCapacity = 256L * Mi, PromoteAfter = 2 },
        });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = transport });
        var keys = Enumerable.Range(0, 40).Select(i => $"c/{i}").ToArray();   // 40 MiB through a 16 MiB arena: the first ones leave DRAM
        foreach (var k in keys)
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key(k)], [TestValues.For(k, Mi)]))[0]);
        var inDram = keys.Where(k => node.Store.InDram(TestValues.Key(k))).ToArray();
        var cold = keys.Where(k => !node.Store.InDram(TestValues.Key(k))).Take(2).ToArray();
        Assert.Equal(2, cold.Length);
        Assert.All(await store.PinAsync(inDram.Select(k => (ReadOnlyMemory<byte>)TestValues.Key(k)).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
        // Fill what free space is left with more pinned values until a put is refused: nothing in DRAM can go now.
        for (int i = 0; ; i++)
        {
            string k = $"fill/{i}";
            if ((await store.PutAsync([TestValues.Key(k)], [TestValues.For(k, Mi)]))[0] != KvStatus.Ok) break;
            if (!node.Store.InDram(TestValues.Key(k))) continue;
            Assert.Equal(KvStatus.Ok, (await store.PinAsync([TestValues.Key(k)]))[0]);
            Assert.True(i < 64, "the arena never filled");
        }

        // Three reads of each: the second is the one that would promote it (PromoteAfter 2), and there is no room.
        foreach (var k in cold)
        {
            for (int read = 1; read <= 3; read++)
            {
                var got = await store.GetAsync(TestValues.Key(k));
                Assert.True(got is not null && TestValues.For(k, Mi).SequenceEqual(got), $"read {read} of cold key {k} over {transport}: {(got is null ? "a miss" : "other bytes")}");
            }
        }
        Assert.All(inDram, k => Assert.True(node.Store.InDram(TestValues.Key(k)), $"pinned {k} left DRAM"));
    }
}
