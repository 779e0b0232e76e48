using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server.Tests.Support;

/// <summary>
/// A node on 127.0.0.1, port 0, for one test. On dispose it waits (with a deadline) until no arena
/// reservation or lease is left, failing the test with what it waited for, then stops the node.
/// </summary>
public sealed class TestNode : IAsyncDisposable
{
    public const long MaxValue = 1L << 20;

    private TestNode(CacheNode node) => Node = node;

    public CacheNode Node { get; }

    public int Port => Node.Port;

    /// <summary>Set when a test stopped the node itself (the store is gone; nothing left to check).</summary>
    public bool Stopped { get; set; }

    public static TestNode Start(byte[]? authKey = null, TimeSpan? frameTimeout = null, TimeSpan? leaseTimeout = null,
        int maxQueuedReplies = 64, TimeSpan? drainTimeout = null)
    {
        var node = new CacheNode(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 64L << 20, MaxValueBytes = MaxValue, LeaseTimeout = leaseTimeout ?? TimeSpan.FromSeconds(30) },
            FrameTimeout = frameTimeout ?? TimeSpan.FromSeconds(2),
            AuthKey = authKey,
            MaxQueuedReplies = maxQueuedReplies,
            DrainTimeout = drainTimeout ?? TimeSpan.FromSeconds(10),
        });
        node.Start();
        return new TestNode(node);
    }

    public StoreStats Stats => Node.Store.GetStats();

    public Task WaitForNoLeaksAsync(double seconds = 15) =>
        Poll.Until(() => Stats is { Reservations: 0, ActiveLeases: 0 },
            () => $"no arena reservations or leases left on the node (now: {Stats.Reservations} reservations, {Stats.ActiveLeases} leases)", seconds);

    /// <summary>A well-behaved connection, opened with HELLO, that round-trips values to prove the node still serves.</summary>
    public async Task<Witness> WitnessAsync()
    {
        var (c, _) = await RawConnection.ConnectHelloAsync(Port);
        var witness = new Witness(c);
        await witness.RoundTripAsync();
        return witness;
    }

    public async ValueTask DisposeAsync()
    {
        if (!Stopped)
        {
            try
            {
                await WaitForNoLeaksAsync();
            }
            finally
            {
                await Node.StopAsync();
            }
        }
        else
        {
            await Node.StopAsync();
        }
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
        var key = Frames.Key($"witness/{round}/{Guid.NewGuid():N}");
        var value = Frames.Value(round, 4096);
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

public static class Poll
{
    /// <summary>Polls <paramref name="condition"/> until it holds; fails with what was awaited when the deadline passes.</summary>
    public static async Task Until(Func<bool> condition, Func<string> awaited, double seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out after {seconds} s waiting for: {awaited()}");
            await Task.Delay(10);
        }
    }

    public static Task Until(Func<bool> condition, string awaited, double seconds = 10) => Until(condition, () => awaited, seconds);
}
