using Kvasir.Cli.Tests;
using Kvasir.Client;
using Kvasir.Embedded;

namespace Kvasir.Cluster.Tests;

/// <summary>Registration: heartbeats, clean leave, losing Redis and getting it back, embedded nodes, the status table.</summary>
public sealed class MembershipTests
{
    [Fact]
    public async Task A_node_registers_its_record_and_a_clean_stop_removes_it_at_once()
    {
        await using var cluster = await ClusterHarness.StartAsync(2);
        await using var registry = await cluster.RegistryAsync();
        var snapshot = await registry.ReadAsync();
        var record = snapshot.Nodes.Single(n => n.Id == cluster.Nodes[0].Server);
        Assert.Equal(cluster.Nodes[0].Server, record.Address);
        Assert.Equal(128L << 20, record.Capacity);
        Assert.Equal("node", record.Kind);
        Assert.NotEmpty(record.Version);

        Kvasir.Cli.Tests.Cli.SendSigterm(cluster.Nodes[0].Process);
        Assert.True(await cluster.Nodes[0].WaitForExitAsync(TimeSpan.FromSeconds(15)));
        Assert.Equal(0, cluster.Nodes[0].Process.ExitCode);
        // Removed by the node itself, not by expiry: immediately, and listed as gone, not down.
        var after = await registry.ReadAsync();
        Assert.Equal([cluster.Nodes[1].Server], after.Nodes.Select(n => n.Id));
        Assert.True(after.Epoch > snapshot.Epoch);
        Assert.DoesNotContain(await registry.ListAllAsync(), m => m.Record.Id == cluster.Nodes[0].Server);
    }

    [Fact]
    public async Task A_node_that_loses_redis_keeps_serving_reports_degraded_and_registers_again_when_redis_returns()
    {
        await using var cluster = await ClusterHarness.StartAsync(1);
        var node = cluster.Nodes[0];
        await using var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Server });
        Assert.Equal(2, (await direct.StatsAsync())["cluster_state"]);   // registered

        var admin = "http://" + System.Text.RegularExpressions.Regex.Match(node.Stdout, @"admin on http://(\S+?)/").Groups[1].Value;
        using var http = new HttpClient();
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync(admin + "/v1/health")).StatusCode);

        cluster.Redis.Kill();
        await Poll.UntilAsync(async () => (await direct.StatsAsync())["cluster_state"] == 3, "the node to report itself degraded", TimeSpan.FromSeconds(15));
        var health = await http.GetAsync(admin + "/v1/health");
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, health.StatusCode);
        var body = System.Text.Json.JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("degraded", body.GetProperty("components").GetProperty("redis").GetProperty("status").GetString());
        // Still serving its clients.
        var key = TestValues.KeyMemory("while-redis-is-down");
        Assert.Equal(KvStatus.Ok, (await direct.PutAsync([key], [TestValues.For("x", 4096)]))[0]);
        Assert.Equal(TestValues.For("x", 4096), await direct.GetAsync(key));

        cluster.Redis.Restart();   // an empty Redis on the same port: the registration is gone
        await Poll.UntilAsync(async () => (await direct.StatsAsync())["cluster_state"] == 2, "the node to register again", TimeSpan.FromSeconds(30));
        await cluster.WaitForLiveAsync(1);
        await using var client = await cluster.ClientAsync();
        Assert.Equal(TestValues.For("x", 4096), await client.GetAsync(key));
        Assert.True((node.Stdout + node.Stderr).Contains("cluster registry unreachable", StringComparison.Ordinal), $"no degraded warning in the log: {node.Stdout} {node.Stderr}");
    }

    [Fact]
    public async Task A_client_keeps_its_nodes_while_a_registry_that_lost_its_state_fills_up_again()
    {
        // A Redis restarted without persistence (here: FLUSHALL) forgets every node until its next heartbeat. The
        // client must not shrink its view meanwhile: keys would be placed on a partial membership (found by bench/chaos.py).
        await using var cluster = await ClusterHarness.StartAsync(3);
        await cluster.WaitForLiveAsync(3);
        await using var client = await cluster.ClientAsync(replicas: 2);
        await Poll.UntilAsync(() => client.Nodes.Count == 3, "the client to see 3 nodes");
        var keys = Enumerable.Range(0, 50).Select(i => TestValues.KeyMemory($"reset/{i}")).ToArray();
        Assert.All(await client.PutAsync(keys, keys), s => Assert.Equal(KvStatus.Ok, s));

        await cluster.Redis.CommandAsync(["FLUSHALL"]);
        int fewest = 3;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(3))   // several heartbeats: every node registers again meanwhile
        {
            fewest = Math.Min(fewest, client.Nodes.Count);
            await Task.Delay(5);
        }
        Assert.Equal(3, fewest);
        await cluster.WaitForLiveAsync(3);
        Assert.All(await client.ExistsAsync(keys), v => Assert.Equal(1, v));
    }

    [Fact]
    public async Task A_client_keeps_routing_to_known_nodes_while_redis_is_down()
    {
        await using var cluster = await ClusterHarness.StartAsync(2);
        await using var client = await cluster.ClientAsync();
        cluster.Redis.Kill();
        var keys = Enumerable.Range(0, 50).Select(i => TestValues.KeyMemory($"no-redis/{i}")).ToArray();
        Assert.All(await client.PutAsync(keys, keys), s => Assert.Equal(KvStatus.Ok, s));
        Assert.All(await client.ExistsAsync(keys), v => Assert.Equal(1, v));
        Assert.Equal(2, client.Nodes.Count);
    }

    [Fact]
    public async Task A_cluster_store_reports_its_failed_membership_polls_while_redis_is_down_and_clears_the_error_once_it_is_back()
    {
        // The watcher's LastError and Failures were reachable from no client surface: a store whose registry was down
        // routed on a frozen view with nothing to show for it.
        await using var cluster = await ClusterHarness.StartAsync(0);
        await using var client = await cluster.ClientAsync();
        Assert.True(client.MembershipError is null && client.MembershipFailures == 0, $"{client.MembershipFailures} failed polls: {client.MembershipError}");

        cluster.Redis.Kill();
        await Poll.UntilAsync(() => client.MembershipFailures >= 2 && client.MembershipError is not null,
            () => $"the store to count its failed polls ({client.MembershipFailures}, error {client.MembershipError})", TimeSpan.FromSeconds(15));
        Assert.Contains($"127.0.0.1:{cluster.Redis.Port}", client.MembershipError, StringComparison.Ordinal);

        cluster.Redis.Restart();
        await Poll.UntilAsync(() => client.MembershipError is null,
            () => $"the store's polls to succeed again (error {client.MembershipError})", TimeSpan.FromSeconds(30));
        long failed = client.MembershipFailures;
        Assert.True(failed >= 2, $"the count went back to {failed}: it counts every failed poll since the store connected");
    }

    [Fact]
    public async Task An_embedded_node_registers_like_any_other_and_serves_its_own_keys_without_the_network()
    {
        await using var cluster = await ClusterHarness.StartAsync(2);
        await using var embedding = await cluster.ClientAsync(embedded: new EmbeddedNodeOptions { Capacity = 64L << 20, ClientId = "rank-0" });
        Assert.Equal("rank-0", embedding.NodeId);
        await using var registry = await cluster.RegistryAsync();
        var record = (await registry.ReadAsync()).Nodes.Single(n => n.Id == "rank-0");
        Assert.Equal("embedded", record.Kind);
        Assert.Equal(64L << 20, record.Capacity);

        // Another process's view includes it; keys placed on it are served to that other client over TCP.
        await using var other = await cluster.ClientAsync();
        await Poll.UntilAsync(() => Task.FromResult(other.Nodes.Count == 3), "the other client to see 3 nodes", TimeSpan.FromSeconds(10));
        var keys = Enumerable.Range(0, 300).Select(i => $"emb/{i}").ToArray();
        var local = keys.Where(k => embedding.Placement(TestValues.KeyMemory(k).Span).Single() == "rank-0").ToArray();
        Assert.NotEmpty(local);
        Assert.All(await embedding.PutAsync(keys.Select(TestValues.KeyMemory).ToArray(), keys.Select(k => (ReadOnlyMemory<byte>)TestValues.For(k, 2048)).ToArray()),
            s => Assert.Equal(KvStatus.Ok, s));
        foreach (var k in local.Take(20)) Assert.Equal(TestValues.For(k, 2048), await other.GetAsync(TestValues.KeyMemory(k)));

        // Its own writes of local keys did not cross a socket: the values are stored, yet the bytes
        // the node received are only the other client's small GET requests.
        var stats = (await embedding.NodeStatsAsync()).Single(n => n.Node.Id == "rank-0").Stats!;
        Assert.Equal(local.Length, stats["keys"]);
        Assert.True(stats["bytes_in"] < 20 * 1024, $"bytes_in {stats["bytes_in"]}: local values went over the network");
        Assert.True(stats["bytes_out"] >= 20 * 2048, $"bytes_out {stats["bytes_out"]}: the other client's reads were not served over TCP");
    }

    [Fact]
    public async Task Status_lists_every_node_up_then_the_killed_one_as_not_up()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        var ok = await Kvasir.Cli.Tests.Cli.RunAsync("status", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Contains($"cluster {cluster.Name}: 3 up, 0 not up", ok.Out);
        foreach (var n in cluster.Nodes) Assert.Contains(ok.OutLines, l => l.StartsWith(n.Server, StringComparison.Ordinal) && l.Contains(" up "));

        cluster.Nodes[2].Process.Kill();
        var bad = await Kvasir.Cli.Tests.Cli.RunAsync("status", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains(bad.OutLines, l => l.StartsWith(cluster.Nodes[2].Server, StringComparison.Ordinal) && (l.Contains("unreachable") || l.Contains("down")));

        // a forgotten --cluster (or a wrong one) found zero nodes and said "0 up" with exit 0; now it says where it
        // looked, which clusters that Redis holds, and fails
        var forgot = await Kvasir.Cli.Tests.Cli.RunAsync("status", "--redis", cluster.Redis.Url);
        Assert.Equal(1, forgot.ExitCode);
        var line = Assert.Single(forgot.ErrLines);
        Assert.StartsWith($"kvasir status: no node is up in cluster 'default' at {cluster.Redis.Url}; clusters with nodes there: ", line);
        Assert.Contains(cluster.Name, line);
        Assert.EndsWith("(give --cluster NAME)", line);
    }

    [Fact]
    public async Task Cli_put_and_get_route_through_the_registry()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllBytesAsync(file, TestValues.For("cli", 5000));
            var put = await Kvasir.Cli.Tests.Cli.RunAsync("put", "--redis", cluster.Redis.Url, "--cluster", cluster.Name, "--replicas", "2", "cli-key", file);
            Assert.True(put.ExitCode == 0, put.ToString());
            Assert.Contains("stored on ", put.Stderr);
            var get = await Kvasir.Cli.Tests.Cli.RunAsync("get", "--redis", cluster.Redis.Url, "--cluster", cluster.Name, "cli-key");
            Assert.True(get.ExitCode == 0, get.ToString());
            Assert.Equal(TestValues.For("cli", 5000), get.Stdout);
            var bad = await Kvasir.Cli.Tests.Cli.RunAsync("get", "--redis", "http://nope", "cli-key");
            Assert.Equal(2, bad.ExitCode);
            Assert.Contains("--redis", bad.Stderr);
        }
        finally { File.Delete(file); }
    }
}
