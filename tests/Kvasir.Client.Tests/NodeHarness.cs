using Kvasir.Client;
using Kvasir.Embedded;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Client.Tests;

/// <summary>
/// A real node on 127.0.0.1 (port 0) with a client over the chosen transport: "tcp" talks to it
/// over the wire, "shm" maps its /dev/shm arena (control over the wire), "inproc" calls the same
/// node in-process. Each client is checked to have got the transport asked for. On dispose it closes
/// the clients, then the shared <see cref="TestNode"/> fails the test if arena reservations or leases leaked.
/// </summary>
public sealed class NodeHarness : IAsyncDisposable
{
    private readonly List<KvStore> _clients = [];

    private readonly TestNode _node;

    private NodeHarness(TestNode node, string transport, string? authKeyHex)
    {
        _node = node;
        Transport = transport;
        AuthKeyHex = authKeyHex;
    }

    public static readonly string[] TransportNames = ["tcp", "shm", "inproc"];

    public static readonly TheoryData<string> Transports = new(TransportNames);

    public CacheNode Node => _node.Node;
    public string Transport { get; }
    public string? AuthKeyHex { get; }
    public KvStore Store => _clients[0];
    public string Address => _node.Address;

    public static async Task<NodeHarness> StartAsync(string transport, StoreOptions? store = null, string? authKeyHex = null, int connections = 2)
    {
        var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = store ?? new StoreOptions { Capacity = 256L << 20 },
            AuthKey = authKeyHex is null ? null : Convert.FromHexString(authKeyHex),
            SharedMemory = transport == "shm",
        });
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

    /// <summary>A key as the client API takes it (<see cref="ReadOnlyMemory{T}"/>), from the shared <see cref="TestValues.Key"/>.</summary>
    public static ReadOnlyMemory<byte> Key(string text) => TestValues.Key(text);

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _clients) await c.DisposeAsync();
        await _node.DisposeAsync();   // fails the test if reservations or leases are left, then stops the node
    }
}
