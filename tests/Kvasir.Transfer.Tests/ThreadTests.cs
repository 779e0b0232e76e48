using System.Net;
using System.Net.Sockets;

namespace Kvasir.Transfer.Tests;

/// <summary>
/// The lanes' threading model (docs/transfer.md § Threads): every lane has a receiver and a sender thread doing
/// blocking socket calls on a descriptor that stays in blocking mode; handshakes run on short-lived threads bounded
/// by the handshake timeout; closing a connection ends its lanes' threads and disposing an engine joins all of them.
/// </summary>
public sealed class ThreadTests
{
    [Fact]
    public async Task Every_lane_descriptor_stays_blocking_on_both_sides_after_the_handshake_and_traffic()
    {
        using var pair = await EnginePair.StartAsync(new() { Ncpus = 2, NconnPerCpu = 2 }, new() { Ncpus = 2, NconnPerCpu = 2 });
        var src = Bytes.Pattern(8 << 20, 1);
        var dst = new byte[8 << 20];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, src.Length, pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length)).WaitAsync(EnginePair.Deadline);
        await pair.Target.SendNotificationAsync(pair.TargetConnId, new byte[] { 1, 2, 3 }).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
        // A descriptor in non-blocking mode would mean an asynchronous operation ran on it: the runtime's event loop
        // would then stand between the kernel and the lane's threads again.
        Assert.Equal([true, true, true, true], pair.Initiator.LaneDescriptorsBlocking(pair.ConnId));
        Assert.Equal([true, true, true, true], pair.Target.LaneDescriptorsBlocking(pair.TargetConnId));
        // A receiver and a sender per lane; the connect and handshake threads end once their lane is handed over.
        await Poll.UntilAsync(() => pair.Initiator.LiveThreadCount == 8 && pair.Target.LiveThreadCount == 8,
            () => $"8 threads in each engine for 4 lanes (now {pair.Initiator.LiveThreadCount} and {pair.Target.LiveThreadCount})");
    }

    [Fact]
    public async Task Twenty_connections_opened_used_and_closed_leave_no_lane_thread_running_in_either_engine()
    {
        using var a = TransferEngine.Start(new() { Ncpus = 2, NconnPerCpu = 2 });
        using var b = TransferEngine.Start(new() { Ncpus = 2, NconnPerCpu = 2 });
        var src = Bytes.Pattern(1 << 20, 2);
        var dst = new byte[1 << 20];
        int s = a.Register(src), d = b.Register(dst);
        for (int i = 0; i < 20; i++)
        {
            var accepting = b.AcceptAsync();
            int conn = await a.ConnectAsync("127.0.0.1", b.Port).WaitAsync(EnginePair.Deadline);
            int peer = (await accepting.WaitAsync(EnginePair.Deadline)).ConnId;
            await a.WriteAsync(conn, s, 0, src.Length, b.Advertise(peer, d, 0, dst.Length)).WaitAsync(EnginePair.Deadline);
            if (i % 2 == 0) a.CloseConnection(conn);
            else b.CloseConnection(peer);   // the other side closing ends this side's lanes too
            await Poll.UntilAsync(() => a.Connections.Count == 0 && b.Connections.Count == 0, $"connection {i + 1} to leave both engines");
        }
        Assert.Equal(src, dst);
        await Poll.UntilAsync(() => a.LiveThreadCount == 0 && b.LiveThreadCount == 0,
            () => $"every lane thread to end after 20 closed connections (still running: {a.LiveThreadCount} and {b.LiveThreadCount})");
    }

    [Fact]
    public async Task Dispose_during_a_write_in_flight_fails_it_and_returns_with_every_thread_of_the_engine_ended()
    {
        const int size = 256 << 20;
        using var a = TransferEngine.Start(new() { Ncpus = 2, NconnPerCpu = 2 });
        var b = TransferEngine.Start(new() { Ncpus = 2, NconnPerCpu = 2 });
        var accepting = b.AcceptAsync();
        int conn = await a.ConnectAsync("127.0.0.1", b.Port).WaitAsync(EnginePair.Deadline);
        int peer = (await accepting.WaitAsync(EnginePair.Deadline)).ConnId;
        var src = new byte[size];
        var dst = new byte[size];
        var write = a.WriteAsync(conn, a.Register(src), 0, size, b.Advertise(peer, b.Register(dst), 0, size));
        b.Dispose();
        Assert.Equal(0, b.LiveThreadCount);
        var e = await Assert.ThrowsAsync<TransferException>(() => write.WaitAsync(EnginePair.Deadline));
        Assert.Equal(TransferError.ConnectionLost, e.Code);
        await Poll.UntilAsync(() => a.LiveThreadCount == 0, "the initiator's lane threads to end once the target went away");
        a.Dispose();
        Assert.Equal(0, a.LiveThreadCount);
    }

    [Fact]
    public async Task A_lane_that_connects_and_never_says_HELLO_is_closed_at_the_handshake_timeout_and_its_thread_ends()
    {
        using var engine = TransferEngine.Start(new() { HandshakeTimeout = TimeSpan.FromSeconds(1) });
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = (int)EnginePair.Deadline.TotalMilliseconds };
        silent.Connect(IPAddress.Loopback, engine.Port);
        await Poll.UntilAsync(() => engine.LiveThreadCount == 1, "the silent lane's handshake thread to start");
        // Closed by the engine (an end of stream, or a reset: the watchdog closes a socket with a receive pending),
        // not ended by this receive's own timeout (TimedOut).
        try { Assert.Equal(0, silent.Receive(new byte[64])); }
        catch (SocketException e) { Assert.Equal(SocketError.ConnectionReset, e.SocketErrorCode); }
        await Poll.UntilAsync(() => engine.LiveThreadCount == 0, "the handshake thread to end");
    }

    [Fact]
    public async Task Connecting_to_a_listener_that_never_answers_HELLO_fails_at_the_handshake_timeout_and_leaves_no_thread()
    {
        using var mute = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        mute.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        mute.Listen(16);   // the kernel completes the connections; nobody reads or answers
        using var engine = TransferEngine.Start(new() { HandshakeTimeout = TimeSpan.FromSeconds(1), Ncpus = 2, NconnPerCpu = 2 });
        var e = await Assert.ThrowsAsync<TransferException>(() => engine.ConnectAsync("127.0.0.1", ((IPEndPoint)mute.LocalEndPoint!).Port).WaitAsync(EnginePair.Deadline));
        Assert.Equal(TransferError.ConnectFailed, e.Code);
        Assert.Contains("handshake not complete within the handshake timeout", e.Message);
        await Poll.UntilAsync(() => engine.LiveThreadCount == 0, "the four connect threads to end");
        Assert.Empty(engine.Connections);
    }
}
