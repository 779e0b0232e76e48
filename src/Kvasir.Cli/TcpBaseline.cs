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
    private static readonly TimeSpan Warmup = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Runs <paramref name="streams"/> streams for <paramref name="duration"/>. Each stream sends from and receives into
    /// buffers of <paramref name="bufferBytes"/> (at least 4 MiB), walking through them 4 MiB at a time: 4 MiB is
    /// iperf3's way (the same hot cache lines every send); a buffer as large as the engine's messages makes plain TCP
    /// touch as much cold memory per byte as the engine does. The buffers are of <paramref name="memoryKind"/>
    /// (<see cref="BenchMemory"/>), as the engines' regions.
    /// </summary>
    public static (double GiBPerSecond, double CpuSecondsPerGiB) Measure(int streams, TimeSpan duration, long bufferBytes = Chunk, string memoryKind = "managed")
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
            // Every buffer is allocated and written before anything is timed; the streams then run a warm-up (the
            // engines get a warm-up transfer per cell) and the measured window is cut out of the middle of the run,
            // as iperf3 -O does: bytes received and process CPU time between two snapshots.
            var buffers = pairs.Select(_ => (Send: Filled(bufferBytes, memoryKind), Receive: Filled(bufferBytes, memoryKind))).ToArray();
            long received = 0;
            bool stop = false;
            var threads = new List<Thread>();
            try
            {
                for (int i = 0; i < streams; i++)
                {
                    var (send, receive) = pairs[i];
                    var (data, into) = buffers[i];
                    threads.Add(Background(() =>
                    {
                        for (long at = 0; !Volatile.Read(ref stop); at = (at + Chunk) % data.Length)
                        {
                            for (var rest = data.Span(at, Chunk); !rest.IsEmpty;) rest = rest[send.Send(rest, SocketFlags.None)..];
                        }
                        send.Shutdown(SocketShutdown.Send);
                    }));
                    threads.Add(Background(() =>
                    {
                        long at = 0;
                        for (int n; (n = receive.Receive(into.Span(at, (int)Math.Min(Chunk, into.Length - at)), SocketFlags.None)) > 0; at = (at + n) % into.Length)
                            Interlocked.Add(ref received, n);
                    }));
                }
                threads.ForEach(t => t.Start());
                Thread.Sleep(Warmup);
                long bytes0 = Interlocked.Read(ref received);
                var before = ProcessCost.Now();
                var clock = Stopwatch.StartNew();
                Thread.Sleep(duration);
                long bytes = Interlocked.Read(ref received) - bytes0;
                var cost = ProcessCost.Now() - before;
                double seconds = clock.Elapsed.TotalSeconds;
                double gib = (double)bytes / (1 << 30);
                return (gib / seconds, cost.CpuSeconds / gib);
            }
            finally
            {
                Volatile.Write(ref stop, true);
                threads.ForEach(t => t.Join());   // the senders stop, shut down, and so end their receivers
                foreach (var (data, into) in buffers)
                {
                    data.Dispose();
                    into.Dispose();
                }
            }
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
    private static BenchMemory Filled(long bytes, string memoryKind)
    {
        var buffer = BenchMemory.Allocate(memoryKind, Math.Max(Chunk, bytes / Chunk * Chunk));
        buffer.Fill(1);
        return buffer;
    }

    private static Thread Background(ThreadStart body) => new(body) { IsBackground = true };
}
