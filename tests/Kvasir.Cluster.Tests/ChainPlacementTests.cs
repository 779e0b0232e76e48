using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// Chain placement over real nodes registered in a real redis-server: a chained put goes whole to its root's nodes,
/// shown by each node's request counters (STATS), and chain lookups ask one node at a time from the first miss. A put is
/// counted as PUT or COMMIT: the nodes are on this host, and chained puts go through their arenas where the node grants
/// COMMIT chains (feature 0x20), over the socket otherwise.
/// </summary>
public sealed class ChainPlacementTests
{
    private const int Block = 4096;

    [Fact]
    public async Task A_chain_put_is_one_request_to_the_roots_node_and_its_lookups_are_one_request_each()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        await using var client = await ConnectAsync(cluster, replicas: 1);
        var keys = Chain("chain/a", 32);
        var more = Chain("chain/a-more", 8);
        string root = client.Placement(keys[0].Span).Single();

        var before = await RequestsAsync(client, "put", "commit");
        Assert.All(await client.PutAsync(keys, Values(keys), new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        Assert.All(await client.PutAsync(more, Values(more), new PutOptions { Chain = true, ChainParent = keys[^1], ChainRoot = keys[0] }),
            s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(Only(before.Keys, root, 2), Delta(before, await RequestsAsync(client, "put", "commit")));
        foreach (var (node, stats, _) in await client.NodeStatsAsync())
            Assert.Equal(node.Id == root ? keys.Length + more.Length : 0, stats!["keys"]);

        var whole = keys.Concat(more).ToArray();
        var existsBefore = await RequestsAsync(client, "exists");
        var getBefore = await RequestsAsync(client, "get", "lease");
        Assert.All(await client.ExistsChainAsync(whole), v => Assert.Equal(1, v));
        var dest = whole.Select(_ => (Memory<byte>)new byte[Block]).ToArray();
        var results = await client.GetChainAsync(whole, dest);
        for (int i = 0; i < whole.Length; i++)
        {
            Assert.Equal(new KvGetResult(KvStatus.Ok, Block), results[i]);
            Assert.Equal(TestValues.For(KeyName(whole[i]), Block), dest[i].ToArray());
        }
        Assert.Equal(Only(existsBefore.Keys, root, 1), Delta(existsBefore, await RequestsAsync(client, "exists")));
        Assert.Equal(Only(getBefore.Keys, root, 1), Delta(getBefore, await RequestsAsync(client, "get", "lease")));

        // A hole (removed on the root's node: per-key operations place each key by itself): the lookup reports the
        // stored prefix, every key past the first miss is a miss.
        await using (var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = root }))
            Assert.Equal(KvStatus.Ok, (await direct.RemoveAsync([keys[5]]))[0]);
        int[] prefix = [.. Enumerable.Repeat(1, 5), .. Enumerable.Repeat(0, whole.Length - 5)];
        Assert.Equal(prefix, await client.ExistsChainAsync(whole));
        var partial = await client.GetChainAsync(whole, dest);
        Assert.All(partial[..5], r => Assert.Equal(KvStatus.Ok, r.Status));
        Assert.All(partial[5..], r => Assert.Equal(KvStatus.NotFound, r.Status));
    }

    [Fact]
    public async Task Without_chain_placement_a_chain_spreads_and_a_continuation_without_its_root_is_refused()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        await using var client = await ConnectAsync(cluster, replicas: 1);
        var keys = Chain("chain/spread", 32);
        int owners = keys.Select(k => client.Placement(k.Span).Single()).Distinct().Count();
        var before = await RequestsAsync(client, "put", "commit");
        Assert.All(await client.PutAsync(keys, Values(keys), new PutOptions { Chain = true, ChainPlacement = false }), s => Assert.Equal(KvStatus.Ok, s));
        Assert.True(owners > 1);
        Assert.Equal(owners, Delta(before, await RequestsAsync(client, "put", "commit")).Values.Sum());

        var ex = await Assert.ThrowsAsync<KvasirException>(() => client.PutAsync(keys[..2], Values(keys[..2]), new PutOptions { Chain = true, ChainParent = keys[^1] }));
        Assert.Contains("must name the chain's first key", ex.Message);
    }

    [Fact]
    public async Task With_two_replicas_a_chain_put_is_two_requests_and_a_lookup_goes_on_at_the_second_replica_from_the_first_miss()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        await using var client = await ConnectAsync(cluster, replicas: 2);
        var keys = Chain("chain/r2", 16);
        var replicas = client.Placement(keys[0].Span, 2);
        var before = await RequestsAsync(client, "put", "commit");
        Assert.All(await client.PutAsync(keys, Values(keys), new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        var puts = Delta(before, await RequestsAsync(client, "put", "commit"));
        Assert.All(puts, p => Assert.Equal(replicas.Contains(p.Key) ? 1 : 0, p.Value));

        // The first replica lost the chain's tail: one request to it, one to the second for the rest.
        await using (var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = replicas[0] }))
            Assert.All(await direct.RemoveAsync(keys[10..]), s => Assert.Equal(KvStatus.Ok, s));
        var existsBefore = await RequestsAsync(client, "exists");
        Assert.All(await client.ExistsChainAsync(keys), v => Assert.Equal(1, v));
        Assert.All(Delta(existsBefore, await RequestsAsync(client, "exists")), p => Assert.Equal(replicas.Contains(p.Key) ? 1 : 0, p.Value));
    }

    private static Task<KvStore> ConnectAsync(ClusterHarness cluster, int replicas) => KvStore.ConnectAsync(new KvStoreOptions
    {
        RedisUrl = cluster.Redis.Url,
        Cluster = cluster.Name,
        Replicas = replicas,
        ChainPlacement = true,
        MembershipPoll = TimeSpan.FromMilliseconds(100),
        ConnectTimeout = TimeSpan.FromSeconds(2),
        RequestTimeout = TimeSpan.FromSeconds(10),
    });

    private static ReadOnlyMemory<byte>[] Chain(string name, int count) => Enumerable.Range(0, count).Select(i => TestValues.KeyMemory($"{name}/{i}")).ToArray();

    private static string KeyName(ReadOnlyMemory<byte> key) => System.Text.Encoding.UTF8.GetString(key.Span);

    private static ReadOnlyMemory<byte>[] Values(ReadOnlyMemory<byte>[] keys) => keys.Select(k => (ReadOnlyMemory<byte>)TestValues.For(KeyName(k), Block)).ToArray();

    /// <summary>Each node's count of <paramref name="ops"/> requests, by node id (a GET is a LEASE over shared memory).</summary>
    private static async Task<Dictionary<string, long>> RequestsAsync(KvStore client, params string[] ops)
    {
        var counts = new Dictionary<string, long>();
        foreach (var (node, stats, error) in await client.NodeStatsAsync())
        {
            Assert.Null(error);
            counts[node.Id] = ops.Sum(op => stats![$"requests_{op}"]);
        }
        return counts;
    }

    private static Dictionary<string, long> Delta(Dictionary<string, long> before, Dictionary<string, long> after) =>
        after.ToDictionary(p => p.Key, p => p.Value - before[p.Key]);

    private static Dictionary<string, long> Only(IEnumerable<string> ids, string id, long count) => ids.ToDictionary(i => i, i => i == id ? count : 0L);
}
