using System.Diagnostics;
using Kvasir.Client;
using Xunit.Abstractions;

namespace Kvasir.Cluster.Tests;

/// <summary>redis+sentinel://: a master, a replica and a sentinel; the master is killed and the cluster follows the promoted replica.</summary>
public sealed class SentinelTests(ITestOutputHelper output)
{
    /// <summary>Sentinel calls the master down after 1 s and promotes within seconds; the registry and the nodes need a few more.</summary>
    private static readonly TimeSpan FailoverBound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task After_the_master_is_killed_the_node_registers_in_the_promoted_replica_and_clients_route_and_discover_through_it()
    {
        var (master, replica, sentinel) = await StartSentinelSetAsync();
        using var m = master;
        using var r = replica;
        using var sn = sentinel;

        var cluster = SecureRegistryTests.NewCluster();
        var url = $"redis+sentinel://127.0.0.1:{sentinel.Port}/kvmaster";
        await using var node = await SecureRegistryTests.StartNodeAsync(url, cluster);
        await using var client = await KvStore.ConnectAsync(SecureRegistryTests.ClientOptions(url, cluster));
        await SecureRegistryTests.RoutesToAsync(client, "through the first master", node);

        var clock = Stopwatch.StartNew();
        await KillMasterUntilPromotedAsync(master, replica, sentinel);
        var promoted = clock.Elapsed;
        // The node's heartbeats reach the new master: its record there is renewed (expiry in the future, by the new master's clock).
        long renewedFrom = await ExpiryAsync(replica, cluster, node.Server);
        await Poll.UntilAsync(async () => await ExpiryAsync(replica, cluster, node.Server) > renewedFrom,
            "the node's heartbeat to renew its registration in the promoted replica", FailoverBound);
        var reregistered = clock.Elapsed;
        await using var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Server });
        await Poll.UntilAsync(async () => (await direct.StatsAsync())["cluster_state"] == 2, "the node to report itself registered", FailoverBound);

        // The existing client still routes, and discovers a node that joins after the failover.
        await using var late = await SecureRegistryTests.StartNodeAsync(url, cluster);
        await SecureRegistryTests.RoutesToAsync(client, "after the failover", node, late);
        output.WriteLine($"master killed -> replica promoted {promoted.TotalSeconds:F1} s, node heartbeat in the new master {reregistered.TotalSeconds:F1} s, new node discovered {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public async Task When_the_old_master_comes_back_as_a_replica_heartbeats_keep_going_to_the_new_master()
    {
        // bench/chaos.py --sentinel: after the old master returned as a replica of the promoted one, nodes logged
        // READONLY for their heartbeats, their registrations expired and clients dropped live nodes.
        var (master, replica, sentinel) = await StartSentinelSetAsync();
        using var m = master;
        using var r = replica;
        using var sn = sentinel;
        var cluster = SecureRegistryTests.NewCluster();
        var url = $"redis+sentinel://127.0.0.1:{sentinel.Port}/kvmaster";
        await using var node = await SecureRegistryTests.StartNodeAsync(url, cluster, "--log-level", "information");

        await KillMasterUntilPromotedAsync(master, replica, sentinel);
        // At once, as chaos.py does: the node's registry may not have followed the failover yet.
        master.Restart("--replicaof", "127.0.0.1", replica.Port.ToString());
        long renewedFrom = await ExpiryAsync(replica, cluster, node.Server);
        await Poll.UntilAsync(async () => await ExpiryAsync(replica, cluster, node.Server) > renewedFrom,
            "the node's heartbeat to renew its registration in the promoted replica", FailoverBound);
        // The old master answers as a replica (it refuses writes with READONLY: the condition chaos.py saw) whether or not
        // its full sync is over; waiting for the sync too made the test fail on loaded machines, not the node.
        await Poll.UntilAsync(async () => (await master.CommandAsync(["INFO", "replication"])).Contains("role:slave", StringComparison.Ordinal),
            "the old master to run as a replica of the new one", FailoverBound);
        // Heartbeats go every TTL/4 (250 ms): over 8 s each 1-second window must renew the registration in the new master.
        var stale = new List<string>();
        for (int second = 0; second < 8; second++)
        {
            long before = await ExpiryAsync(replica, cluster, node.Server);
            await Task.Delay(1000);
            long after = await ExpiryAsync(replica, cluster, node.Server);
            if (after <= before) stale.Add($"second {second}: expiry {before} -> {after}");
        }
        Assert.True(stale.Count == 0, $"the node's heartbeats stopped reaching the new master: {string.Join("; ", stale)}; node log: {node.Stdout} {node.Stderr}");
        Assert.DoesNotContain("READONLY", node.Stdout + node.Stderr, StringComparison.Ordinal);
    }

    /// <summary>A master, its replica in sync, and a sentinel ("kvmaster") that knows both.</summary>
    private static async Task<(RedisProcess Master, RedisProcess Replica, RedisProcess Sentinel)> StartSentinelSetAsync()
    {
        var master = RedisProcess.Start();
        var replica = RedisProcess.Start("--replicaof", "127.0.0.1", master.Port.ToString());
        var sentinel = RedisProcess.StartSentinel(master, "kvmaster");
        try
        {
            await Poll.UntilAsync(async () => (await sentinel.CommandAsync(["SENTINEL", "REPLICAS", "kvmaster"])).Contains($"127.0.0.1:{replica.Port}", StringComparison.Ordinal),
                "the sentinel to learn of the replica", TimeSpan.FromSeconds(30));
            await Poll.UntilAsync(async () => (await replica.CommandAsync(["INFO", "replication"])).Contains("master_link_status:up", StringComparison.Ordinal),
                "the replica to be in sync with the master", TimeSpan.FromSeconds(15));
            return (master, replica, sentinel);
        }
        catch
        {
            sentinel.Dispose();
            replica.Dispose();
            master.Dispose();
            throw;
        }
    }

    /// <summary>Kills the master and waits for the sentinel to name the replica as master.</summary>
    private static async Task KillMasterUntilPromotedAsync(RedisProcess master, RedisProcess replica, RedisProcess sentinel)
    {
        master.Kill();
        await Poll.UntilAsync(async () => (await sentinel.CommandAsync(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "kvmaster"])) == $"127.0.0.1 {replica.Port}",
            "the sentinel to promote the replica", FailoverBound);
    }

    /// <summary>The node's expiry score in the members zset (0 when absent).</summary>
    private static async Task<long> ExpiryAsync(RedisProcess redis, string cluster, string id)
        => long.TryParse(await redis.CommandAsync(["ZSCORE", $"kvasir:{{{cluster}}}:members", id]), out var ms) ? ms : 0;
}
