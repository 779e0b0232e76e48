using System.Text;
using Kvasir.Cli.Tests;
using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>Cluster-wide settings in the registry (docs/cluster.md § Cluster settings): clients that do not say R use the cluster's.</summary>
public sealed class ClusterSettingsTests
{
    private const int Size = 2000;

    [Fact]
    public async Task A_key_written_with_the_clusters_two_replicas_is_read_after_a_node_dies_by_a_client_that_did_not_say_R()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        var set = await Kvasir.Cli.Tests.Cli.RunAsync("cluster", "set", "replicas=2", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.True(set.ExitCode == 0, set.Stderr);
        Assert.Equal("replicas=2\n", Encoding.UTF8.GetString(set.Stdout));

        var keys = Enumerable.Range(0, 60).Select(i => $"settings/{i}").ToArray();
        var victim = cluster.Nodes[0];
        string onVictim;   // a key whose first replica is the node that dies
        await using (var writer = await cluster.ClientAsync(replicas: 0))
        {
            Assert.Equal(2, writer.Placement(TestValues.Key(keys[0])).Count);
            var statuses = await writer.PutAsync(keys.Select(TestValues.KeyMemory).ToArray(), keys.Select(k => (ReadOnlyMemory<byte>)TestValues.For(k, Size)).ToArray());
            Assert.All(statuses, s => Assert.Equal(KvStatus.Ok, s));
            onVictim = keys.First(k => writer.Placement(TestValues.Key(k))[0] == victim.Server);
        }
        // The CLI writes one more, without --replicas.
        var cliKey = "settings/cli";
        var put = await Kvasir.Cli.Tests.Cli.RunWithInputAsync(TestValues.For(cliKey, Size), "put", "--redis", cluster.Redis.Url, "--cluster", cluster.Name, cliKey, "-");
        Assert.True(put.ExitCode == 0, put.Stderr);

        victim.Process.Kill();   // SIGKILL: every key it held is still on one other node
        await using var reader = await cluster.ClientAsync(replicas: 0);
        foreach (var k in keys.Append(cliKey))
        {
            var dest = new Memory<byte>[] { new byte[Size] };
            var got = await reader.GetAsync([TestValues.KeyMemory(k)], dest);
            Assert.True(got[0].Status == KvStatus.Ok, $"{k}: {got[0].Status} after {victim.Server} died");
            Assert.True(dest[0].Span.SequenceEqual(TestValues.For(k, Size)), $"{k}: wrong bytes");
        }
        // And the CLI, without --replicas, reads a key whose first replica is the dead node.
        var get = await Kvasir.Cli.Tests.Cli.RunAsync("get", "--redis", cluster.Redis.Url, "--cluster", cluster.Name, onVictim);
        Assert.True(get.ExitCode == 0, get.Stderr);
        Assert.Equal(TestValues.For(onVictim, Size), get.Stdout);
    }

    [Fact]
    public async Task A_running_client_that_did_not_say_R_follows_cluster_set_and_one_that_did_keeps_its_own()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        await using var following = await cluster.ClientAsync(replicas: 0);
        await using var own = await cluster.ClientAsync(replicas: 1);
        var key = TestValues.Key("follow");
        Assert.Single(following.Placement(key));

        var set = await Kvasir.Cli.Tests.Cli.RunAsync("cluster", "set", "replicas=2", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.True(set.ExitCode == 0, set.Stderr);
        await Poll.UntilAsync(() => following.Placement(key).Count == 2, "the running client to take the cluster's replicas=2 on a membership poll");
        Assert.Single(own.Placement(key));
        // its puts now make two copies
        Assert.Equal(KvStatus.Ok, (await following.PutAsync([TestValues.KeyMemory("follow")], [TestValues.For("follow", 100)]))[0]);
        Assert.Equal(2, (await following.StatsAsync())["keys"]);

        var unset = await Kvasir.Cli.Tests.Cli.RunAsync("cluster", "set", "replicas=", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.True(unset.ExitCode == 0, unset.Stderr);
        await Poll.UntilAsync(() => following.Placement(key).Count == 1, "the running client to go back to 1 replica when the setting is removed");
    }

    [Fact]
    public async Task A_bad_setting_is_refused_with_the_limit_and_a_client_override_wins()
    {
        await using var cluster = await ClusterHarness.StartAsync(2);
        var bad = await Kvasir.Cli.Tests.Cli.RunAsync("cluster", "set", "replicas=40", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("from 1 to 16", bad.Stderr);
        var unknown = await Kvasir.Cli.Tests.Cli.RunAsync("cluster", "set", "colour=blue", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("known: replicas", unknown.Stderr);
        var none = await Kvasir.Cli.Tests.Cli.RunAsync("cluster", "get", "--redis", cluster.Redis.Url, "--cluster", cluster.Name);
        Assert.Equal(0, none.ExitCode);
        Assert.Contains("has no settings", none.Stderr);

        Assert.Equal(0, (await Kvasir.Cli.Tests.Cli.RunAsync("cluster", "set", "replicas=2", "--redis", cluster.Redis.Url, "--cluster", cluster.Name)).ExitCode);
        await using (var byCluster = await cluster.ClientAsync(replicas: 0))
            Assert.Equal(2, byCluster.Placement(TestValues.Key("k")).Count);
        await using (var overridden = await cluster.ClientAsync(replicas: 1))
            Assert.Single(overridden.Placement(TestValues.Key("k")));
        // A value stored behind the CLI's back that this build cannot use: connecting says which setting and how to fix it.
        await cluster.Redis.CommandAsync(["HSET", $"kvasir:{{{cluster.Name}}}:settings", "replicas", "many"]);
        var ex = await Assert.ThrowsAsync<KvasirException>(() => cluster.ClientAsync(replicas: 0));
        Assert.Contains("replicas='many'", ex.Message);
    }
}
