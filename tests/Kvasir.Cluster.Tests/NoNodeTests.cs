using System.Text;
using Kvasir.Cli.Tests;
using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// A wrong or forgotten cluster name (issue 19 item 3): every client path that finds no node up says, in one line, which
/// cluster and Redis it looked at and which clusters have nodes there, with the fix — not a bare "Unavailable".
/// </summary>
public sealed class NoNodeTests
{
    [Fact]
    public async Task A_store_of_a_cluster_with_no_node_up_names_the_cluster_the_redis_and_the_clusters_there()
    {
        await using var cluster = await ClusterHarness.StartAsync(1);
        var logs = new ListLoggerFactory();
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions
        {
            RedisUrl = cluster.Redis.Url,
            Cluster = "nope",
            MembershipPoll = TimeSpan.FromMilliseconds(100),
            ConnectTimeout = TimeSpan.FromSeconds(2),
            RequestTimeout = TimeSpan.FromSeconds(5),
            LoggerFactory = logs,
        });
        var line = $"no node is up in cluster 'nope' at {cluster.Redis.Url}; clusters with nodes there: {cluster.Name} (set KvStoreOptions.Cluster = NAME)";

        // Batch calls keep their per-key statuses; the line goes to the log, once.
        for (int i = 0; i < 3; i++)
            Assert.Equal(KvStatus.Unavailable, (await store.PutAsync(KvStore.Keys($"k{i}"), [new byte[] { 1, 2, 3 }]))[0]);
        var exists = await store.ExistsAsync(KvStore.Keys("k0"));
        Assert.Equal(-1, Assert.Single(exists));
        var get = await Assert.ThrowsAsync<KvasirException>(() => store.GetAsync(TestValues.KeyMemory("k0")));
        Assert.Equal($"get failed: Unavailable: {line}", get.Message);
        var ping = await Assert.ThrowsAsync<KvasirException>(() => store.PingAsync());
        Assert.Equal($"ping: {line}", ping.Message);
        var scan = await Assert.ThrowsAsync<KvasirException>(() => store.ScanAsync(default));
        Assert.Equal($"scan: {line}", scan.Message);
        await Assert.ThrowsAsync<KvasirException>(() => store.RemoveAllAsync());
        await Poll.UntilAsync(() => logs.Messages.Any(m => m.Contains(line, StringComparison.Ordinal)), () => $"the line in the log: {string.Join(" | ", logs.Messages)}");
        Assert.Single(logs.Messages, m => m.Contains("no node is up", StringComparison.Ordinal));

        // The right name works.
        await using var right = await cluster.ClientAsync();
        Assert.Equal(KvStatus.Ok, (await right.PutAsync(KvStore.Keys("k0"), [new byte[] { 1, 2, 3 }]))[0]);
    }

    [Fact]
    public async Task Every_cli_verb_given_a_cluster_with_no_node_up_says_where_it_looked_and_exits_non_zero()
    {
        const string Password = "zero-node-secret";
        using var redis = RedisProcess.Start("--requirepass", Password);
        var url = $"redis://:{Password}@127.0.0.1:{redis.Port}";
        var shown = $"redis://:***@127.0.0.1:{redis.Port}";
        await using var node = await ServeProcess.StartAsync("--port", "0", "--memory", "32MiB", "--redis", url, "--cluster", "prod", "--log-level", "warning");
        await Poll.UntilAsync(async () => (await redis.CommandAsync(["ZCARD", "kvasir:{prod}:members"], Password)) == "1", "the node to register in cluster prod");
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllBytesAsync(file, Encoding.UTF8.GetBytes("value"));
            string[][] verbs =
            [
                ["put", "k1", file], ["get", "k1"], ["exists", "k1"], ["rm", "k1"], ["rm", "--prefix", "k"], ["ls"], ["info", "k1"],
                ["stats"], ["ping"], ["bench", "--op", "put", "--value-size", "4KiB", "--requests", "10"],
            ];
            foreach (var verb in verbs)
            {
                // a forgotten --cluster (the default cluster) and a wrong one
                foreach (var cluster in new[] { "default", "nope" })
                {
                    var run = await Kvasir.Cli.Tests.Cli.RunAsync([verb[0], "--redis", url, .. cluster == "default" ? Array.Empty<string>() : ["--cluster", cluster], .. verb[1..]]);
                    Assert.True(run.ExitCode != 0, $"{string.Join(' ', verb)} --cluster {cluster}: exit 0 ({run})");
                    var err = Assert.Single(run.ErrLines);
                    Assert.Equal($"kvasir {verb[0]}: no node is up in cluster '{cluster}' at {shown}; clusters with nodes there: prod (give --cluster NAME)", err);
                    Assert.DoesNotContain(Password, run.ToString(), StringComparison.Ordinal);
                }
            }
            var right = await Kvasir.Cli.Tests.Cli.RunAsync("put", "--redis", url, "--cluster", "prod", "k1", file);
            Assert.True(right.ExitCode == 0, right.ToString());
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public async Task A_redis_with_no_cluster_at_all_and_a_cluster_whose_nodes_are_all_down_are_told_apart()
    {
        using var redis = RedisProcess.Start();
        var empty = await Kvasir.Cli.Tests.Cli.RunAsync("get", "--redis", redis.Url, "--cluster", "prod", "k1");
        Assert.Equal(3, empty.ExitCode);
        Assert.Equal($"kvasir get: no node is up in cluster 'prod' at {redis.Url}; no other cluster has nodes registered there (is this the Redis the nodes use?)",
            Assert.Single(empty.ErrLines));

        var node = await ServeProcess.StartAsync("--port", "0", "--memory", "32MiB", "--redis", redis.Url, "--cluster", "prod",
            "--heartbeat-ttl", "1", "--log-level", "warning");
        await using (node)
        {
            await Poll.UntilAsync(async () => (await redis.CommandAsync(["ZCARD", "kvasir:{prod}:members"])) == "1", "the node to register in cluster prod");
            node.Process.Kill();   // SIGKILL: its record stays, its registration expires after 1 s
        }
        await Poll.UntilAsync(async () =>
            (await Kvasir.Cli.Tests.Cli.RunAsync("get", "--redis", redis.Url, "--cluster", "prod", "k1")).Stderr.Contains("no node is up", StringComparison.Ordinal),
            "the killed node's registration to expire");
        var down = await Kvasir.Cli.Tests.Cli.RunAsync("get", "--redis", redis.Url, "--cluster", "prod", "k1");
        Assert.Equal(3, down.ExitCode);
        Assert.Equal($"kvasir get: no node is up in cluster 'prod' at {redis.Url} (its nodes registered there are all down: kvasir status lists them); no other cluster has nodes registered there",
            Assert.Single(down.ErrLines));
    }
}
