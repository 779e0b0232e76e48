using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>A node with tiers, over TCP: demotion, promotion, faults, a full disk, a shared directory.</summary>
public sealed class NodeTierTests
{
    private const int Mi = 1 << 20;

    private static async Task<(TestNode Node, KvStore Store)> StartAsync(TierOptions tiers, long memory = 32 * Mi)
    {
        var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            AdminPort = 0,
            Store = new StoreOptions { Capacity = memory, MaxValueBytes = 4 * Mi },
            Tiers = tiers,
        });
        var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address });
        return (node, store);
    }

    private static async Task PutAllAsync(KvStore store, IEnumerable<string> keys, int size, int version = 0)
    {
        foreach (var chunk in keys.Chunk(8))
            Assert.All(await store.PutAsync(chunk.Select(k => (ReadOnlyMemory<byte>)TestValues.Key(k)).ToArray(),
                chunk.Select(k => (ReadOnlyMemory<byte>)TestValues.For(k, size, version)).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
    }

    [Fact]
    public async Task Writing_three_times_dram_reads_every_value_back_exact_and_dram_stays_within_capacity()
    {
        using var dir = new TempDir();
        var (node, store) = await StartAsync(new TierOptions { DiskPath = dir.Path, DiskCapacity = 512L * Mi });
        await using (node)
        await using (store)
        {
            var keys = Enumerable.Range(0, 96).Select(i => $"big/{i}").ToArray();   // 96 MiB through a 32 MiB arena
            await PutAllAsync(store, keys, Mi);
            var stats = await store.StatsAsync();
            Assert.True(stats["evictions"] > 0);
            Assert.Equal(stats["evictions"], stats["tier_demotions"]);   // every evicted value was already on disk
            Assert.True(stats["allocated_bytes"] <= 32L * Mi);
            var buffer = new byte[Mi];
            foreach (var k in keys)
            {
                var r = (await store.GetAsync([TestValues.Key(k)], [buffer]))[0];
                Assert.Equal(KvStatus.Ok, r.Status);
                Assert.True(buffer.AsSpan().SequenceEqual(TestValues.For(k, Mi)), $"{k}: wrong bytes");
            }
            stats = await store.StatsAsync();
            Assert.True(stats["disk_hits"] >= 60, $"disk_hits {stats["disk_hits"]}");
            Assert.True(stats["allocated_bytes"] <= 32L * Mi);
            Assert.Equal(0, stats["degraded"]);
        }
    }

    [Fact]
    public async Task A_value_read_twice_from_disk_is_promoted_and_then_served_from_dram()
    {
        using var dir = new TempDir();
        var (node, store) = await StartAsync(new TierOptions { DiskPath = dir.Path, DiskCapacity = 256L * Mi });
        await using (node)
        await using (store)
        {
            await PutAllAsync(store, Enumerable.Range(0, 48).Select(i => $"p/{i}"), Mi);   // p/0 is evicted from DRAM by the rest
            Assert.Equal(0, (await store.StatsAsync())["tier_promotions"]);
            async Task<Dictionary<string, long>> ReadAsync()
            {
                Assert.Equal(TestValues.For("p/0", Mi), await store.GetAsync(TestValues.Key("p/0")));
                return (await store.StatsAsync()).ToDictionary();
            }
            var first = await ReadAsync();
            Assert.Equal(1, first["disk_hits"]);
            Assert.Equal(0, first["tier_promotions"]);
            var second = await ReadAsync();
            Assert.Equal(2, second["disk_hits"]);
            Assert.Equal(1, second["tier_promotions"]);
            var third = await ReadAsync();
            Assert.Equal(2, third["disk_hits"]);          // not read from disk again
            Assert.Equal(second["hits"] + 1, third["hits"]); // a DRAM hit
        }
    }

    [Fact]
    public async Task Io_errors_and_corruption_give_misses_and_a_degraded_node_never_wrong_bytes()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        var (node, store) = await StartAsync(new TierOptions { DiskPath = dir.Path, DiskCapacity = 256L * Mi, DeviceFactory = factory });
        await using (node)
        await using (store)
        {
            var keys = Enumerable.Range(0, 64).Select(i => $"f/{i}").ToArray();
            await PutAllAsync(store, keys, Mi);
            factory.Faults.CorruptReads = true;
            var buffer = new byte[Mi];
            int misses = 0;
            foreach (var k in keys)
            {
                var r = (await store.GetAsync([TestValues.Key(k)], [buffer]))[0];
                if (r.Status == KvStatus.NotFound) misses++;
                else Assert.True(r.Status == KvStatus.Ok && buffer.AsSpan().SequenceEqual(TestValues.For(k, Mi)), $"{k}: {r.Status} or wrong bytes");
            }
            Assert.True(misses > 20, $"only {misses} misses: corrupted reads were served?");
            var stats = await store.StatsAsync();
            Assert.Equal(1, stats["degraded"]);
            Assert.Equal(0, stats["disk_healthy"]);
            Assert.Contains(node.Node.Problems(), p => p.Component == "disk");
            using (var http = new HttpClient())
            {
                var health = await http.GetAsync($"http://127.0.0.1:{node.Node.AdminPort}/v1/health");
                Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, health.StatusCode);
                var disk = System.Text.Json.JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement.GetProperty("components").GetProperty("disk");
                Assert.Equal("degraded", disk.GetProperty("status").GetString());
                Assert.Matches("CRC|damaged record", disk.GetProperty("reason").GetString());
            }

            factory.Faults.CorruptReads = false;
            factory.Faults.FailWrites = true;    // writes fail: the put is refused (not durable), nothing is stored
            Assert.Equal(KvStatus.TierFailed, (await store.PutAsync([TestValues.Key("w/0")], [TestValues.For("w/0", 1000)]))[0]);
            Assert.Null(await store.GetAsync(TestValues.Key("w/0")));
            factory.Faults.FailWrites = false;
            await PutAllAsync(store, ["f/62"], Mi, version: 8);
            factory.Faults.TearNextWrite = true; // a torn write: refused, and the key keeps its acknowledged value
            Assert.Equal(KvStatus.TierFailed, (await store.PutAsync([TestValues.Key("f/62")], [TestValues.For("f/62", Mi, 9)]))[0]);
            Assert.Equal(TestValues.For("f/62", Mi, 8), await store.GetAsync(TestValues.Key("f/62")));
            await store.PingAsync();             // still serving
        }
    }

    [Fact]
    public async Task A_full_disk_refuses_puts_with_tier_failed_keeps_every_acknowledged_value_and_recovers_when_space_returns()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        factory.Faults.DiskBytes = 8L * Mi;
        var (node, store) = await StartAsync(new TierOptions { DiskPath = dir.Path, DiskCapacity = 256L * Mi, DeviceFactory = factory });
        await using (node)
        await using (store)
        {
            var keys = Enumerable.Range(0, 80).Select(i => $"full/{i}").ToArray();
            var acked = new List<string>();
            int refused = 0;
            foreach (var k in keys)
            {
                var status = (await store.PutAsync([TestValues.Key(k)], [TestValues.For(k, Mi)]))[0];
                Assert.True(status is KvStatus.Ok or KvStatus.TierFailed, $"{k}: {status}");
                if (status == KvStatus.Ok) acked.Add(k);
                else refused++;
            }
            Assert.True(refused > 0, "no PUT was refused although the disk filled up");
            var stats = await store.StatsAsync();
            Assert.Equal(1, stats["disk_full"]);
            Assert.True(stats["tier_write_failures"] >= refused);
            Assert.Equal(1, stats["degraded"]);
            // Every acknowledged value reads back exact (DRAM or disk); a refused one was never stored: a plain miss.
            var buffer = new byte[Mi];
            foreach (var k in keys)
            {
                var r = (await store.GetAsync([TestValues.Key(k)], [buffer]))[0];
                if (acked.Contains(k))
                {
                    Assert.Equal(KvStatus.Ok, r.Status);
                    Assert.True(buffer.AsSpan().SequenceEqual(TestValues.For(k, Mi)), $"{k}: wrong bytes");
                }
                else Assert.Equal(KvStatus.NotFound, r.Status);
            }
            factory.Faults.DiskBytes = long.MaxValue;   // the operator frees space: the node takes writes again
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key("later")], [TestValues.For("later", 100)]))[0]);
        }
    }

    [Fact]
    public async Task Two_nodes_sharing_a_directory_serve_each_others_evicted_values()
    {
        using var shared = new TempDir();
        var (a, storeA) = await StartAsync(new TierOptions { SharedFsPath = shared.Path });
        var (b, storeB) = await StartAsync(new TierOptions { SharedFsPath = shared.Path });
        await using (a)
        await using (storeA)
        await using (b)
        await using (storeB)
        {
            var keys = Enumerable.Range(0, 48).Select(i => $"sh/{i}").ToArray();
            await PutAllAsync(storeA, keys, Mi);
            Assert.True(a.Store.DrainShared(TimeSpan.FromSeconds(30)), "shared writes did not finish");
            Assert.False(a.Store.InDram(TestValues.Key("sh/0")));   // evicted from A's DRAM
            Assert.Equal(TestValues.For("sh/0", Mi), await storeA.GetAsync(TestValues.Key("sh/0")));   // A reads it back from the share
            foreach (var k in keys) Assert.Equal(TestValues.For(k, Mi), await storeB.GetAsync(TestValues.Key(k)));   // B never stored it
            Assert.True((await storeB.StatsAsync())["shared_hits"] >= keys.Length);
            Assert.Empty(Directory.GetFiles(shared.Path, "*.tmp", SearchOption.AllDirectories));
        }
    }
}
