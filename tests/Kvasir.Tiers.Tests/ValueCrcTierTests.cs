using Kvasir.Client;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// A PUT whose CRC-32C came from the writer (VALUE_CRC) is checked before it first crosses a tier boundary: a value
/// whose bytes do not match is never written to the disk or the shared directory, and the node counts it.
/// </summary>
public sealed class ValueCrcTierTests
{
    private const int Mi = 1 << 20;

    private static async Task<(TestNode Node, KvStore Store)> StartAsync(TierOptions tiers)
    {
        var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            AdminPort = 0,
            Store = new StoreOptions { Capacity = 32 * Mi, MaxValueBytes = 4 * Mi },
            Tiers = tiers,
        });
        var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address });
        return (node, store);
    }

    private static Task<KvStatus[]> PutAsync(KvStore store, string key, byte[] value, uint crc)
        => store.PutAsync([TestValues.Key(key)], [value], new PutOptions { ValueCrc32C = [crc] });

    [Fact]
    public async Task With_a_disk_tier_a_value_whose_sent_crc_does_not_match_is_refused_at_once_and_the_key_keeps_its_value()
    {
        using var dir = new TempDir();
        var (node, store) = await StartAsync(new TierOptions { DiskPath = dir.Path, DiskCapacity = 256L * Mi });
        await using (node)
        await using (store)
        {
            var first = TestValues.For("k", Mi);
            var second = TestValues.For("k", Mi, version: 1);
            Assert.Equal([KvStatus.Ok], await PutAsync(store, "k", first, Crc32C.Compute(first)));
            Assert.Equal([KvStatus.TierFailed], await PutAsync(store, "k", second, Crc32C.Compute(second) ^ 0x8000_0000));
            var stats = await store.StatsAsync();
            Assert.Equal(1, stats["crc_mismatches"]);
            Assert.Equal(1, stats["disk_keys"]);
            Assert.Equal(first, await store.GetAsync(TestValues.Key("k")));
        }

        // After a restart the disk holds the first value only: the mismatched one was never written down.
        var (again, reopened) = await StartAsync(new TierOptions { DiskPath = dir.Path, DiskCapacity = 256L * Mi });
        await using (again)
        await using (reopened)
            Assert.Equal(TestValues.For("k", Mi), await reopened.GetAsync(TestValues.Key("k")));
    }

    [Fact]
    public async Task With_a_shared_directory_a_mismatched_value_is_never_shared_and_a_matching_one_is()
    {
        using var shared = new TempDir();
        var (a, storeA) = await StartAsync(new TierOptions { SharedFsPath = shared.Path });
        var (b, storeB) = await StartAsync(new TierOptions { SharedFsPath = shared.Path });
        await using (a)
        await using (storeA)
        await using (b)
        await using (storeB)
        {
            var good = TestValues.For("good", Mi);
            var bad = TestValues.For("bad", Mi);
            Assert.Equal([KvStatus.Ok], await PutAsync(storeA, "good", good, Crc32C.Compute(good)));
            Assert.Equal([KvStatus.Ok], await PutAsync(storeA, "bad", bad, Crc32C.Compute(bad) + 1));
            Assert.True(a.Store.DrainShared(TimeSpan.FromSeconds(30)), "shared writes did not finish");
            Assert.Equal(good, await storeB.GetAsync(TestValues.Key("good")));
            Assert.Null(await storeB.GetAsync(TestValues.Key("bad")));   // never written to the share
            Assert.Null(await storeA.GetAsync(TestValues.Key("bad")));   // and dropped where it was put
            Assert.Equal(1, (await storeA.StatsAsync())["crc_mismatches"]);
        }
    }
}
