using System.Net.Sockets;
using System.Text;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Embedded.Tests;

/// <summary>The entry points of a node in the client's process: who owns the node, and what other processes see.</summary>
public sealed class EmbeddedKvStoreTests
{
    private static ReadOnlyMemory<byte> Key(string text) => Encoding.UTF8.GetBytes(text);

    private static byte[] Value(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static NodeOptions SmallNode() => new() { Port = 0, Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 } };

    [Fact]
    public async Task Start_serves_a_node_in_this_process_with_the_node_limits()
    {
        await using var store = EmbeddedKvStore.Start(SmallNode());

        Assert.Equal(KvTransportKind.InProcess, store.Transport);
        Assert.Equal(1L << 20, store.MaxValueBytes);
        var value = Value(1, 70_000);
        Assert.Equal(new[] { KvStatus.Ok, KvStatus.ValueTooLarge }, await store.PutAsync(Keys("a", "big"), [value, new byte[(1 << 20) + 1]]));
        Assert.Equal(value, await store.GetAsync(Key("a")));
        Assert.Null(await store.GetAsync(Key("big")));
        var stats = await store.StatsAsync();
        Assert.Equal(1, stats["keys"]);
        Assert.Equal(1, stats["requests_put"]);   // one batch is one request, as over the wire
    }

    [Fact]
    public async Task InProcess_leaves_the_node_running_and_its_values_readable_over_the_wire()
    {
        await using var node = new CacheNode(SmallNode());
        node.Start();
        var value = Value(2, 100_000);
        await using (var inProcess = EmbeddedKvStore.InProcess(node))
            Assert.Equal(new[] { KvStatus.Ok }, await inProcess.PutAsync(Keys("k"), [value]));

        Assert.True(node.IsServing, "disposing an InProcess store stopped the caller's node");
        await using var tcp = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}", Transport = KvTransportKind.Tcp });
        Assert.Equal(value, await tcp.GetAsync(Key("k")));
        // the node releases the GET's lease once its reply is sent, which can be just after the client has it
        await Kvasir.TestSupport.Poll.UntilAsync(() => node.Store.GetStats().ActiveLeases == 0, "the GET's lease to be released");
    }

    [Fact]
    public async Task An_owned_node_is_stopped_once_when_its_store_is_disposed()
    {
        var node = new CacheNode(SmallNode());
        node.Start();
        var store = KvStore.Open(new InProcessNode(node, ownsNode: true));
        Assert.Equal(node.NodeId, store.NodeId);

        await store.DisposeAsync();
        await store.DisposeAsync();

        Assert.False(node.IsServing, "disposing the store of an owned node left it serving");
    }

    [Fact]
    public async Task ConnectAsync_without_a_registry_makes_the_node_a_member_that_other_clients_reach_over_tcp()
    {
        var embedded = new EmbeddedNodeOptions { Capacity = 16L << 20, ClientId = "rank-0" };
        var store = await EmbeddedKvStore.ConnectAsync(new KvStoreOptions { Server = "", ConnectTimeout = TimeSpan.FromSeconds(2) }, embedded);
        string address;
        await using (store)
        {
            Assert.True(store.IsCluster);
            Assert.Equal("rank-0", store.NodeId);
            var member = Assert.Single(store.Nodes);
            address = member.Address;
            var keys = Enumerable.Range(0, 50).Select(i => Key($"emb/{i}")).ToArray();
            var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)Value(i, 4096)).ToArray();
            Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));

            var stats = (await store.NodeStatsAsync()).Single().Stats!;
            Assert.Equal(50, stats["keys"]);
            Assert.True(stats["bytes_in"] < 4096, $"bytes_in {stats["bytes_in"]}: the member's own puts crossed a socket");

            await using var other = await KvStore.ConnectAsync(new KvStoreOptions { Server = address, Transport = KvTransportKind.Tcp });
            Assert.Equal(values[7].ToArray(), await other.GetAsync(keys[7]));
        }

        await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = address, Transport = KvTransportKind.Tcp, ConnectTimeout = TimeSpan.FromSeconds(2) }));
    }

    [Theory]
    [InlineData(1000, "127.0.0.1:0", "capacity")]
    [InlineData(16L << 20, "localhost:0", "must be an IP address")]
    [InlineData(16L << 20, "127.0.0.1", "not HOST:PORT")]
    public async Task ConnectAsync_refuses_bad_embedded_options_with_the_reason(long capacity, string address, string reason)
    {
        var ex = await Assert.ThrowsAsync<KvasirException>(() => EmbeddedKvStore.ConnectAsync(
            new KvStoreOptions { Server = "" }, new EmbeddedNodeOptions { Capacity = capacity, DataPlaneAddress = address }));
        Assert.Contains(reason, ex.Message);
    }

    [Fact]
    public async Task ConnectAsync_on_a_taken_address_says_so_and_leaves_nothing_running()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        taken.Listen();
        var address = $"127.0.0.1:{((System.Net.IPEndPoint)taken.LocalEndPoint!).Port}";

        var ex = await Assert.ThrowsAsync<KvasirException>(() => EmbeddedKvStore.ConnectAsync(
            new KvStoreOptions { Server = "" }, new EmbeddedNodeOptions { Capacity = 16L << 20, DataPlaneAddress = address }));
        Assert.Contains("cannot listen", ex.Message);
    }

    private static ReadOnlyMemory<byte>[] Keys(params string[] keys) => KvStore.Keys(keys);
}
