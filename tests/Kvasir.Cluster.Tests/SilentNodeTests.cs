using System.Diagnostics;
using Kvasir.Cli.Tests;
using Kvasir.Client;
using Kvasir.TestSupport;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// A node that stops answering without closing anything (a network partition, a stopped process) is skipped after its
/// first timeout, as one that refuses connections is. Found by bench/chaos.py --partition-every against the Python
/// client; the .NET client had the same rule (only an all-Unavailable batch marked a node down), so every request to a
/// silent node's keys waited the whole request timeout again until its registration expired.
/// </summary>
public sealed class SilentNodeTests
{
    [Fact]
    public async Task A_node_that_lets_a_request_time_out_is_marked_down_and_its_replica_serves()
    {
        using var redis = RedisProcess.Start();
        var name = "silent" + Guid.NewGuid().ToString("N")[..10];
        // A long heartbeat TTL: the stopped node stays registered for the whole test, as a partitioned one does until
        // its registration expires.
        var nodes = new List<ServeProcess>();
        ServeProcess? stopped = null;
        try
        {
            for (int i = 0; i < 3; i++)
                nodes.Add(await ServeProcess.StartAsync("--port", "0", "--memory", "64MiB", "--redis", redis.Url, "--cluster", name,
                    "--heartbeat-ttl", "120", "--admin-port", "off", "--log-level", "warning"));
            var log = new ListLoggerFactory();
            await using var client = await KvStore.ConnectAsync(new KvStoreOptions
            {
                RedisUrl = redis.Url,
                Cluster = name,
                Replicas = 2,
                MembershipPoll = TimeSpan.FromMilliseconds(100),
                ConnectTimeout = TimeSpan.FromSeconds(1),
                RequestTimeout = TimeSpan.FromSeconds(1),
                LoggerFactory = log,
            });
            await Poll.UntilAsync(() => Task.FromResult(client.Nodes.Count == 3), "the client to see 3 nodes", TimeSpan.FromSeconds(20));
            stopped = nodes[0];
            var silentId = client.Nodes.Single(n => n.Address == stopped.Server).Id;
            var key = Enumerable.Range(0, 200).Select(i => $"silent/{i}").First(k => client.Placement(TestValues.KeyMemory(k).Span).Contains(silentId));
            Assert.Equal(KvStatus.Ok, (await client.PutAsync([TestValues.KeyMemory(key)], [TestValues.For(key, 4096)]))[0]);

            Signal(stopped.Process, "STOP");   // its sockets stay open; nothing it receives is answered
            await Poll.UntilAsync(() => Task.FromResult(State(stopped.Process) == "T"), "the node's threads to stop", TimeSpan.FromSeconds(10));
            var after = TestValues.For(key + "/after", 4096);
            // Acknowledged by the other replica, after the timeout on the silent one.
            Assert.Equal(KvStatus.Ok, (await client.PutAsync([TestValues.KeyMemory(key)], [after]))[0]);
            Assert.Contains(log.Messages, m => m.Contains($"node {silentId}", StringComparison.Ordinal) && m.Contains("is unreachable; using replicas", StringComparison.Ordinal));
            var dest = new byte[4096];
            var got = await client.GetAsync([TestValues.KeyMemory(key)], [dest]);
            Assert.Equal(KvStatus.Ok, got[0].Status);
            Assert.True(after.AsSpan().SequenceEqual(dest), "the replica's copy of the second put");
        }
        finally
        {
            if (stopped is not null) Signal(stopped.Process, "CONT");
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    private static void Signal(Process p, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", $"-{signal} {p.Id}") { UseShellExecute = false })!;
        kill.WaitForExit(5000);
        Assert.Equal(0, kill.ExitCode);
    }

    private static string State(Process p) => File.ReadAllText($"/proc/{p.Id}/stat").Split(')')[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
}
