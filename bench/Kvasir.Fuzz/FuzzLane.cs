using System.Net;
using System.Net.Sockets;

namespace Kvasir.Fuzz;

/// <summary>
/// One fuzzing lane: opens a connection, usually says HELLO, sends a handful of corpus frames (mutated or not) in
/// random chunks while a reader drains whatever comes back, then closes gracefully or with a reset.
/// </summary>
internal sealed class FuzzLane(FrameMutator mutator, int port, Random rng)
{
    public long Connections { get; private set; }
    public long Frames { get; private set; }
    public long BytesSent { get; private set; }
    public long BytesReceived;

    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try { await OneConnectionAsync(stop); }
            catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or ObjectDisposedException) { }
        }
    }

    private async Task OneConnectionAsync(CancellationToken stop)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), stop);
        Connections++;
        using var lifetime = CancellationTokenSource.CreateLinkedTokenSource(stop);
        var reader = DrainAsync(socket, lifetime.Token);
        try
        {
            int opening = rng.Next(10);
            if (opening != 0) await SendAsync(socket, opening % 2 == 0 ? mutator.HelloAllFeatures : mutator.Hello, stop);
            int frames = 1 + rng.Next(12);
            for (int i = 0; i < frames; i++)
            {
                await SendAsync(socket, mutator.Next(), stop);
                Frames++;
            }
            // Give the node a moment to answer (or to wait for bytes that never come), then go.
            await Task.WhenAny(reader, Task.Delay(rng.Next(1, 200), stop));
        }
        finally
        {
            if (rng.Next(2) == 0) socket.LingerState = new LingerOption(true, 0);   // close with a reset
            else try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
            lifetime.Cancel();
            try { await reader; } catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException) { }
        }
    }

    private async Task SendAsync(Socket socket, byte[] bytes, CancellationToken ct)
    {
        int sent = 0;
        while (sent < bytes.Length)
        {
            int chunk = rng.Next(4) == 0 ? 1 + rng.Next(Math.Min(16, bytes.Length - sent)) : bytes.Length - sent;
            int n = await socket.SendAsync(bytes.AsMemory(sent, chunk), SocketFlags.None, ct);
            sent += n;
            BytesSent += n;
        }
    }

    private async Task DrainAsync(Socket socket, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (n == 0) return;
            Interlocked.Add(ref BytesReceived, n);
        }
    }
}
