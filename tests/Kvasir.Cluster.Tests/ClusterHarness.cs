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
        await Poll.UntilAsync(async () => (await registry.ReadAsync()).Nodes.Count == count, $"{count} live nodes in cluster {Name}", TimeSpan.FromSeconds(20));
    }

    /// <summary>A cluster client; <paramref name="replicas"/> 0: the cluster's setting.</summary>
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
