using System.Diagnostics;
using Kvasir.Cli.Tests;
using Kvasir.Client;
using Kvasir.Embedded;

namespace Kvasir.Cluster.Tests;

/// <summary>A redis-server and some `kvasir serve` processes registered in it under a cluster name of this test's own.</summary>
public sealed class ClusterHarness : IAsyncDisposable
{
    public static readonly TimeSpan HeartbeatTtl = TimeSpan.FromSeconds(1);

    private ClusterHarness(RedisProcess redis, string name) { Redis = redis; Name = name; }

    public RedisProcess Redis { get; }
    public string Name { get; }
    public List<ServeProcess> Nodes { get; } = [];

    public static async Task<ClusterHarness> StartAsync(int nodes, string memory = "128MiB")
    {
        var harness = new ClusterHarness(RedisProcess.Start(), "t" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            for (int i = 0; i < nodes; i++) await harness.AddNodeAsync(memory);
            await harness.WaitForLiveAsync(nodes);
            return harness;
        }
        catch
        {
            await harness.DisposeAsync();
            throw;
        }
    }

    public async Task<ServeProcess> AddNodeAsync(string memory = "128MiB")
    {
        var node = await ServeProcess.StartAsync("--port", "0", "--memory", memory, "--redis", Redis.Url, "--cluster", Name,
            "--heartbeat-ttl", HeartbeatTtl.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "--log-level", "warning");
        Nodes.Add(node);
        return node;
    }

    public async Task<RedisClusterRegistry> RegistryAsync() => await RedisClusterRegistry.ConnectAsync(RedisUrl.Parse(Redis.Url), Name, TimeSpan.FromSeconds(2));

    /// <summary>Waits until the registry lists exactly <paramref name="count"/> live nodes.</summary>
    public async Task WaitForLiveAsync(int count)
    {
        await using var registry = await RegistryAsync();
        await Eventually.TrueAsync(async () => (await registry.ReadAsync()).Nodes.Count == count, $"{count} live nodes in cluster {Name}", TimeSpan.FromSeconds(20));
    }

    public Task<KvStore> ClientAsync(int replicas = 1, EmbeddedNodeOptions? embedded = null)
    {
        var options = new KvStoreOptions
        {
            RedisUrl = Redis.Url,
            Cluster = Name,
            Replicas = replicas,
            MembershipPoll = TimeSpan.FromMilliseconds(100),
            ConnectTimeout = TimeSpan.FromSeconds(2),
            RequestTimeout = TimeSpan.FromSeconds(10),
        };
        return embedded is null ? KvStore.ConnectAsync(options) : EmbeddedKvStore.ConnectAsync(options, embedded);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var n in Nodes) await n.DisposeAsync();
        Redis.Dispose();
    }
}

public static class Eventually
{
    /// <summary>Polls <paramref name="condition"/> until true; fails naming what was awaited.</summary>
    public static async Task TrueAsync(Func<Task<bool>> condition, string what, TimeSpan deadline)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (await condition()) return;
            if (clock.Elapsed > deadline) throw new Xunit.Sdk.XunitException($"timed out after {deadline.TotalSeconds} s waiting for {what}");
            await Task.Delay(50);
        }
    }
}

/// <summary>Values that say which key and which write they belong to, so a wrong byte is always caught.</summary>
public static class Pattern
{
    public static byte[] Value(string key, int size)
    {
        var value = new byte[size];
        uint x = (uint)key.GetHashCode() | 1;
        for (int i = 0; i < size; i++) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; value[i] = (byte)x; }
        return value;
    }

    public static ReadOnlyMemory<byte> Key(string key) => System.Text.Encoding.UTF8.GetBytes(key);
}
