using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Kvasir.Client;
using Kvasir.Client.Internal;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Client.Tests;

/// <summary>
/// The .NET client sends the CRC-32C it computes for each PUT value after the value (CRC_TRAILER), checksumming it as it
/// sends it; CRCs the caller gave go in the entries (VALUE_CRC), and so do computed ones against a node that does not
/// grant the trailer. A relay between client and node records the flags of every request and can hide the grant.
/// </summary>
public sealed class CrcTrailerClientTests
{
    private static long Mismatches(TestNode node) => node.Node.StatsSnapshot().Single(s => s.Key == "crc_mismatches").Value;

    private static TestNode StartNode() => TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 128L << 20 } });

    private static Task<KvStore> ConnectAsync(FrameRelay relay) =>
        KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{relay.Port}", Transport = KvTransportKind.Tcp, ConnectionsPerNode = 2 });

    public static TheoryData<int> Sizes => new(0, 1, FrameSender.ChecksumRun - 1, FrameSender.ChecksumRun, FrameSender.ChecksumRun + 1, 4 << 20);

    [Theory]
    [MemberData(nameof(Sizes))]
    public async Task A_value_of_a_boundary_size_goes_with_its_crc_after_it_and_comes_back_whole(int length)
    {
        await using var node = StartNode();
        await using var relay = FrameRelay.Start(node.Port);
        await using var store = await ConnectAsync(relay);
        var value = TestValues.Value(length, length);
        var other = TestValues.Value(7, 10_000);
        Assert.Equal([KvStatus.Ok, KvStatus.Ok], await store.PutAsync([TestValues.Key("v"), TestValues.Key("o")], [value, other]));
        Assert.Equal(value, await store.GetAsync(TestValues.Key("v")));
        Assert.Equal(other, await store.GetAsync(TestValues.Key("o")));
        // One PUT, or one per stripe when the batch is large enough to be striped (KvStoreOptions.StripeBytes): each with its CRCs after the values.
        Assert.NotEmpty(relay.PutFlags);
        Assert.All(relay.PutFlags, f => Assert.Equal(FrameFlags.CrcTrailer, f));
        Assert.Equal(0L, Mismatches(node));
    }

    [Fact]
    public async Task Gathered_pieces_and_many_small_values_in_one_batch_are_checksummed_across_their_pieces()
    {
        await using var node = StartNode();
        await using var relay = FrameRelay.Start(node.Port);
        await using var store = await ConnectAsync(relay);
        int run = FrameSender.ChecksumRun;
        var keys = Enumerable.Range(0, 200).Select(i => (ReadOnlyMemory<byte>)TestValues.Key($"g/{i}")).ToArray();
        var values = Enumerable.Range(0, 200).Select(i => TestValues.Value(i, i % 50 == 0 ? run + 3 * i : 1 + 97 * i)).ToArray();
        var pieces = values.Select((v, i) => i % 3 == 0 || v.Length < 10
            ? (IReadOnlyList<ReadOnlyMemory<byte>>)[v]
            : [v.AsMemory(0, 5), v.AsMemory(5, v.Length / 2), v.AsMemory(5 + v.Length / 2)]).ToArray();
        Assert.All(await store.PutGatherAsync(keys, pieces), s => Assert.Equal(KvStatus.Ok, s));
        for (int i = 0; i < values.Length; i++) Assert.Equal(values[i], await store.GetAsync(keys[i]));
        Assert.NotEmpty(relay.PutFlags);
        Assert.All(relay.PutFlags, f => Assert.Equal(FrameFlags.CrcTrailer, f));
        Assert.Equal(0L, Mismatches(node));
    }

    [Fact]
    public async Task Against_a_node_that_does_not_grant_the_trailer_the_computed_crcs_go_in_the_entries()
    {
        await using var node = StartNode();
        await using var relay = FrameRelay.Start(node.Port, hideFeatures: ProtocolFeatures.CrcTrailer);
        await AssertComputedCrcsGoInTheEntriesAsync(node, relay);
    }

    [Fact]
    public async Task Against_a_node_started_withholding_the_trailer_the_computed_crcs_go_in_the_entries()
    {
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            WithheldFeatures = ProtocolFeatures.CrcTrailer,   // kvasir serve --withhold-features 10
            Store = new StoreOptions { Capacity = 128L << 20 },
        });
        await using var relay = FrameRelay.Start(node.Port);
        await AssertComputedCrcsGoInTheEntriesAsync(node, relay);
    }

    /// <summary>A 300,000-byte put through <paramref name="relay"/> goes as VALUE_CRC (no trailer) and comes back whole.</summary>
    private static async Task AssertComputedCrcsGoInTheEntriesAsync(TestNode node, FrameRelay relay)
    {
        await using var store = await ConnectAsync(relay);
        var value = TestValues.Value(3, 300_000);
        Assert.Equal([KvStatus.Ok], await store.PutAsync([TestValues.Key("v")], [value]));
        Assert.Equal(value, await store.GetAsync(TestValues.Key("v")));
        Assert.Equal(FrameFlags.ValueCrc, Assert.Single(relay.PutFlags));
        Assert.Equal(0L, Mismatches(node));
    }

    [Fact]
    public async Task A_chained_put_under_a_parent_with_a_ttl_goes_with_trailers_and_comes_back_whole()
    {
        await using var node = StartNode();
        await using var relay = FrameRelay.Start(node.Port);
        await using var store = await ConnectAsync(relay);
        var parent = TestValues.Value(1, 5000);
        Assert.Equal([KvStatus.Ok], await store.PutAsync([TestValues.Key("p")], [parent]));
        var keys = Enumerable.Range(0, 4).Select(i => (ReadOnlyMemory<byte>)TestValues.Key($"c/{i}")).ToArray();
        var values = Enumerable.Range(0, 4).Select(i => TestValues.Value(10 + i, FrameSender.ChecksumRun / 2 + 1000 * i)).ToArray();
        var statuses = await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray(),
            new PutOptions { Chain = true, ChainParent = TestValues.Key("p"), Ttl = TimeSpan.FromHours(1) });
        Assert.All(statuses, s => Assert.Equal(KvStatus.Ok, s));
        for (int i = 0; i < values.Length; i++) Assert.Equal(values[i], await store.GetAsync(keys[i]));
        Assert.Equal(FrameFlags.CrcTrailer, relay.PutFlags[0]);
        Assert.All(relay.PutFlags.Skip(1), f => Assert.Equal(FrameFlags.CrcTrailer | FrameFlags.Chain | FrameFlags.ChainParent | FrameFlags.Ttl, f));
        Assert.Equal(0L, Mismatches(node));
    }

    [Fact]
    public async Task Crcs_the_caller_gives_go_in_the_entries_and_a_wrong_one_is_a_miss()
    {
        await using var node = StartNode();
        await using var relay = FrameRelay.Start(node.Port);
        await using var store = await ConnectAsync(relay);
        var a = TestValues.Value(1, 50_000);
        var b = TestValues.Value(2, 50_000);
        var statuses = await store.PutAsync([TestValues.Key("a"), TestValues.Key("b")], [a, b],
            new PutOptions { ValueCrc32C = [Crc32C.Compute(a), Crc32C.Compute(b) ^ 0xFF] });
        Assert.Equal([KvStatus.Ok, KvStatus.Ok], statuses);
        Assert.Equal(FrameFlags.ValueCrc, Assert.Single(relay.PutFlags));
        Assert.Equal(a, await store.GetAsync(TestValues.Key("a")));
        Assert.Null(await store.GetAsync(TestValues.Key("b")));
        Assert.Equal(1L, Mismatches(node));
    }
}

/// <summary>
/// A byte relay between clients and a node on 127.0.0.1. It follows the client's frames (header, then metadata and
/// payload by their lengths) to record each PUT's flags, and clears <c>hideFeatures</c> from the node's HELLO reply, so
/// that the client sees an older node. Everything else passes through unchanged.
/// </summary>
internal sealed class FrameRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _nodePort;
    private readonly ulong _hide;
    private readonly int _cutConnection;
    private int _cuts;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentBag<Task> _pumps = [];
    private readonly ConcurrentQueue<FrameFlags> _putFlags = new();
    private readonly ConcurrentBag<Socket> _sockets = [];
    private Task _accept = Task.CompletedTask;

    private FrameRelay(int nodePort, ulong hide, int cutConnection)
    {
        _nodePort = nodePort;
        _hide = hide;
        _cutConnection = cutConnection;
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>The flags of every PUT the clients sent, in the order the relay saw them.</summary>
    public FrameFlags[] PutFlags => _putFlags.ToArray();

    /// <summary>Connections cut so far (<c>cutConnection</c>).</summary>
    public int Cuts => Volatile.Read(ref _cuts);

    /// <summary>
    /// A relay to the node on <paramref name="nodePort"/>. <paramref name="hideFeatures"/>: HELLO feature bits taken out of
    /// the node's reply. <paramref name="cutConnection"/> (from 1; 0: none): the connection accepted that many-th is cut
    /// when the client's first PUT on it arrives, none of that frame forwarded (a connection lost mid-batch).
    /// </summary>
    public static FrameRelay Start(int nodePort, ulong hideFeatures = 0, int cutConnection = 0)
    {
        var relay = new FrameRelay(nodePort, hideFeatures, cutConnection);
        relay._listener.Start();
        relay._accept = relay.AcceptAsync();
        return relay;
    }

    private async Task AcceptAsync()
    {
        try
        {
            for (int accepted = 1; ; accepted++)
            {
                var client = await _listener.AcceptSocketAsync(_stop.Token);
                var node = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await node.ConnectAsync(IPAddress.Loopback, _nodePort, _stop.Token);
                client.NoDelay = true;
                _sockets.Add(client);
                _sockets.Add(node);
                _pumps.Add(ClientToNodeAsync(client, node, cut: accepted == _cutConnection));
                _pumps.Add(NodeToClientAsync(node, client));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ClientToNodeAsync(Socket from, Socket to, bool cut)
    {
        var header = new byte[ProtocolLimits.HeaderSize];
        var buffer = new byte[1 << 16];
        try
        {
            while (await RelaySockets.ReadExactAsync(from, header, _stop.Token))
            {
                var h = FrameHeader.Read(header);
                if (cut && h.Opcode == Opcode.Put)
                {
                    Interlocked.Increment(ref _cuts);
                    from.Dispose();
                    return;
                }
                if (h.Opcode == Opcode.Put) _putFlags.Enqueue(h.Flags);
                await RelaySockets.SendAllAsync(to, header, _stop.Token);
                for (long left = h.MetaLength + h.PayloadLength; left > 0;)
                {
                    int n = await from.ReceiveAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), SocketFlags.None, _stop.Token);
                    if (n == 0) return;
                    await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
                    left -= n;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            RelaySockets.Shut(to);
        }
    }

    private async Task NodeToClientAsync(Socket from, Socket to)
    {
        var buffer = new byte[1 << 16];
        try
        {
            // The first frame is the HELLO reply: its metadata starts with the version (u16), then the granted features (u64).
            var hello = new byte[ProtocolLimits.HeaderSize + 10];
            if (!await RelaySockets.ReadExactAsync(from, hello, _stop.Token)) return;
            var features = hello.AsSpan(ProtocolLimits.HeaderSize + 2, 8);
            BinaryPrimitives.WriteUInt64LittleEndian(features, BinaryPrimitives.ReadUInt64LittleEndian(features) & ~_hide);
            await to.SendAsync(hello, SocketFlags.None, _stop.Token);
            while (true)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (n == 0) return;
                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            RelaySockets.Shut(to);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        foreach (var s in _sockets) s.Dispose();
        await _accept;
        await Task.WhenAll(_pumps);
        _stop.Dispose();
    }
}
