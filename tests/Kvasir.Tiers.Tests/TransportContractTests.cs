using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// The store's contract holds whichever way a client reaches the node — TCP, shared memory, in-process — and
/// whichever lower tiers it has: the tier rules live in the tiered store, not in a transport's handlers.
/// </summary>
public sealed class TransportContractTests
{
    private const int Ki = 1024, Mi = 1 << 20;

    public static readonly TheoryData<string> TierSets = new("none", "disk", "shared", "disk+shared");

    public static readonly TheoryData<string> LowerTierSets = new("disk", "shared", "disk+shared");

    private sealed class Node : IAsyncDisposable
    {
        private readonly TempDir _disk = new(), _shared = new();

        public required CacheNode Server { get; init; }
        public required Dictionary<string, KvStore> Clients { get; init; }

        public static async Task<Node> StartAsync(string tiers, TempDir? disk = null, TempDir? shared = null)
        {
            var node = new Node { Server = null!, Clients = [] };
            var options = new TierOptions
            {
                DiskPath = tiers.Contains("disk", StringComparison.Ordinal) ? (disk ?? node._disk).Path : null,
                SharedFsPath = tiers.Contains("shared", StringComparison.Ordinal) ? (shared ?? node._shared).Path : null,
                DiskCapacity = 256L * Mi,
            };
            var server = new CacheNode(new NodeOptions
            {
                Port = 0,
                SharedMemory = true,
                Store = new StoreOptions { Capacity = 8L * Mi, MaxValueBytes = Mi },
                Tiers = options.Any ? options : null,
            });
            server.Start();
            var clients = new Dictionary<string, KvStore>
            {
                ["tcp"] = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{server.Port}", Transport = KvTransportKind.Tcp }),
                ["shm"] = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{server.Port}", Transport = KvTransportKind.Shm }),
                ["inproc"] = Kvasir.Embedded.EmbeddedKvStore.InProcess(server),
            };
            return new Node { Server = server, Clients = clients, };
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var c in Clients.Values) await c.DisposeAsync();
            await Server.StopAsync();
            _disk.Dispose();
            _shared.Dispose();
        }
    }

    private static async Task PutAsync(KvStore store, string key, byte[] value)
        => Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key(key)], [value]))[0]);

    /// <summary>Pushes everything else out of the 8 MiB arena (values written through stay in the lower tiers).</summary>
    private static async Task FillAsync(KvStore store, string tag)
    {
        for (int i = 0; i < 24; i++) await PutAsync(store, $"fill/{tag}/{i}", TestValues.For($"fill/{tag}/{i}", 512 * Ki));
    }

    [Theory]
    [MemberData(nameof(TierSets))]
    public async Task A_remove_through_one_transport_is_a_miss_through_every_other_in_dram_and_below(string tiers)
    {
        await using var node = await Node.StartAsync(tiers);
        var names = node.Clients.Keys.ToArray();
        int n = 0;
        foreach (var writer in names)
        {
            foreach (var remover in names)
            {
                foreach (bool evicted in new[] { false, true })
                {
                    if (evicted && tiers == "none") continue;
                    string key = $"rm/{n++}";
                    await PutAsync(node.Clients[writer], key, TestValues.For(key, 40 * Ki));
                    if (evicted)
                    {
                        await FillAsync(node.Clients[writer], key);
                        if (tiers.Contains("shared", StringComparison.Ordinal)) Assert.True(node.Server.Store.DrainShared(TimeSpan.FromSeconds(30)), "shared writes did not finish");
                        Assert.False(node.Server.Store.InDram(TestValues.Key(key)), $"{key} is still in DRAM");
                    }
                    foreach (var reader in names) Assert.Equal(new[] { 1 }, await node.Clients[reader].ExistsAsync([TestValues.Key(key)]));
                    Assert.Equal(KvStatus.Ok, (await node.Clients[remover].RemoveAsync([TestValues.Key(key)]))[0]);
                    foreach (var reader in names)
                    {
                        Assert.True(await node.Clients[reader].GetAsync(TestValues.Key(key)) is null, $"{key} written over {writer}, removed over {remover}, read over {reader} (evicted first: {evicted})");
                        Assert.Equal(new[] { 0 }, await node.Clients[reader].ExistsAsync([TestValues.Key(key)]));
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(LowerTierSets))]
    public async Task An_overwrite_is_never_undone_by_a_promotion_from_below(string tiers)
    {
        await using var node = await Node.StartAsync(tiers);
        int n = 0;
        foreach (var (name, client) in node.Clients)
        {
            string key = $"ow/{name}/{n++}";
            await PutAsync(client, key, TestValues.For(key, 64 * Ki, 1));
            await FillAsync(client, key + "/a");
            await PutAsync(client, key, TestValues.For(key, 64 * Ki, 2));
            await FillAsync(client, key + "/b");
            Assert.True(node.Server.Store.DrainShared(TimeSpan.FromSeconds(30)), "shared writes did not finish");
            foreach (var reader in node.Clients.Values)
            {
                for (int read = 0; read < 3; read++)   // the second read from below promotes; the third is a DRAM hit
                    Assert.Equal(TestValues.For(key, 64 * Ki, 2), await reader.GetAsync(TestValues.Key(key)));
            }
        }
    }

    [Theory]
    [InlineData("inproc", "disk")]
    [InlineData("inproc", "disk+shared")]
    [InlineData("tcp", "disk")]
    [InlineData("shm", "disk+shared")]
    public async Task A_put_acknowledged_over_any_transport_survives_a_node_that_stops_without_shutting_down(string transport, string tiers)
    {
        // In-process: the node is abandoned without StopAsync (no flush, no clean close) and a second node opens the same
        // directories, as after the host process died. tests/Kvasir.Tiers.Tests/WarmRestartTests.cs kills a real process.
        using var disk = new TempDir();
        using var shared = new TempDir();
        var crashed = await Node.StartAsync(tiers, disk, shared);
        var keys = Enumerable.Range(0, 40).Select(i => $"dur/{transport}/{i}").ToArray();
        foreach (var k in keys) await PutAsync(crashed.Clients[transport], k, TestValues.For(k, 100 * Ki));
        GC.KeepAlive(crashed);   // never stopped: its files are left as a crash leaves them

        await using var again = await Node.StartAsync(tiers, disk, shared);
        foreach (var k in keys)
            foreach (var (name, client) in again.Clients)
                Assert.True(await client.GetAsync(TestValues.Key(k)) is { } v && v.AsSpan().SequenceEqual(TestValues.For(k, 100 * Ki)), $"{k} lost (read over {name})");
    }
}
