using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server.Tests.Support;

/// <summary>
/// The node these tests talk to over raw sockets: the shared <see cref="TestNode"/> (127.0.0.1, port 0,
/// fails the test on leaked reservations or leases) with small limits, and a witness connection.
/// </summary>
public static class ServerNode
{
    public const long MaxValue = 1L << 20;

    public static TestNode Start(byte[]? authKey = null, TimeSpan? frameTimeout = null, TimeSpan? leaseTimeout = null,
        int maxQueuedReplies = 64, TimeSpan? drainTimeout = null) => TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 64L << 20, MaxValueBytes = MaxValue, LeaseTimeout = leaseTimeout ?? TimeSpan.FromSeconds(30) },
            FrameTimeout = frameTimeout ?? TimeSpan.FromSeconds(2),
            AuthKey = authKey,
            MaxQueuedReplies = maxQueuedReplies,
            DrainTimeout = drainTimeout ?? TimeSpan.FromSeconds(10),
        });

    /// <summary>A well-behaved connection, opened with HELLO, that round-trips values to prove the node still serves.</summary>
    public static async Task<Witness> WitnessAsync(this TestNode node)
    {
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        var witness = new Witness(c);
        await witness.RoundTripAsync();
        return witness;
    }
}

/// <summary>Raw connection that keeps doing HELLO-then-PUT/GET round trips of 4 KiB values.</summary>
public sealed class Witness(RawConnection connection) : IDisposable
{
    private ulong _nextId = 100;
    private int _round;

    public RawConnection Connection { get; } = connection;

    public async Task RoundTripAsync()
    {
        int round = Interlocked.Increment(ref _round);
        var key = TestValues.Key($"witness/{round}/{Guid.NewGuid():N}");
        var value = TestValues.Value(round, 4096);
        ulong putId = _nextId++, getId = _nextId++;
        var put = await Connection.RequestAsync(Frames.Put(putId, (key, value)));
        RawConnection.AssertReply(put, Opcode.Put, putId);
        Assert.Equal([WireStatus.Ok], StatusListReply.Read(put.Meta, 1));
        var get = await Connection.RequestAsync(Frames.Get(getId, key));
        RawConnection.AssertReply(get, Opcode.Get, getId);
        var entries = GetReply.Read(get.Meta, 1, get.Header.PayloadLength);
        Assert.Equal(WireStatus.Ok, entries[0].Status);
        Assert.Equal(Crc32C.Compute(value), entries[0].Crc32C);
        Assert.True(value.AsSpan().SequenceEqual(get.Payload), "the witness read back different bytes than it stored");
    }

    /// <summary>GET one key over the witness connection.</summary>
    public async Task<(GetReplyEntry Entry, byte[] Payload)> GetAsync(byte[] key)
    {
        ulong id = _nextId++;
        var get = await Connection.RequestAsync(Frames.Get(id, key));
        RawConnection.AssertReply(get, Opcode.Get, id);
        return (GetReply.Read(get.Meta, 1, get.Header.PayloadLength)[0], get.Payload);
    }

    public void Dispose() => Connection.Dispose();
}
