using Kvasir.Client;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Client.Tests;

/// <summary>
/// The .NET client asks for VALUE_CRC and sends each value's CRC-32C with its PUT: computed by the client, or the
/// writer's own (PutOptions.ValueCrc32C). The node serves what the CRC vouches for, and a value it does not vouch
/// for is a miss.
/// </summary>
public sealed class ValueCrcClientTests
{
    private static async Task<(TestNode Node, KvStore Store)> StartAsync(bool sendValueCrc = true)
    {
        var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 128L << 20 } });
        var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, SendValueCrc = sendValueCrc });
        return (node, store);
    }

    private static long Mismatches(TestNode node) => node.Node.StatsSnapshot().Single(s => s.Key == "crc_mismatches").Value;

    [Fact]
    public async Task Crcs_the_client_computes_for_a_large_gathered_batch_vouch_for_every_value()
    {
        var (node, store) = await StartAsync();
        await using (node)
        await using (store)
        {
            // 24 values of 1 MiB (over the parallel threshold, taken on machines of 4 cores or more), half of them gathered from three pieces.
            var keys = Enumerable.Range(0, 24).Select(i => (ReadOnlyMemory<byte>)TestValues.Key($"v/{i}")).ToArray();
            var values = Enumerable.Range(0, 24).Select(i => TestValues.Value(i, 1 << 20)).ToArray();
            var pieces = values.Select((v, i) => i % 2 == 0
                ? (IReadOnlyList<ReadOnlyMemory<byte>>)[v]
                : [v.AsMemory(0, 1000), v.AsMemory(1000, 300_000), v.AsMemory(301_000)]).ToArray();
            Assert.All(await store.PutGatherAsync(keys, pieces), s => Assert.Equal(KvStatus.Ok, s));
            for (int i = 0; i < values.Length; i++) Assert.Equal(values[i], await store.GetAsync(keys[i]));
            Assert.Equal(0L, Mismatches(node));
        }
    }

    [Fact]
    public async Task A_wrong_crc_given_by_the_writer_makes_that_value_a_miss_and_leaves_the_others()
    {
        var (node, store) = await StartAsync();
        await using (node)
        await using (store)
        {
            var a = TestValues.Value(1, 50_000);
            var b = TestValues.Value(2, 50_000);
            var statuses = await store.PutAsync([TestValues.Key("a"), TestValues.Key("b")], [a, b],
                new PutOptions { ValueCrc32C = [Crc32C.Compute(a), Crc32C.Compute(b) ^ 0xFF] });
            Assert.Equal([KvStatus.Ok, KvStatus.Ok], statuses);
            Assert.Equal(a, await store.GetAsync(TestValues.Key("a")));
            Assert.Null(await store.GetAsync(TestValues.Key("b")));
            Assert.Equal(1L, Mismatches(node));
        }
    }

    [Fact]
    public async Task Without_value_crc_the_node_computes_the_crc_and_a_given_one_is_not_sent()
    {
        var (node, store) = await StartAsync(sendValueCrc: false);
        await using (node)
        await using (store)
        {
            var a = TestValues.Value(3, 50_000);
            Assert.Equal([KvStatus.Ok], await store.PutAsync([TestValues.Key("a")], [a], new PutOptions { ValueCrc32C = [12345u] }));
            Assert.Equal(a, await store.GetAsync(TestValues.Key("a")));
            Assert.Equal(0L, Mismatches(node));
        }
    }

    [Fact]
    public async Task A_crc_list_of_the_wrong_length_is_refused_with_the_counts()
    {
        var (node, store) = await StartAsync();
        await using (node)
        await using (store)
        {
            var ex = await Assert.ThrowsAsync<ArgumentException>(() => store.PutAsync([TestValues.Key("a")], [new byte[3]], new PutOptions { ValueCrc32C = [] }));
            Assert.Contains("1 keys but 0 CRCs", ex.Message);
        }
    }
}
