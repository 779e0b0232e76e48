using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Kvasir.Protocol;
using Kvasir.Transfer;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir transfer-bench</c>: two transfer engines in this process, connected over loopback; for every
/// message size and lane count, one-sided writes (or reads) of that size back to back with a number in
/// flight, timed one by one. Prints a table of medians and p99 per cell (or JSON lines).
/// </summary>
public static class TransferBenchCommand
{
    public const string Help = """
        kvasir transfer-bench [options]   transfer engine throughput and latency: two engines in this process over loopback,
                                          or two processes (two hosts) with --listen and --connect

          --sizes SIZES         message sizes                                  default 4KiB,64KiB,1MiB,16MiB,64MiB,256MiB
          --lanes NS            lanes per connection (2 threads each)          default 1,2,4,8
          --nconn-per-cpu N     both engines' NconnPerCpu (Ncpus = lanes/N)    default 1
          --op OP               write | read                                   default write
          --inflight N          transfers in flight at once                    default 1
          --duration SEC        measured time per cell                         default 3
          --min-iterations N    at least this many transfers per cell          default 5
          --slice-bytes N       slice size                                     default 1MiB
          --min-slice N         both engines' MinSliceBytes: what a write over several lanes shrinks its last
                                slices to (= --slice-bytes: fixed slices)                           default 128KiB
          --no-verify           do not check the last transfer's bytes
          --tcp-baseline        per lane count, plain TCP over loopback with as many streams in this process (one
                                blocking sender and one blocking receiver thread per stream, 4 MiB sends; buffers
                                written before timing, 250 ms warm-up, then --duration measured), each cell's wall
                                rate as a fraction of it ("x TCP") and its CPU seconds per GiB
          --tcp-buffer SIZE     the baseline's buffer per stream and direction, walked 4 MiB per call    default 4MiB
                                (iperf3's way: hot in cache); larger ones make it touch cold memory (each stream its own)
          --socket-buffer SIZE  both engines' SocketBufferBytes (SO_SNDBUF/SO_RCVBUF per lane): auto = 512 KiB on a
                                short path (loopback or <= 100 us round trip), else the kernel's autotuning; 0 = the
                                kernel's autotuning on every lane; SIZE = fixed                                   default auto
          --region-memory KIND  huge: NativeRegion.Allocate (2 MiB aligned, MADV_HUGEPAGE) | pages: the same with
                                4 KiB pages | managed: byte arrays. Both engines' regions and the baseline's buffers   default huge
          --json                one JSON object per cell
          --listen [HOST:]PORT  be the target of a run across processes or hosts: one engine (HOST default 127.0.0.1,
                                port 0 = any free one, printed) and one region of max(--sizes) x --inflight bytes
                                holding a known pattern; serves initiators one after another until Ctrl-C or SIGTERM
          --connect HOST:PORT   be the initiator against a --listen target (give it the same --sizes and --inflight, or
                                smaller); writes and reads are checked by the target's CRC-32C of its window against
                                this side's; no --tcp-baseline (run iperf3 between the same two places instead)

        Latency is one transfer from start to its last acknowledgement; GiB/s (p50) is size / median latency
        (one in flight); GiB/s (wall) and msgs/s count every transfer over the cell's wall time. CPU s/GiB is this
        process's CPU time (both engines) per GiB moved, cs/slice its context switches per --slice-bytes of data
        moved (getrusage; a write over several lanes cuts its last slices smaller, which this does not count).
        Run it on a quiet machine: on a loaded one both the engine and the baseline move by 2x from run to run.
        """;

    private static readonly string[] ValueOptions = ["sizes", "lanes", "nconn-per-cpu", "op", "inflight", "duration", "min-iterations", "slice-bytes", "min-slice", "tcp-buffer", "region-memory", "socket-buffer", "listen", "connect"];

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ValueOptions, ["no-verify", "json", "tcp-baseline"]);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        var sizes = cl.Get("sizes", "4KiB,64KiB,1MiB,16MiB,64MiB,256MiB").Split(',').Select(s => ParseSize(s)).ToArray();
        var lanes = cl.Get("lanes", "1,2,4,8").Split(',').Select(s => int.TryParse(s, out int n) && n is >= 1 and <= 256 ? n : throw new UsageException($"--lanes: '{s}' is not 1..256")).ToArray();
        int perCpu = cl.Int("nconn-per-cpu", 1, 1, 64);
        if (lanes.Any(l => l % perCpu != 0)) throw new UsageException($"--lanes: every lane count must be a multiple of --nconn-per-cpu {perCpu}");
        string op = cl.Get("op", "write");
        if (op is not ("write" or "read")) throw new UsageException($"--op: '{op}' is not write or read");
        int inflight = cl.Int("inflight", 1, 1, 64);
        double duration = cl.Double("duration", 3);
        int minIterations = cl.Int("min-iterations", 5, 1, 1_000_000);
        int slice = checked((int)cl.Size("slice-bytes", 1 << 20));
        int minSlice = checked((int)cl.Size("min-slice", 128 << 10));
        bool json = cl.Has("json");
        long tcpBuffer = cl.Size("tcp-buffer", 4 << 20);
        int? socketBuffer = cl.Get("socket-buffer", "auto") == "auto" ? null : checked((int)cl.Size("socket-buffer", 0));
        string memoryKind = cl.Get("region-memory", "huge");
        if (memoryKind is not ("huge" or "pages" or "managed")) throw new UsageException($"--region-memory: '{memoryKind}' is not huge, pages or managed");
        string? listen = cl.Get("listen"), connect = cl.Get("connect");
        if (listen is not null && connect is not null)
            throw new UsageException("--listen and --connect exclude each other: one process is the target, the other the initiator");
        if ((listen ?? connect) is not null && cl.Has("tcp-baseline"))
            throw new UsageException("--tcp-baseline runs in one process: across two, compare with iperf3 between the same two places");
        long largest = sizes.Max();
        if (listen is not null)
        {
            var (host, port) = HostPort.Parse(listen, "listen", defaultHost: "127.0.0.1", allowPortZero: true);
            using var stop = new CancellationTokenSource();
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
            using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
            return await TransferBenchPeer.ServeAsync(host, port, largest * inflight, memoryKind, socketBuffer, stop.Token);
        }
        (string Host, int Port)? remote = connect is null ? null : HostPort.Parse(connect, "connect");
        using var src = BenchMemory.Allocate(memoryKind, largest * inflight);
        using var dst = remote is null ? BenchMemory.Allocate(memoryKind, largest * inflight) : null;
        src.FillPattern();
        dst?.FillPattern();   // as a --listen target's region: a read brings the pattern (or what the writes left)
        if (!json)
            Console.WriteLine($"{"op",-6}{"size",10}{"lanes",6}{"n",7}{"p50 ms",10}{"p99 ms",10}{"GiB/s p50",11}{"GiB/s wall",11}{"msgs/s",10}{"CPU s/GiB",10}{"cs/slice",9}"
                + (cl.Has("tcp-baseline") ? "   TCP GiB/s  x TCP  TCP CPU s/GiB" : ""));
        try
        {
            foreach (int laneCount in lanes)
            {
                (double GiBPerSecond, double CpuSecondsPerGiB)? tcp = cl.Has("tcp-baseline") ? TcpBaseline.Measure(laneCount, TimeSpan.FromSeconds(duration), tcpBuffer, memoryKind) : null;
                var options = new TransferEngineOptions { Ncpus = laneCount / perCpu, NconnPerCpu = perCpu, SliceBytes = slice, MinSliceBytes = minSlice, SocketBufferBytes = socketBuffer };
                using var a = TransferEngine.Start(options);
                using var b = remote is null ? TransferEngine.Start(options) : null;
                int conn, srcRegion = src.Register(a);
                Func<long, long, Task<byte[]>> advertise;
                Func<long, int, Task<uint>> destinationChecksum;
                if (b is null)
                {
                    conn = await a.ConnectAsync(remote!.Value.Host, remote.Value.Port);
                    var peer = new TransferBenchPeer.Remote(a, conn, connect!);
                    advertise = peer.AdvertiseAsync;
                    destinationChecksum = (offset, length) => peer.ChecksumAsync(offset, length);
                }
                else
                {
                    var accepting = b.AcceptAsync();
                    conn = await a.ConnectAsync("127.0.0.1", b.Port);
                    int peerConn = (await accepting).ConnId, dstRegion = dst!.Register(b);
                    advertise = (offset, length) => Task.FromResult(b.Advertise(peerConn, dstRegion, offset, length));
                    destinationChecksum = (offset, length) => Task.FromResult(Crc32C.Compute(dst.Span(offset, length)));
                }
                var check = new TransferBenchCheck(src, destinationChecksum);
                foreach (long size in sizes)
                {
                    var windows = new ReadOnlyMemory<byte>[inflight];
                    for (int i = 0; i < inflight; i++) windows[i] = await advertise(i * size, size);
                    Func<int, Task> transfer = op == "write"
                        ? i => a.WriteAsync(conn, srcRegion, i * size, size, windows[i])
                        : i => a.ReadAsync(conn, srcRegion, i * size, size, windows[i]);
                    await transfer(0);   // warm-up
                    int checkedBytes = (int)Math.Min(size, int.MaxValue);   // window 0's, which the last transfer of loop 0 moved
                    if (!cl.Has("no-verify")) await check.ArmAsync(checkedBytes);
                    var before = ProcessCost.Now();
                    var (latencies, wall) = await MeasureAsync(transfer, inflight, TimeSpan.FromSeconds(duration), minIterations);
                    var cost = ProcessCost.Now() - before;
                    if (!cl.Has("no-verify") && !await check.HoldsAsync(checkedBytes))
                    {
                        Console.Error.WriteLine($"kvasir transfer-bench: bytes differ after {op}s of {size} bytes on {laneCount} lanes");
                        return 1;
                    }
                    Report(json, op, size, laneCount, latencies, wall, cost, latencies.Count * ((size + slice - 1) / slice), tcp);
                }
            }
        }
        catch (Exception e) when (remote is not null && e is TransferException or TimeoutException)
        {
            // The target is gone, never answered, or refused a transfer: one line, as for a node that cannot be reached.
            Console.Error.WriteLine($"kvasir transfer-bench: {connect}: {e.Message}");
            return 3;
        }
        return 0;
    }

    /// <summary>Runs <paramref name="inflight"/> loops of back-to-back transfers until the duration and iteration count are both met.</summary>
    private static async Task<(List<double> LatenciesMs, TimeSpan Wall)> MeasureAsync(Func<int, Task> transfer, int inflight, TimeSpan duration, int minIterations)
    {
        var latencies = new List<double>();
        var wall = Stopwatch.StartNew();
        int started = 0;
        await Task.WhenAll(Enumerable.Range(0, inflight).Select(async slot =>
        {
            while (wall.Elapsed < duration || Volatile.Read(ref started) < minIterations)
            {
                Interlocked.Increment(ref started);
                long t0 = Stopwatch.GetTimestamp();
                await transfer(slot);
                double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                lock (latencies) latencies.Add(ms);
            }
        }));
        return (latencies, wall.Elapsed);
    }

    private static void Report(bool json, string op, long size, int lanes, List<double> latencies, TimeSpan wall, ProcessCost cost, long slices,
        (double GiBPerSecond, double CpuSecondsPerGiB)? tcp)
    {
        latencies.Sort();
        double p50 = Percentile(latencies, 0.50), p99 = Percentile(latencies, 0.99);
        double gibP50 = size / (p50 / 1000) / (1 << 30);
        double gibWall = (double)size * latencies.Count / wall.TotalSeconds / (1 << 30);
        double rate = latencies.Count / wall.TotalSeconds;
        double cpuPerGiB = cost.CpuSeconds / ((double)size * latencies.Count / (1 << 30));
        double switchesPerSlice = (double)cost.Switches / slices;
        if (json)
        {
            Console.WriteLine(new JsonObject
            {
                ["op"] = op,
                ["size"] = size,
                ["lanes"] = lanes,
                ["n"] = latencies.Count,
                ["p50_ms"] = p50,
                ["p99_ms"] = p99,
                ["gib_s_p50"] = gibP50,
                ["gib_s_wall"] = gibWall,
                ["msgs_s"] = rate,
                ["cpu_s_per_gib"] = cpuPerGiB,
                ["ctx_switches_per_slice"] = switchesPerSlice,
                ["tcp_gib_s"] = tcp?.GiBPerSecond,
                ["x_tcp"] = gibWall / tcp?.GiBPerSecond,
                ["tcp_cpu_s_per_gib"] = tcp?.CpuSecondsPerGiB,
            }.ToJsonString());
            return;
        }
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Format(c, "{0,-6}{1,10}{2,6}{3,7}{4,10:0.000}{5,10:0.000}{6,11:0.00}{7,11:0.00}{8,10:0}{9,10:0.000}{10,9:0.00}",
                op, Human(size), lanes, latencies.Count, p50, p99, gibP50, gibWall, rate, cpuPerGiB, switchesPerSlice)
            + (tcp is { } t ? string.Format(c, "{0,13:0.00}{1,7:0.00}{2,15:0.000}", t.GiBPerSecond, gibWall / t.GiBPerSecond, t.CpuSecondsPerGiB) : ""));
    }

    /// <summary>Nearest-rank percentile of sorted values.</summary>
    private static double Percentile(List<double> sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];

    private static string Human(long size) => size >= 1 << 20 && size % (1 << 20) == 0 ? $"{size >> 20}MiB" : size >= 1 << 10 && size % (1 << 10) == 0 ? $"{size >> 10}KiB" : $"{size}B";

    private static long ParseSize(string s)
    {
        try
        {
            long n = ByteSize.Parse(s);
            return n is >= 1 and <= 1L << 30 ? n : throw new UsageException($"--sizes: {s} is outside 1 B..1 GiB");
        }
        catch (FormatException e) { throw new UsageException($"--sizes: {e.Message}"); }
    }
}
