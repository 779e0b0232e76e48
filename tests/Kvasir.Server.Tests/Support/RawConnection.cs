using System.Net;
using System.Net.Sockets;
using Kvasir.Protocol;

namespace Kvasir.Server.Tests.Support;

/// <summary>One frame as received from the node: header, metadata and payload.</summary>
public sealed record ReceivedFrame(FrameHeader Header, byte[] Meta, byte[] Payload)
{
    public string ErrorMessage => ErrorReply.Read(Meta);

    public override string ToString() =>
        $"{Header.Opcode} id={Header.RequestId} status={Header.Status} flags={Header.Flags} meta={Meta.Length} payload={Payload.Length}" +
        ((ushort)Header.Status >= 32 ? $" message=\"{ErrorMessage}\"" : "");
}

/// <summary>
/// A client socket that speaks raw bytes: the tests build every frame themselves (with the protocol
/// encoders, then bend them) and read replies with a deadline, telling a clean close from a reply.
/// </summary>
public sealed class RawConnection : IDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private RawConnection(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    /// <summary>Wraps a socket the test connected itself (from another local address, say).</summary>
    public static RawConnection Adopt(Socket socket) => new(socket);

    /// <summary>Connects to 127.0.0.1:<paramref name="port"/>. A small <paramref name="receiveBuffer"/> is set before connecting so the TCP window stays small.</summary>
    public static async Task<RawConnection> ConnectAsync(int port, int? receiveBuffer = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBuffer is { } size) socket.ReceiveBufferSize = size;
        try
        {
            using var cts = new CancellationTokenSource(DefaultTimeout);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new RawConnection(socket);
    }

    /// <summary>Connects and exchanges a valid HELLO (1..1); returns the decoded reply.</summary>
    public static async Task<(RawConnection Connection, HelloReply Hello)> ConnectHelloAsync(int port, int? receiveBuffer = null)
    {
        var c = await ConnectAsync(port, receiveBuffer);
        try
        {
            return (c, await c.HelloAsync());
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    public async Task<HelloReply> HelloAsync(ulong id = 1, ulong features = 0)
    {
        var reply = await RequestAsync(Frames.Hello(id, features: features));
        AssertReply(reply, Opcode.Hello, id);
        return HelloReply.Read(reply.Meta);
    }

    public async Task SendAsync(ReadOnlyMemory<byte> bytes)
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        while (!bytes.IsEmpty)
        {
            int n = await Socket.SendAsync(bytes, SocketFlags.None, cts.Token);
            bytes = bytes[n..];
        }
    }

    /// <summary>Sends one request and reads one reply.</summary>
    public async Task<ReceivedFrame> RequestAsync(byte[] frame, TimeSpan? timeout = null)
    {
        await SendAsync(frame);
        return await ReadFrameAsync(timeout) ?? throw new Xunit.Sdk.XunitException("the node closed the connection instead of replying");
    }

    /// <summary>
    /// Reads one whole frame. Returns null when the node closed the connection (end of stream or
    /// reset) before the first byte; fails when it closes inside a frame or the deadline passes.
    /// </summary>
    public async Task<ReceivedFrame?> ReadFrameAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var header = new byte[ProtocolLimits.HeaderSize];
        try
        {
            if (!await ReadExactAsync(header, cts.Token)) return null;
            var h = FrameHeader.Read(header);
            var meta = new byte[h.MetaLength];
            var payload = new byte[checked((int)h.PayloadLength)];
            if (!await ReadExactAsync(meta, cts.Token) && meta.Length > 0) Assert.Fail("the node closed the connection inside a reply's metadata");
            if (!await ReadExactAsync(payload, cts.Token) && payload.Length > 0) Assert.Fail("the node closed the connection inside a reply's payload");
            return new ReceivedFrame(h, meta, payload);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"no reply (and no close) within {(timeout ?? DefaultTimeout).TotalSeconds} s");
            throw;
        }
    }

    /// <summary>Asserts that the node closes the connection without sending any further byte.</summary>
    public async Task AssertClosedWithoutReplyAsync(TimeSpan? timeout = null, string? because = null)
    {
        var t = timeout ?? DefaultTimeout;
        using var cts = new CancellationTokenSource(t);
        var buffer = new byte[4096];
        try
        {
            int n = await Socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n > 0) Assert.Fail($"expected the node to close the connection{Because(because)}, but {n} more bytes arrived");
        }
        catch (SocketException) { /* reset: closed */ }
        catch (OperationCanceledException) { Assert.Fail($"the node did not close the connection within {t.TotalSeconds} s{Because(because)}"); }
    }

    /// <summary>Reads and drops whatever arrives until the node closes the connection; fails when it does not close within the deadline.</summary>
    public async Task<long> DrainUntilClosedAsync(TimeSpan timeout, string because)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[256 * 1024];
        long total = 0;
        try
        {
            while (true)
            {
                int n = await Socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                if (n == 0) return total;
                total += n;
            }
        }
        catch (SocketException) { return total; }
        catch (OperationCanceledException) { Assert.Fail($"the node did not close the connection within {timeout.TotalSeconds} s: {because} ({total} bytes read)"); throw; }
    }

    /// <summary>Asserts an error reply (status ≥ 32, REPLY flag, error metadata), then that the connection closes.</summary>
    public async Task<ReceivedFrame> AssertErrorThenClosedAsync(WireStatus status, ulong? requestId = null, Opcode? opcode = null)
    {
        var reply = await ReadFrameAsync() ?? throw new Xunit.Sdk.XunitException($"expected a {status} reply, but the node closed the connection without one");
        Assert.True(reply.Header.Status == status, $"expected {status}, got {reply}");
        Assert.Equal(FrameFlags.Reply, reply.Header.Flags);
        Assert.Equal(0L, reply.Header.PayloadLength);
        _ = reply.ErrorMessage; // decodes
        if (requestId is { } id) Assert.True(reply.Header.RequestId == id, $"expected the error reply to carry request id {id}, got {reply}");
        if (opcode is { } op) Assert.True(reply.Header.Opcode == op, $"expected the error reply to carry opcode {op}, got {reply}");
        await AssertClosedWithoutReplyAsync(because: $"after a {status} reply");
        return reply;
    }

    public static void AssertReply(ReceivedFrame reply, Opcode opcode, ulong requestId)
    {
        Assert.True(reply.Header.Status == WireStatus.Ok && reply.Header.Opcode == opcode && reply.Header.RequestId == requestId && reply.Header.Flags == FrameFlags.Reply,
            $"expected an OK {opcode} reply to request {requestId}, got {reply}");
    }

    public void Dispose() => Socket.Dispose();

    private async Task<bool> ReadExactAsync(Memory<byte> destination, CancellationToken ct)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int n;
            try
            {
                n = await Socket.ReceiveAsync(destination[done..], SocketFlags.None, ct);
            }
            catch (SocketException) when (done == 0)
            {
                return false;
            }
            if (n == 0)
            {
                if (done == 0) return false;
                Assert.Fail($"the node closed the connection after {done} of {destination.Length} bytes");
            }
            done += n;
        }
        return true;
    }

    private static string Because(string? because) => because is null ? "" : $" ({because})";
}
