using System.Net;
using System.Net.Sockets;
using Kvasir.Protocol;

namespace Kvasir.Client.Tests;

/// <summary>
/// A TCP relay between a client and a node that, once armed, flips one payload byte of the next GET reply that is long
/// enough: the corruption a faulty NIC, a kernel bug or a stray write into a receive buffer would cause, with the frame's
/// lengths intact. Requests and every other reply pass unchanged. Frames are parsed from their 32-byte headers.
/// </summary>
public sealed class FlippingRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _node;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _pumps = [];
    private readonly List<Socket> _sockets = [];
    private readonly Task _accept;
    private long _flipAt = -1;
    private int _flips;

    public FlippingRelay(string nodeAddress)
    {
        int colon = nodeAddress.LastIndexOf(':');
        _node = new IPEndPoint(IPAddress.Parse(nodeAddress[..colon]), int.Parse(nodeAddress[(colon + 1)..]));
        _listener.Start();
        _accept = AcceptAsync();
    }

    public string Address => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>GET replies corrupted so far.</summary>
    public int Flips => Volatile.Read(ref _flips);

    /// <summary>The next GET reply with more than <paramref name="payloadOffset"/> payload bytes gets that byte xor-ed with 0x5A; −1 disarms.</summary>
    public void Arm(long payloadOffset) => Interlocked.Exchange(ref _flipAt, payloadOffset);

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client, node = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token);
                await node.ConnectAsync(_node, _stop.Token);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                node.Dispose();
                return;
            }
            client.NoDelay = true;
            lock (_sockets) { _sockets.Add(client); _sockets.Add(node); }
            lock (_pumps)
            {
                _pumps.Add(Task.Run(() => CopyAsync(client, node)));
                _pumps.Add(Task.Run(() => RepliesAsync(node, client)));
            }
        }
    }

    private async Task CopyAsync(Socket from, Socket to)
    {
        var buffer = new byte[256 * 1024];
        try
        {
            int n;
            while ((n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token)) > 0)
                await RelaySockets.SendAllAsync(to, buffer.AsMemory(0, n), _stop.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
        finally { RelaySockets.Shut(to); }
    }

    private async Task RepliesAsync(Socket from, Socket to)
    {
        var header = new byte[ProtocolLimits.HeaderSize];
        var buffer = new byte[256 * 1024];
        try
        {
            while (await RelaySockets.ReadExactAsync(from, header, _stop.Token))
            {
                var h = FrameHeader.Read(header);
                await RelaySockets.SendAllAsync(to, header, _stop.Token);
                long flipAt = -1;
                if (h.Opcode == Opcode.Get && h.IsReply && Volatile.Read(ref _flipAt) is >= 0 and var at && at < h.PayloadLength
                    && Interlocked.CompareExchange(ref _flipAt, -1, at) == at)
                {
                    flipAt = at;
                    Interlocked.Increment(ref _flips);
                }
                long left = h.MetaLength + h.PayloadLength, position = -h.MetaLength;   // position: offset in the payload
                while (left > 0)
                {
                    var chunk = buffer.AsMemory(0, (int)Math.Min(buffer.Length, left));
                    if (!await RelaySockets.ReadExactAsync(from, chunk, _stop.Token)) return;
                    if (flipAt >= 0 && flipAt >= position && flipAt < position + chunk.Length) chunk.Span[(int)(flipAt - position)] ^= 0x5A;
                    await RelaySockets.SendAllAsync(to, chunk, _stop.Token);
                    position += chunk.Length;
                    left -= chunk.Length;
                }
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
        finally { RelaySockets.Shut(to); }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accept;
        lock (_sockets) foreach (var s in _sockets) s.Dispose();
        Task[] pumps;
        lock (_pumps) pumps = [.. _pumps];
        await Task.WhenAll(pumps);
        _stop.Dispose();
    }
}
