using System.Net;
using System.Net.Sockets;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;

namespace Kvasir.Server.Tests;

/// <summary>
/// What one client can take from a node (issue 16): shared-memory leases and reservations are bounded per
/// connection and freed when they expire, ALLOC never hands out earlier bytes, a connection that does not
/// finish its handshake or its header is cut, and one address cannot take every connection slot. Each
/// attack runs next to a well-behaved witness client that must be served throughout.
/// </summary>
public sealed class ClientBoundsTests
{
    private const int ValueBytes = 64 * 1024;

    /// <summary>The arena of the nodes that test connection limits rather than storage: 16 MiB, 1 MiB values.</summary>
    private static StoreOptions SmallStore() => new() { Capacity = 16L << 20, MaxValueBytes = 1L << 20 };

    private static TestNode StartShmNode(int maxLeasesPerConnection = 65_536, long? maxReservedBytesPerConnection = null,
        TimeSpan? leaseTimeout = null, long capacity = 16L << 20) => TestNode.Start(new NodeOptions
        {
            Port = 0,
            SharedMemory = true,
            Store = new StoreOptions { Capacity = capacity, MaxValueBytes = 4L << 20, LeaseTimeout = leaseTimeout ?? TimeSpan.FromSeconds(30) },
            FrameTimeout = TimeSpan.FromSeconds(2),
            MaxLeasesPerConnection = maxLeasesPerConnection,
            MaxReservedBytesPerConnection = maxReservedBytesPerConnection,
        });

    private static byte[] AllocFrame(ulong id, params (byte[] Key, long Length)[] entries)
    {
        int size = 4 + entries.Sum(e => 2 + e.Key.Length + 8);
        var meta = new byte[size];
        var w = new MetaWriter(meta);
        w.U32((uint)entries.Length);
        foreach (var (key, length) in entries) ShmMessages.WriteAllocEntry(ref w, key, length);
        return Frames.Frame(Opcode.Alloc, id, meta);
    }

    private static byte[] IdListFrame(Opcode opcode, ulong id, params ulong[] ids)
    {
        var meta = new byte[ShmMessages.IdListSize(ids.Length)];
        var w = new MetaWriter(meta);
        ShmMessages.WriteIdList(ref w, ids);
        return Frames.Frame(opcode, id, meta);
    }

    private static async Task<AllocEntry[]> AllocAsync(RawConnection c, ulong id, params (byte[] Key, long Length)[] entries)
    {
        var reply = await c.RequestAsync(AllocFrame(id, entries));
        RawConnection.AssertReply(reply, Opcode.Alloc, id);
        return ShmMessages.ReadAllocReply(reply.Meta);
    }

    private static async Task<LeaseEntry[]> LeaseAsync(RawConnection c, ulong id, params byte[][] keys)
    {
        var reply = await c.RequestAsync(Frames.KeyOp(Opcode.Lease, id, keys));
        RawConnection.AssertReply(reply, Opcode.Lease, id);
        return ShmMessages.ReadLeaseReply(reply.Meta);
    }

    private static async Task PutAsync(RawConnection c, ulong id, byte[] key, byte[] value)
    {
        var reply = await c.RequestAsync(Frames.Put(id, (key, value)));
        RawConnection.AssertReply(reply, Opcode.Put, id);
        Assert.Equal([WireStatus.Ok], StatusListReply.Read(reply.Meta, 1));
    }

    [Fact]
    public async Task Committing_an_allocation_without_writing_it_never_exposes_bytes_of_a_removed_value()
    {
        // The attack: a client that cannot open the 0600 arena file reserves, commits without writing and reads
        // the value back over TCP. Secrets fill the arena first and are removed, so the allocator reuses their space.
        await using var node = StartShmNode();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        ulong id = 1;
        const int Secrets = 64;
        for (int i = 0; i < Secrets; i++) await PutAsync(c, id++, TestValues.Key($"secret/{i}"), Frames.Filled(ValueBytes, 0xAB));
        var removed = await c.RequestAsync(Frames.KeyOp(Opcode.Remove, id, Enumerable.Range(0, Secrets).Select(i => TestValues.Key($"secret/{i}")).ToArray()));
        RawConnection.AssertReply(removed, Opcode.Remove, id++);

        var entries = await AllocAsync(c, id++, Enumerable.Range(0, Secrets).Select(i => (TestValues.Key($"probe/{i}"), (long)ValueBytes)).ToArray());
        Assert.All(entries, e => Assert.Equal(WireStatus.Ok, e.Status));
        var commit = await c.RequestAsync(IdListFrame(Opcode.Commit, id, entries.Select(e => e.ReservationId).ToArray()));
        RawConnection.AssertReply(commit, Opcode.Commit, id++);
        Assert.All(StatusListReply.Read(commit.Meta, Secrets), s => Assert.Equal(WireStatus.Ok, s));

        for (int i = 0; i < Secrets; i++)
        {
            var get = await c.RequestAsync(Frames.Get(id, TestValues.Key($"probe/{i}")));
            RawConnection.AssertReply(get, Opcode.Get, id++);
            Assert.Equal(ValueBytes, get.Payload.Length);
            int dirty = Array.FindIndex(get.Payload, b => b != 0);
            Assert.True(dirty < 0, $"probe/{i}: an unwritten allocation must read as zeros, found byte 0x{(dirty < 0 ? 0 : get.Payload[dirty]):x2} at {dirty}");
        }
    }

    [Fact]
    public async Task One_connection_cannot_reserve_more_than_its_share_so_an_84_byte_alloc_evicts_nothing()
    {
        // 6 MiB of values in a 16 MiB arena, then one ALLOC asking for 4 x 4 MiB. With a 4 MiB share per connection
        // the first fits without evicting anything and the rest are refused; every stored value is still there.
        await using var node = StartShmNode(maxReservedBytesPerConnection: 4L << 20);
        using var witness = await node.WitnessAsync();
        ulong id = 1;
        const int Stored = 96;
        for (int i = 0; i < Stored; i++) await PutAsync(witness.Connection, 1000 + (ulong)i, TestValues.Key($"keep/{i}"), TestValues.For($"keep/{i}", ValueBytes));

        var (attacker, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _a = attacker;
        var entries = await AllocAsync(attacker, id++, Enumerable.Range(0, 4).Select(i => (TestValues.Key($"giant/{i}"), 4L << 20)).ToArray());
        Assert.Equal([WireStatus.Ok, WireStatus.OutOfMemory, WireStatus.OutOfMemory, WireStatus.OutOfMemory], entries.Select(e => e.Status).ToArray());
        Assert.Equal(0, node.Stats.Evictions);

        for (int i = 0; i < Stored; i++)
        {
            var (entry, payload) = await witness.GetAsync(TestValues.Key($"keep/{i}"));
            Assert.Equal(WireStatus.Ok, entry.Status);
            Assert.True(TestValues.Matches(payload, TestValues.Key($"keep/{i}")), $"keep/{i} came back different");
        }
        await witness.RoundTripAsync();

        // Its share comes back when the reservation is committed: the next ALLOC of 4 MiB fits again.
        var commit = await attacker.RequestAsync(IdListFrame(Opcode.Commit, id, entries[0].ReservationId));
        RawConnection.AssertReply(commit, Opcode.Commit, id++);
        Assert.Equal(WireStatus.Ok, (await AllocAsync(attacker, id++, (TestValues.Key("giant/again"), 4L << 20)))[0].Status);
    }

    [Fact]
    public async Task Expired_leases_leave_the_connection_table_and_a_connection_over_its_lease_limit_is_cut_with_the_reason()
    {
        await using var node = StartShmNode(maxLeasesPerConnection: 100, leaseTimeout: TimeSpan.FromSeconds(1));
        using var witness = await node.WitnessAsync();
        await PutAsync(witness.Connection, 900, TestValues.Key("leased"), TestValues.For("leased", 4096));
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        var key = TestValues.Key("leased");

        // 100 leases never released: the store's reaper releases them after 1 s, and they leave the connection's table.
        var first = await LeaseAsync(c, 1, Enumerable.Repeat(key, 100).ToArray());
        Assert.All(first, e => Assert.Equal(WireStatus.Ok, e.Status));
        Assert.Equal(100, node.Node.ShmLeasesHeld);
        await Poll.UntilAsync(() => node.Node.ShmLeasesHeld == 0, "expired leases to leave the connection's table");

        // The table is empty again, so another 100 fit; the 101st held at once is over the limit: the connection is cut.
        Assert.All(await LeaseAsync(c, 2, Enumerable.Repeat(key, 100).ToArray()), e => Assert.Equal(WireStatus.Ok, e.Status));
        var over = await c.RequestAsync(Frames.KeyOp(Opcode.Lease, 3, key));
        Assert.Equal(WireStatus.LimitExceeded, over.Header.Status);
        Assert.Contains("holds 100 leases (limit 100)", over.ErrorMessage);
        await c.AssertClosedWithoutReplyAsync();
        await Poll.UntilAsync(() => node.Node.ShmLeasesHeld == 0, "the cut connection's leases to be released");
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task A_connection_that_stops_inside_a_header_or_never_says_hello_is_cut()
    {
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = SmallStore(),
            FrameTimeout = TimeSpan.FromSeconds(1),
            HandshakeTimeout = TimeSpan.FromSeconds(1),
        });
        using var witness = await node.WitnessAsync();

        using var silent = await RawConnection.ConnectAsync(node.Port);
        var (halfHeader, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _h = halfHeader;
        await halfHeader.SendAsync(Frames.Ping(7).AsMemory(0, 10));

        await silent.AssertClosedWithoutReplyAsync(TimeSpan.FromSeconds(10), "a connection that sent nothing for the handshake timeout");
        await halfHeader.AssertClosedWithoutReplyAsync(TimeSpan.FromSeconds(10), "a connection stopped 10 bytes into a header");
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task An_idle_timeout_cuts_authenticated_connections_only_when_set()
    {
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = SmallStore(),
            IdleTimeout = TimeSpan.FromSeconds(1),
        });
        var (idle, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _i = idle;
        await idle.AssertClosedWithoutReplyAsync(TimeSpan.FromSeconds(10), "a connection idle past the idle timeout");

        // A connection that keeps sending requests is never idle: the timer restarts with each request.
        await using (var busyNode = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = SmallStore(),
            IdleTimeout = TimeSpan.FromSeconds(3),
        }))
        {
            var (busy, _) = await RawConnection.ConnectHelloAsync(busyNode.Port);
            using var _b = busy;
            for (ulong i = 0; i < 10; i++)   // 5 s of requests, one every 0.5 s: longer than the idle timeout in all
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500));
                RawConnection.AssertReply(await busy.RequestAsync(Frames.Ping(20 + i)), Opcode.Ping, 20 + i);
            }
        }

        await using var patient = ServerNode.Start();
        var (kept, _) = await RawConnection.ConnectHelloAsync(patient.Port);
        using var _k = kept;
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        var pong = await kept.RequestAsync(Frames.Ping(9));
        RawConnection.AssertReply(pong, Opcode.Ping, 9);
    }

    [Fact]
    public async Task One_address_cannot_take_every_connection_slot()
    {
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = SmallStore(),
            MaxConnections = 16,
            MaxConnectionsPerAddress = 8,
        });
        // The attacker connects from 127.0.0.2 (any 127/8 address is loopback on Linux) and holds 8 idle connections.
        var attackers = new List<Socket>();
        try
        {
            for (int i = 0; i < 8; i++) attackers.Add(await ConnectFromAsync(IPAddress.Parse("127.0.0.2"), node.Port));
            using var refused = RawConnection.Adopt(await ConnectFromAsync(IPAddress.Parse("127.0.0.2"), node.Port));
            await refused.AssertClosedWithoutReplyAsync(TimeSpan.FromSeconds(10), "the 9th connection from one address");
            Assert.Equal(8, node.Node.OpenConnections);

            using var witness = await node.WitnessAsync();
            await witness.RoundTripAsync();
        }
        finally
        {
            foreach (var s in attackers) s.Dispose();
        }
    }

    [Fact]
    public async Task Half_sent_large_metadata_from_one_address_is_bounded_and_other_clients_are_served()
    {
        // 20 connections from 127.0.0.2 each announce 1 MiB of GET metadata and send all but its last byte. With an
        // 8 MiB node-wide budget one address holds at most 2 MiB: two are buffered, the rest wait without being read.
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = SmallStore(),
            MaxMetaBytes = 1 << 20,
            MaxBufferedMetaBytes = 8L << 20,
            FrameTimeout = TimeSpan.FromSeconds(3),
        });
        var attackers = new List<RawConnection>();
        var sends = new List<Task>();
        try
        {
            for (int i = 0; i < 20; i++)
            {
                var a = RawConnection.Adopt(await ConnectFromAsync(IPAddress.Parse("127.0.0.2"), node.Port));
                attackers.Add(a);
                await a.HelloAsync();
                var frame = Frames.Concat(Frames.RawHeader((byte)Opcode.Get, 1, 1 << 20, 0), new byte[(1 << 20) - 1]);
                sends.Add(a.Socket.SendAsync(frame, SocketFlags.None));
            }
            await Poll.UntilAsync(() => node.Node.MetaBytesBuffered == 2L << 20, () => $"two attackers' metadata to be buffered (now {node.Node.MetaBytesBuffered} bytes)");

            // A client from another address sends a 600 KiB batch and is served while the attack holds its share.
            using var witness = await node.WitnessAsync();
            var keys = Enumerable.Range(0, 1200).Select(i => TestValues.Key($"batch/{i}/" + new string('k', 480))).ToArray();
            var get = await witness.Connection.RequestAsync(Frames.Get(77, keys));
            RawConnection.AssertReply(get, Opcode.Get, 77);
            Assert.All(GetReply.Read(get.Meta, keys.Length, get.Header.PayloadLength), e => Assert.Equal(WireStatus.NotFound, e.Status));
            // The witness's own metadata is given back just after its reply is queued (the reply may be on the wire first).
            await Poll.UntilAsync(() => node.Node.MetaBytesBuffered == 2L << 20,
                () => $"the witness's metadata to be given back, leaving the attackers' 2 MiB (now {node.Node.MetaBytesBuffered} bytes)");

            // The frame timeout cuts the buffered ones and, once they give their share back, the waiting ones.
            await Poll.UntilAsync(() => node.Node.MetaBytesBuffered == 0 && node.Node.OpenConnections == 1,
                () => $"every attacker to be cut ({node.Node.MetaBytesBuffered} bytes buffered, {node.Node.OpenConnections} connections)", TimeSpan.FromSeconds(60));
            await witness.RoundTripAsync();
        }
        finally
        {
            foreach (var a in attackers) a.Dispose();
            foreach (var send in sends)
            {
                try { await send; } catch (SocketException) { } catch (ObjectDisposedException) { }
            }
        }
    }

    private static async Task<Socket> ConnectFromAsync(IPAddress local, int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(local, 0));
        using var cts = new CancellationTokenSource(RawConnection.DefaultTimeout);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
        return socket;
    }
}
