using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Kvasir.Client;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir bench</c>: batch PUT or GET load against a running node. Values carry a per-key pattern
/// and every GET is checked against it (unless --no-verify); failures are counted, never ignored.
/// </summary>
public static class BenchCommand
{
    public const string Help = """
        kvasir bench --server HOST:PORT [options]   batch load against a running node

          --op put|get          workload (get pre-fills its keys first)   default get
          --value-size SIZE     bytes per value                           default 1MiB
          --batch N             keys per request                          default 16
          --inflight N          requests in flight at once                default 4
          --connections N       TCP connections to the node               default 2
          --keys N              key-space size                            default 256
          --duration SEC        measured time                             default 10
          --warmup SEC          unmeasured time before it                 default 1
          --auth-key HEX        node's auth key                           default none
          --no-verify           skip the per-value check on GET
          --json                print one JSON object instead of text
        """;

    private static readonly string[] ValueOptions = ["server", "op", "value-size", "batch", "inflight", "connections", "keys", "duration", "warmup", "auth-key"];

    /// <summary>Number of distinct value patterns; key i carries pattern i mod this.</summary>
    private const int Patterns = 16;

    public sealed record Result(string Op, long ValueSize, int Batch, int Inflight, int Connections, double Seconds, long Requests, long Values,
        double Gbps, double OpsPerSecond, double P50Us, double P90Us, double P99Us, double P999Us, long Errors, long Misses, long VerifyFailures);

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ValueOptions, ["no-verify", "json"]);
        string op = cl.Get("op", "get");
        if (op is not ("put" or "get")) throw new UsageException($"--op: '{op}' is not put or get");
        long valueSizeArg = cl.Size("value-size", 1 << 20);
        if (valueSizeArg > int.MaxValue) throw new UsageException($"--value-size: {ByteSize.Format(valueSizeArg)} is larger than {int.MaxValue} bytes");
        int valueSize = (int)valueSizeArg;
        int batch = cl.Int("batch", 16, 1), inflight = cl.Int("inflight", 4, 1), keys = cl.Int("keys", 256, 1);
        double duration = cl.Int("duration", 10, 1), warmup = cl.Int("warmup", 1, 0);
        bool verify = !cl.Has("no-verify");
        ClientCommands.CheckServerAndKey(cl.Get("server", "127.0.0.1:7380"), cl.Get("auth-key"));
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions
        {
            Server = cl.Get("server", "127.0.0.1:7380"),
            AuthKey = cl.Get("auth-key"),
            ConnectionsPerNode = cl.Int("connections", 2, 1),
            ClientName = "kvasir-bench",
        });
        var result = await RunAsync(store, op, valueSize, batch, inflight, cl.Int("connections", 2, 1), keys,
            TimeSpan.FromSeconds(duration), TimeSpan.FromSeconds(warmup), verify);
        Console.WriteLine(cl.Has("json") ? JsonSerializer.Serialize(ToJson(result)) : Describe(result));
        return result.Errors + result.VerifyFailures > 0 ? 1 : 0;
    }

    public static async Task<Result> RunAsync(KvStore store, string op, int valueSize, int batch, int inflight, int connections, int keyCount,
        TimeSpan duration, TimeSpan warmup, bool verify)
    {
        var keys = Enumerable.Range(0, keyCount).Select(i => (ReadOnlyMemory<byte>)Encoding.ASCII.GetBytes($"bench:{valueSize}:{i}")).ToArray();
        var patterns = Enumerable.Range(0, Patterns).Select(p => Pattern(p, valueSize)).ToArray();
        if (op == "get")
        {
            for (int i = 0; i < keyCount; i += batch)
            {
                int n = Math.Min(batch, keyCount - i);
                var statuses = await store.PutAsync(keys[i..(i + n)], Enumerable.Range(i, n).Select(k => (ReadOnlyMemory<byte>)patterns[k % Patterns]).ToArray());
                if (statuses.Any(s => s != KvStatus.Ok)) throw new KvasirException($"pre-fill failed: {statuses.First(s => s != KvStatus.Ok)}");
            }
        }
        long requests = 0, values = 0, errors = 0, misses = 0, verifyFailures = 0;
        var latencies = new List<long>[inflight];
        var measureFrom = Stopwatch.GetTimestamp() + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        var end = measureFrom + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long next = 0;
        var workers = Enumerable.Range(0, inflight).Select(w => Task.Run(async () =>
        {
            var lat = latencies[w] = new List<long>(1 << 16);
            var buffers = Enumerable.Range(0, batch).Select(_ => (Memory<byte>)new byte[valueSize]).ToArray();
            var batchKeys = new ReadOnlyMemory<byte>[batch];
            var batchValues = new ReadOnlyMemory<byte>[batch];
            var indices = new int[batch];
            while (true)
            {
                long now = Stopwatch.GetTimestamp();
                if (now >= end) break;
                for (int j = 0; j < batch; j++)
                {
                    int k = (int)(Interlocked.Increment(ref next) % keyCount);
                    indices[j] = k;
                    batchKeys[j] = keys[k];
                    batchValues[j] = patterns[k % Patterns];
                }
                long start = Stopwatch.GetTimestamp();
                long e = 0, m = 0, v = 0;
                if (op == "put")
                {
                    foreach (var s in await store.PutAsync(batchKeys, batchValues)) if (s != KvStatus.Ok) e++;
                }
                else
                {
                    var results = await store.GetAsync(batchKeys, buffers);
                    for (int j = 0; j < batch; j++)
                    {
                        if (results[j].Status == KvStatus.NotFound) m++;
                        else if (results[j].Status != KvStatus.Ok) e++;
                        else if (verify && !Check(buffers[j].Span, results[j].Length, indices[j] % Patterns, valueSize)) v++;
                    }
                }
                long stop = Stopwatch.GetTimestamp();
                if (start >= measureFrom)
                {
                    lat.Add(stop - start);
                    Interlocked.Increment(ref requests);
                    Interlocked.Add(ref values, batch);
                    Interlocked.Add(ref errors, e);
                    Interlocked.Add(ref misses, m);
                    Interlocked.Add(ref verifyFailures, v);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);
        double seconds = duration.TotalSeconds;
        var all = latencies.SelectMany(l => l).ToArray();
        Array.Sort(all);
        double Us(double q) => Percentile(all, q) * 1e6 / Stopwatch.Frequency;
        long goodValues = values - errors - misses;
        return new Result(op, valueSize, batch, inflight, connections, seconds, requests, values,
            goodValues * (double)valueSize / seconds / 1e9, values / seconds, Us(0.50), Us(0.90), Us(0.99), Us(0.999), errors, misses, verifyFailures);
    }

    /// <summary>Value of pattern p: 8-byte words derived from p, the first word being p itself.</summary>
    public static byte[] Pattern(int p, int size)
    {
        var bytes = new byte[size];
        ulong x = 0x9E3779B97F4A7C15UL * (ulong)(p + 1);
        for (int i = 0; i + 8 <= size; i += 8) BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i), i == 0 ? (ulong)p : x ^ (ulong)i);
        for (int i = size & ~7; i < size; i++) bytes[i] = (byte)(p + i);
        return bytes;
    }

    /// <summary>Cheap check of a received value: its length and the first, middle and last words of the expected pattern.</summary>
    public static bool Check(ReadOnlySpan<byte> value, long length, int p, int size)
    {
        if (length != size) return false;
        var expected = Pattern(p, Math.Min(size, 64));
        if (!value[..expected.Length].SequenceEqual(expected)) return false;
        if (size < 128) return true;
        ulong x = 0x9E3779B97F4A7C15UL * (ulong)(p + 1);
        foreach (int at in new[] { size / 2 & ~7, (size & ~7) - 8 })
            if (BinaryPrimitives.ReadUInt64LittleEndian(value[at..]) != (x ^ (ulong)at)) return false;
        return true;
    }

    /// <summary>Nearest-rank percentile of sorted samples (q in 0..1); 0 for no samples.</summary>
    public static double Percentile(long[] sorted, double q)
    {
        if (sorted.Length == 0) return 0;
        int rank = (int)Math.Ceiling(q * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    private static Dictionary<string, object> ToJson(Result r) => new()
    {
        ["op"] = r.Op, ["value_size"] = r.ValueSize, ["batch"] = r.Batch, ["inflight"] = r.Inflight, ["connections"] = r.Connections,
        ["seconds"] = r.Seconds, ["requests"] = r.Requests, ["values"] = r.Values, ["gbps"] = Math.Round(r.Gbps, 3),
        ["ops_per_s"] = Math.Round(r.OpsPerSecond, 1), ["p50_us"] = Math.Round(r.P50Us, 1), ["p90_us"] = Math.Round(r.P90Us, 1),
        ["p99_us"] = Math.Round(r.P99Us, 1), ["p999_us"] = Math.Round(r.P999Us, 1), ["errors"] = r.Errors, ["misses"] = r.Misses,
        ["verify_failures"] = r.VerifyFailures,
    };

    private static string Describe(Result r) =>
        $"{r.Op} {ByteSize.Format(r.ValueSize)} x{r.Batch} inflight {r.Inflight} conns {r.Connections}: " +
        $"{r.Gbps:F2} GB/s, {r.OpsPerSecond:F0} values/s, latency p50 {r.P50Us:F0} us p90 {r.P90Us:F0} us p99 {r.P99Us:F0} us p99.9 {r.P999Us:F0} us, " +
        $"errors {r.Errors}, misses {r.Misses}, verify failures {r.VerifyFailures}";
}
