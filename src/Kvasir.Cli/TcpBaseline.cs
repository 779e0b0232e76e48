using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Kvasir.Cli;

/// <summary>
/// Plain TCP over loopback with <c>streams</c> connections in this process, the yardstick of
/// <c>kvasir transfer-bench --tcp-baseline</c> (iperf3 -P in spirit, same process and runtime as the engines): one
/// thread per stream sends 4 MiB at a time, one thread per stream receives into its own buffer, both with blocking
/// socket calls; GiB/s received over the measured time.
/// </summary>
internal static class TcpBaseline
{
    private const int Chunk = 4 << 20;

    public static double GiBPerSecond(int streams, TimeSpan duration)
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
            var clock = Stopwatch.StartNew();
            var threads = new List<Thread>();
            foreach (var (send, receive) in pairs)
            {
                threads.Add(Background(() =>
                {
                    var data = new byte[Chunk];
                    while (clock.Elapsed < duration) send.Send(data);
                    send.Shutdown(SocketShutdown.Send);
                }));
                threads.Add(Background(() =>
                {
                    var into = new byte[Chunk];
                    long mine = 0;
                    for (int n; (n = receive.Receive(into)) > 0;) mine += n;
                    Interlocked.Add(ref received, mine);
                }));
            }
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            return received / clock.Elapsed.TotalSeconds / (1 << 30);
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

    private static Thread Background(ThreadStart body) => new(body) { IsBackground = true };
}
