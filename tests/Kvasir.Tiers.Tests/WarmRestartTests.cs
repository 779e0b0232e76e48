using System.Collections.Concurrent;
using Kvasir.Cli.Tests;
using Kvasir.Client;

namespace Kvasir.Tiers.Tests;

/// <summary>A real `kvasir serve --disk` process killed with SIGKILL mid-stream, then restarted on the same directory.</summary>
public sealed class WarmRestartTests
{
    [Fact]
    public async Task After_kill_9_every_acknowledged_value_reads_back_exact_from_the_restarted_node()
    {
        using var dir = new TempDir();
        var acknowledged = new ConcurrentDictionary<string, int>();   // key -> size
        await using (var node = await ServeProcess.StartAsync("--port", "0", "--memory", "32MiB", "--disk", dir.Path, "--disk-capacity", "1GiB", "--log-level", "warning"))
        {
            var stop = new CancellationTokenSource();
            async Task Writer(int w)
            {
                await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Server, RequestTimeout = TimeSpan.FromSeconds(5) });
                var rng = new Random(w);
                for (int i = 0; i < 2000 && !stop.IsCancellationRequested; i++)
                {
                    var key = $"w{w}/{i}";
                    int size = rng.Next(1, 300_000);
                    var status = (await store.PutAsync([TestValues.Key(key)], [TestValues.For(key, size)]))[0];
                    if (status == KvStatus.Ok) acknowledged[key] = size;
                    else if (status is not (KvStatus.Unavailable or KvStatus.Timeout)) throw new Xunit.Sdk.XunitException($"put {key}: {status}");
                    else break;   // the node is gone
                }
            }
            var writers = Enumerable.Range(0, 3).Select(w => Task.Run(() => Writer(w))).ToArray();
            // Bounded: a writer that fails or a node that stops acknowledging fails the test instead of hanging it.
            await Poll.UntilAsync(() => acknowledged.Count >= 150 || writers.All(w => w.IsCompleted),
                () => $"150 acknowledged puts before the kill (have {acknowledged.Count})", TimeSpan.FromSeconds(60));
            if (acknowledged.Count < 150)
            {
                await Task.WhenAll(writers);   // rethrows a writer's failure
                Assert.Fail($"the writers finished with only {acknowledged.Count} acknowledged puts, before the kill");
            }
            node.Process.Kill();   // SIGKILL in the middle of the stream
            stop.Cancel();
            await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(30));
        }
        Assert.True(acknowledged.Count >= 150);

        await using var again = await ServeProcess.StartAsync("--port", "0", "--memory", "32MiB", "--disk", dir.Path, "--disk-capacity", "1GiB", "--log-level", "warning");
        Assert.Contains("values recovered", again.Stdout);
        await using var reader = await KvStore.ConnectAsync(new KvStoreOptions { Server = again.Server });
        foreach (var (key, size) in acknowledged)
        {
            var value = await reader.GetAsync(TestValues.Key(key));
            Assert.True(value is not null, $"{key} ({size} bytes) was acknowledged but is gone");
            Assert.True(value.AsSpan().SequenceEqual(TestValues.For(key, size)), $"{key}: wrong bytes");
        }
        var stats = await reader.StatsAsync();
        Assert.True(stats["disk_recovered_keys"] >= acknowledged.Count);
        Assert.Equal(0, stats["disk_corrupt"]);
    }
}
