using System.Text;
using Kvasir.Client;
using Kvasir.Embedded;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Client.Tests;

/// <summary>
/// A real node on 127.0.0.1 (port 0) with a client over the chosen transport: "tcp" talks to it
/// over the wire, "shm" maps its /dev/shm arena (control over the wire), "inproc" calls the same
/// node in-process. Each client is checked to have got the transport asked for. On dispose it fails
/// the test if arena reservations or leases leaked.
/// </summary>
public sealed class NodeHarness : IAsyncDisposable
{
    private readonly List<KvStore> _clients = [];

    private NodeHarness(CacheNode node, string transport, string? authKeyHex)
    {
        Node = node;
        Transport = transport;
        AuthKeyHex = authKeyHex;
    }

    public static readonly string[] TransportNames = ["tcp", "shm", "inproc"];

    public static readonly TheoryData<string> Transports = new(TransportNames);

    public CacheNode Node { get; }
    public string Transport { get; }
    public string? AuthKeyHex { get; }
    public KvStore Store => _clients[0];
    public string Address => $"127.0.0.1:{Node.Port}";

    public static async Task<NodeHarness> StartAsync(string transport, StoreOptions? store = null, string? authKeyHex = null, int connections = 2)
    {
        var node = new CacheNode(new NodeOptions
        {
            Port = 0,
            Store = store ?? new StoreOptions { Capacity = 256L << 20 },
            AuthKey = authKeyHex is null ? null : Convert.FromHexString(authKeyHex),
            SharedMemory = transport == "shm",
        });
        node.Start();
        var harness = new NodeHarness(node, transport, authKeyHex);
        await harness.NewClientAsync(connections);
        return harness;
    }

    /// <summary>Another client of the same node, over the harness's transport.</summary>
    public async Task<KvStore> NewClientAsync(int connections = 2, string? authKeyHex = null)
    {
        var kind = Transport switch { "inproc" => KvTransportKind.InProcess, "shm" => KvTransportKind.Shm, _ => KvTransportKind.Tcp };
        var client = kind == KvTransportKind.InProcess
            ? EmbeddedKvStore.InProcess(Node)
            : await KvStore.ConnectAsync(new KvStoreOptions { Server = Address, AuthKey = authKeyHex ?? AuthKeyHex, ConnectionsPerNode = connections, Transport = kind });
        _clients.Add(client);
        Assert.Equal(kind, client.Transport);
        return client;
    }

    public static ReadOnlyMemory<byte> Key(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>Deterministic bytes for (seed, length); different seeds give different bytes at every position with high probability.</summary>
    public static byte[] Value(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static async Task Eventually(Func<bool> condition, string awaited, double seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out after {seconds} s waiting for: {awaited}");
            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _clients) await c.DisposeAsync();
        await Eventually(() => Node.Store.GetStats() is { Reservations: 0, ActiveLeases: 0 }, "no reservations or leases left on the node");
        await Node.StopAsync();
    }
}
