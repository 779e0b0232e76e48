using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Kvasir.Cli;

/// <summary>
/// Plain TCP over loopback with <c>streams</c> connections in this process, the yardstick of
/// <c>kvasir transfer-bench --tcp-baseline</c> (iperf3 -P in spirit, same process and runtime as the engines): one
/// thread per stream sends 4 MiB at a time, one thread per stream receives into its own buffer, both with blocking
/// socket calls; GiB/s received over the measured time, and the process's CPU seconds per GiB received (both ends).
/// </summary>
internal static class TcpBaseline
{
    private const int Chunk = 4 << 20;

    /// <summary>
    /// Runs <paramref name="streams"/> streams for <paramref name="duration"/>. Each stream sends from and receives into
    /// buffers of <paramref name="bufferBytes"/> (at least 4 MiB), walking through them 4 MiB at a time: 4 MiB is
    /// iperf3's way (the same hot cache lines every send); a buffer as large as the engine's messages makes plain TCP
    /// touch as much cold memory per byte as the engine does.
    /// </summary>
    public static (double GiBPerSecond, double CpuSecondsPerGiB) Measure(int streams, TimeSpan duration, long bufferBytes = Chunk)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(streams);
        var pairs = new (Socket Send, Socket Receive)[streams];
        try
        {
            for (int i = 0; i < streams; i++)
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                client.Connect(listener.LocalEndPoint!);
                pairs[i] = (client, listener.Accept());
            }
            long received = 0;
            var before = ProcessCost.Now();
            var clock = Stopwatch.StartNew();
            var threads = new List<Thread>();
            foreach (var (send, receive) in pairs)
            {
                threads.Add(Background(() =>
                {
                    var data = Filled(bufferBytes);
                    for (long at = 0; clock.Elapsed < duration; at = (at + Chunk) % data.Length) send.Send(data, (int)at, Chunk, SocketFlags.None);
                    send.Shutdown(SocketShutdown.Send);
                }));
                threads.Add(Background(() =>
                {
                    var into = Filled(bufferBytes);
                    long mine = 0, at = 0;
                    for (int n; (n = receive.Receive(into, (int)at, Chunk, SocketFlags.None)) > 0; at = (at + Chunk) % into.Length) mine += n;
                    Interlocked.Add(ref received, mine);
                }));
            }
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            double gib = (double)received / (1 << 30);
            return (gib / clock.Elapsed.TotalSeconds, (ProcessCost.Now() - before).CpuSeconds / gib);
        }
        finally
        {
            foreach (var (send, receive) in pairs)
            {
                send?.Dispose();
                receive?.Dispose();
            }
        }
    }

    /// <summary>A buffer of a whole number of 4 MiB chunks, every page written once (no page faults while measured).</summary>
    private static byte[] Filled(long bytes)
    {
        var buffer = new byte[Math.Max(Chunk, bytes / Chunk * Chunk)];
        Array.Fill(buffer, (byte)1);
        return buffer;
    }

    private static Thread Background(ThreadStart body) => new(body) { IsBackground = true };
}
