using Kvasir.Client;
using Kvasir.Embedded;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// A node id registered again at another address before its old registration expired: a node restarted under its
/// stable --node-id on a new port or host, or an embedded rank restarted with its ClientId, while the record its
/// predecessor left is still live.
/// </summary>
public sealed class NodeMovedTests
{
    private static string DeadAddress() => $"127.0.0.1:{RedisProcess.FreePort()}";

    [Fact]
    public async Task A_heartbeat_that_moves_a_node_to_a_new_address_is_a_membership_change()
    {
        using var redis = RedisProcess.Start();
        await using var registry = await RedisClusterRegistry.ConnectAsync(RedisUrl.Parse(redis.Url), "moved", TimeSpan.FromSeconds(5));
        var old = new NodeRecord { Id = "n1", Address = "127.0.0.1:7380", StartedMs = 1 };
        Assert.True(await registry.HeartbeatAsync(old, TimeSpan.FromSeconds(30)));
        var before = await registry.PollAsync();
        Assert.False(await registry.HeartbeatAsync(old, TimeSpan.FromSeconds(30)), "a plain renewal is not a change");
        Assert.Equal(before, await registry.PollAsync());

        Assert.True(await registry.HeartbeatAsync(old with { Address = "127.0.0.1:7390", StartedMs = 2 }, TimeSpan.FromSeconds(30)),
            "the same id at a new address was not reported as a change");
        var after = await registry.PollAsync();
        Assert.True(after.Epoch > before.Epoch, $"epoch {before.Epoch} -> {after.Epoch}: clients polling it never read the new address");
        Assert.Equal("127.0.0.1:7390", (await registry.ReadAsync()).Nodes.Single().Address);
    }

    [Fact]
    public async Task A_client_follows_a_node_that_came_back_at_a_new_address_under_its_id_within_a_few_polls()
    {
        await using var cluster = await ClusterHarness.StartAsync(0);
        await using (var registry = await cluster.RegistryAsync())
            Assert.True(await registry.HeartbeatAsync(new NodeRecord { Id = "n1", Address = DeadAddress(), StartedMs = 1 }, TimeSpan.FromSeconds(60)));
        await using var client = await cluster.ClientAsync();
        Assert.Equal("n1", Assert.Single(client.Nodes).Id);

        await using var node = new CacheNode(new NodeOptions
        {
            Port = 0,
            NodeId = "n1",
            Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 },
            Cluster = new ClusterJoinOptions { RedisUrl = cluster.Redis.Url, Name = cluster.Name, HeartbeatTtl = TimeSpan.FromSeconds(10) },   // never lapses on a loaded machine mid-test
        });
        node.Start();

        // Well inside the client's 30 s full refresh: the epoch it polls every 100 ms must say the record changed.
        await Poll.UntilAsync(() => client.Nodes.SingleOrDefault()?.Address == node.DataAddress,
            () => $"the client to route n1 to {node.DataAddress}; it still uses {client.Nodes.SingleOrDefault()?.Address}", TimeSpan.FromSeconds(5));
        var key = TestValues.KeyMemory("moved/0");
        Assert.Equal(KvStatus.Ok, (await client.PutAsync([key], [TestValues.For("moved/0", 4096)]))[0]);
    }

    [Fact]
    public async Task A_node_restarted_under_its_id_on_a_host_whose_clock_is_behind_its_dead_predecessors_takes_the_id_at_once()
    {
        // The dead predecessor's record says it started an hour after its successor did (its host's clock was ahead).
        // heartbeat.lua kept a live id for the later started_ms, so the restarted node was refused, reported a false id
        // conflict and stayed unregistered until the dead one's registration expired (one TTL: here 60 s).
        await using var cluster = await ClusterHarness.StartAsync(0);
        await using var registry = await cluster.RegistryAsync();
        long ahead = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds();
        Assert.True(await registry.HeartbeatAsync(new NodeRecord { Id = "n1", Address = DeadAddress(), StartedMs = ahead }, TimeSpan.FromSeconds(60)));

        await using var node = new CacheNode(new NodeOptions
        {
            Port = 0,
            NodeId = "n1",
            Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 },
            Cluster = new ClusterJoinOptions { RedisUrl = cluster.Redis.Url, Name = cluster.Name, HeartbeatTtl = TimeSpan.FromSeconds(10) },
        });
        node.Start();

        await Poll.UntilAsync(async () => node.Registration?.State == RegistrationState.Registered
                && (await registry.ReadAsync()).Nodes.SingleOrDefault()?.Address == node.DataAddress,
            () => $"the restarted node to hold n1 at once (state {node.Registration?.State}: {node.Registration?.Reason})", TimeSpan.FromSeconds(5));
        Assert.False(node.Registration!.IdConflict);
        Assert.Empty(node.Problems());
    }

    [Fact]
    public async Task An_embedded_member_keeps_its_own_node_when_the_registry_shows_its_id_at_another_address()
    {
        // A stale record of a crashed predecessor with the same ClientId (or another process misconfigured with it):
        // the client must go on using the node in its own process, never close it for a socket to the other address.
        await using var cluster = await ClusterHarness.StartAsync(0);
        var embedded = new EmbeddedNodeOptions { Capacity = 16L << 20, ClientId = "rank-0", HeartbeatTtl = TimeSpan.FromSeconds(60) };
        await using var store = await cluster.ClientAsync(embedded: embedded);
        var own = Assert.Single(store.Nodes).Address;
        var keys = Enumerable.Range(0, 20).Select(i => TestValues.KeyMemory($"own/{i}")).ToArray();
        Assert.All(await store.PutAsync(keys, keys), s => Assert.Equal(KvStatus.Ok, s));

        var other = DeadAddress();
        await using (var registry = await cluster.RegistryAsync())   // a first registration takes a live id (the later one keeps it)
            await registry.HeartbeatAsync(new NodeRecord { Id = "rank-0", Address = other, StartedMs = 1, Kind = "embedded" }, TimeSpan.FromSeconds(60));
        await Poll.UntilAsync(() => store.Nodes.SingleOrDefault()?.Address == other, "the client to read rank-0's other address");

        Assert.All(await store.PutAsync(keys, keys), s => Assert.Equal(KvStatus.Ok, s));
        Assert.All(await store.ExistsAsync(keys), v => Assert.Equal(1, v));
        await using var tcp = await KvStore.ConnectAsync(new KvStoreOptions { Server = own, Transport = KvTransportKind.Tcp, ConnectTimeout = TimeSpan.FromSeconds(2) });
        Assert.Equal(keys[3].ToArray(), await tcp.GetAsync(keys[3]));
    }

    [Fact]
    public async Task A_node_that_stops_after_its_id_moved_to_a_newer_node_does_not_unregister_the_newer_one()
    {
        // A rolling restart that starts the new node under the same --node-id before the old one stops: the old node's
        // clean leave must not remove the new node's registration (it did: the id was gone until the next heartbeat).
        await using var cluster = await ClusterHarness.StartAsync(0);
        NodeOptions Options() => new()
        {
            Port = 0,
            NodeId = "n1",
            Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 },
            Cluster = new ClusterJoinOptions { RedisUrl = cluster.Redis.Url, Name = cluster.Name, HeartbeatTtl = TimeSpan.FromSeconds(60) },
        };
        var old = new CacheNode(Options());
        old.Start();
        await using var registry = await cluster.RegistryAsync();
        await Poll.UntilAsync(async () => (await registry.ReadAsync()).Nodes.SingleOrDefault()?.Address == old.DataAddress, "the old node's registration");
        await using var fresh = new CacheNode(Options());
        fresh.Start();
        await Poll.UntilAsync(async () => (await registry.ReadAsync()).Nodes.SingleOrDefault()?.Address == fresh.DataAddress, "the new node's registration");

        await old.StopAsync();

        var left = (await registry.ReadAsync()).Nodes;
        Assert.True(left.Count == 1 && left[0].Address == fresh.DataAddress,
            $"after the old node left, the registry lists [{string.Join(", ", left.Select(n => n.Id + "@" + n.Address))}], not n1@{fresh.DataAddress}");
    }
}
