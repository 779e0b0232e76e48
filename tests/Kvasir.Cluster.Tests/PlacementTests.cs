using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>Keys spread over real nodes as rendezvous hashing promises, and a new node takes its share and no more.</summary>
public sealed class PlacementTests
{
    private const int KeyCount = 3000;

    [Fact]
    public async Task Keys_spread_evenly_over_three_nodes_and_a_fourth_takes_about_a_quarter_of_them_and_no_more()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        await using var client = await cluster.ClientAsync();
        Assert.Equal(3, client.Nodes.Count);
        var keys = Enumerable.Range(0, KeyCount).Select(i => $"spread/{i}").ToArray();
        var statuses = await client.PutAsync(keys.Select(TestValues.KeyMemory).ToArray(), keys.Select(k => (ReadOnlyMemory<byte>)TestValues.For(k, 64)).ToArray());
        Assert.All(statuses, s => Assert.Equal(KvStatus.Ok, s));

        // Each node holds what placement says, and placement is even: binomial sd is 25.8 keys for
        // 3000 keys over 3 nodes, so ±130 keys (±4.3 percentage points, 5 sd) fails by chance ~1e-6.
        var before = keys.ToDictionary(k => k, k => client.Placement(TestValues.KeyMemory(k).Span).Single());
        var perNode = await client.NodeStatsAsync();
        foreach (var (node, stats, error) in perNode)
        {
            Assert.Null(error);
            long expected = before.Values.Count(id => id == node.Id);
            Assert.Equal(expected, stats!["keys"]);
            Assert.InRange(expected, KeyCount / 3 - 130, KeyCount / 3 + 130);
        }

        var fourth = await cluster.AddNodeAsync();
        await Poll.UntilAsync(() => Task.FromResult(client.Nodes.Count == 4), "the client to see the fourth node", TimeSpan.FromSeconds(10));
        var after = keys.ToDictionary(k => k, k => client.Placement(TestValues.KeyMemory(k).Span).Single());
        var moved = keys.Where(k => before[k] != after[k]).ToArray();
        // About a quarter moves (sd 23.7 keys: ±120 is 5 sd), and every key that moved went to the new node.
        Assert.InRange(moved.Length, KeyCount / 4 - 120, KeyCount / 4 + 120);
        Assert.All(moved, k => Assert.Equal(fourth.Server, after[k]));

        // Keys that stayed are still served; keys that moved are misses on the new node, never errors.
        var dest = keys.Select(_ => (Memory<byte>)new byte[64]).ToArray();
        var results = await client.GetAsync(keys.Select(TestValues.KeyMemory).ToArray(), dest);
        for (int i = 0; i < keys.Length; i++)
        {
            if (moved.Contains(keys[i])) Assert.Equal(KvStatus.NotFound, results[i].Status);
            else
            {
                Assert.Equal(KvStatus.Ok, results[i].Status);
                Assert.Equal(TestValues.For(keys[i], 64), dest[i].ToArray());
            }
        }
    }

    [Fact]
    public async Task A_static_server_list_places_keys_exactly_as_the_registry_does()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        await using var viaRedis = await cluster.ClientAsync();
        await using var viaList = await KvStore.ConnectAsync(new KvStoreOptions { Server = string.Join(",", cluster.Nodes.Select(n => n.Server)) });
        Assert.True(viaList.IsCluster);
        for (int i = 0; i < 200; i++)
        {
            var key = TestValues.KeyMemory($"static/{i}");
            Assert.Equal(viaRedis.Placement(key.Span, 2), viaList.Placement(key.Span, 2));
        }
        var keys = Enumerable.Range(0, 100).Select(i => TestValues.KeyMemory($"static/{i}")).ToArray();
        Assert.All(await viaList.PutAsync(keys, keys.Select(k => k).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
        Assert.All(await viaRedis.ExistsAsync(keys), v => Assert.Equal(1, v));

        // Replicas per call: one key on every node.
        var everywhere = TestValues.KeyMemory("static/everywhere");
        Assert.Equal(KvStatus.Ok, (await viaList.PutAsync([everywhere], [everywhere], new PutOptions { Replicas = 3 }))[0]);
        Assert.Equal(3, viaList.Placement(everywhere.Span, 3).Count);
        foreach (var node in cluster.Nodes)
        {
            await using var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Server });
            Assert.Equal(1, (await direct.ExistsAsync([everywhere]))[0]);
        }
    }
}
