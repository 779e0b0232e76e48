using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Kvasir.Cli.Bench;
using Kvasir.Client;
using Kvasir.Embedded;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir bench --scale</c>: fills a node in this process with 10k .. millions of small values and reports, at each
/// size, the index's managed bytes per key (the GC's own count of live heap bytes, after a full compacting collection,
/// minus the same count for the empty node) and batch EXISTS / GET latency percentiles over random keys (after at least 200
/// requests and one second of warm-up per operation and size).
/// </summary>
public static class ScaleBenchCommand
{
    public const string Help = """

        kvasir bench --scale [options]   index cost and lookup latency as a node fills (a node in this process)

          --keys LIST           key counts, one fresh node each                              default 10k,100k,1M
          --value-size SIZE     bytes per value (small values isolate the index)             default 4KiB
          --key-bytes N         bytes per key (binary, unique)                               default 32
          --batch N             keys per EXISTS / GET request                                default 64
          --requests N          timed requests per operation and size                        default 2000
          --eviction NAME       the node's eviction policy (a GET records an access in it)    default chainlfu
          --json                one JSON object per size
        """;

    private static readonly string[] ValueOptions = ["keys", "value-size", "key-bytes", "batch", "requests", "eviction"];

    /// <summary>Least warm-up time per operation and size (besides 200 requests).</summary>
    private static readonly TimeSpan WarmUp = TimeSpan.FromSeconds(1);

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args.Where(a => a != "--scale").ToList(), ValueOptions, ["json"]);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        var counts = cl.Get("keys", "10k,100k,1M").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(ParseCount).ToList();
        int valueSize = checked((int)cl.Size("value-size", 4096));
        if (valueSize is < 1 or > (16 << 20)) throw new UsageException("--value-size: must be 1 B..16 MiB");
        int keyBytes = cl.Int("key-bytes", 32, 9, 512);
        int batch = cl.Int("batch", 64, 1, 1024);
        int requests = cl.Int("requests", 2000, 10, 10_000_000);
        var eviction = EvictionNames.Parse(cl.Get("eviction", "chainlfu"), "eviction");
        bool json = cl.Has("json");
        if (!json)
        {
            Console.WriteLine($"value {ByteSize.Format(valueSize)}, key {keyBytes} B, batch {batch}, {requests} requests per op, eviction {EvictionNames.NameOf(eviction)}; in-process node, no socket");
            Console.WriteLine($"{"keys",10} {"arena",11} {"granule",7} {"fixed B",8} {"managed B/key",14} {"heap B/key",11} {"fill s",7} {"EXISTS p50",11} {"p99",9} {"GET p50",9} {"p99",9}");
        }
        foreach (long count in counts)
        {
            var row = await MeasureAsync(count, valueSize, keyBytes, batch, requests, eviction);
            Console.WriteLine(json ? JsonSerializer.Serialize(row, ScaleRowJson.Default.ScaleRow) : row.Describe());
        }
        return 0;
    }

    private static long ParseCount(string text)
    {
        string t = text.ToLowerInvariant();
        long scale = t.EndsWith('k') ? 1_000 : t.EndsWith('m') ? 1_000_000 : 1;
        if (scale > 1) t = t[..^1];
        return long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n >= 1 && n * scale <= 100_000_000
            ? n * scale
            : throw new UsageException($"--keys: '{text}' is not a count 1..100M (suffix k or M)");
    }

    /// <summary>Live managed bytes after a full, blocking, compacting collection (the GC's own count).</summary>
    private static long LiveManagedBytes()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(forceFullCollection: false);
    }

    /// <summary>Heap size the GC reports after its last collection (live bytes plus fragmentation).</summary>
    private static long HeapSizeBytes() => GC.GetGCMemoryInfo(GCKind.FullBlocking).HeapSizeBytes;

    private static void WriteKey(Span<byte> key, long i)
    {
        // Unique, spread like block hashes: a 64-bit mix of the index, then the index itself, then filler.
        key.Fill(0x6b);
        BinaryPrimitives.WriteUInt64LittleEndian(key, Rendezvous.Mix64((ulong)i + 0x9E3779B97F4A7C15UL));
        BinaryPrimitives.WriteInt64LittleEndian(key[8..], i);
    }

    /// <summary>Fills a fresh in-process node with <paramref name="count"/> values and measures it (see the class summary).</summary>
    public static async Task<ScaleRow> MeasureAsync(long count, int valueSize, int keyBytes, int batch, int requests, EvictionPolicyKind eviction = EvictionPolicyKind.ChainLfu)
    {
        // The allocation unit a node would be given for such values: the value size rounded down to a power of two, 64 B..4 KiB.
        int granule = (int)Math.Clamp(System.Numerics.BitOperations.RoundUpToPowerOf2((uint)valueSize + 1) / 2, 64, 4096);
        long unit = (valueSize + granule - 1) / granule * granule;
        // Room for every value below the high watermark (0.95), so nothing is evicted while filling.
        long capacity = (long)(count * unit / 0.9) + (1 << 20);
        var options = new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = capacity, Granule = granule, MaxValueBytes = unit, Eviction = eviction },
        };
        long before = LiveManagedBytes();
        await using var store = EmbeddedKvStore.Start(options);
        long emptyLive = LiveManagedBytes();
        long emptyHeap = HeapSizeBytes();

        var value = new byte[valueSize];
        Random.Shared.NextBytes(value);
        const int fillBatch = 256;
        var keys = new ReadOnlyMemory<byte>[fillBatch];
        var keyBuffers = Enumerable.Range(0, fillBatch).Select(_ => new byte[keyBytes]).ToArray();
        var values = Enumerable.Repeat((ReadOnlyMemory<byte>)value, fillBatch).ToArray();
        var fill = Stopwatch.StartNew();
        for (long start = 0; start < count; start += fillBatch)
        {
            int n = (int)Math.Min(fillBatch, count - start);
            for (int j = 0; j < n; j++)
            {
                WriteKey(keyBuffers[j], start + j);
                keys[j] = keyBuffers[j];
            }
            var statuses = await store.PutAsync(keys[..n], values[..n]);
            if (statuses.Any(s => s != KvStatus.Ok))
                throw new UsageException($"filling {count} keys: put answered {statuses.First(s => s != KvStatus.Ok)} at key {start} (arena {ByteSize.Format(capacity)})");
        }
        fill.Stop();
        var stats = await store.StatsAsync();
        if (stats["keys"] != count) throw new UsageException($"filling {count} keys: the node holds {stats["keys"]} (evictions {stats["evictions"]})");
        long fullLive = LiveManagedBytes();
        long fullHeap = HeapSizeBytes();

        var lookupKeys = new ReadOnlyMemory<byte>[batch];
        var lookupBuffers = Enumerable.Range(0, batch).Select(_ => new byte[keyBytes]).ToArray();
        var destinations = Enumerable.Range(0, batch).Select(_ => (Memory<byte>)new byte[valueSize]).ToArray();
        var rng = new Random(42);
        void Draw()
        {
            for (int j = 0; j < batch; j++)
            {
                WriteKey(lookupBuffers[j], rng.NextInt64(count));
                lookupKeys[j] = lookupBuffers[j];
            }
        }

        async Task<long[]> TimeAsync(Func<Task<bool>> op)
        {
            // Warm-up: at least 200 requests and at least one second, so the first size is not measured on code the JIT has not
            // optimised yet (tiered compilation replaces a method some 100 ms after its first calls; 2000 requests of a 10k node
            // take ~50 ms, so a count alone left the first size slower than the next).
            var warm = Stopwatch.StartNew();
            for (int i = 0; i < Math.Min(200, requests) || warm.Elapsed < WarmUp; i++) { Draw(); await op(); }
            var ticks = new long[requests];
            for (int i = 0; i < requests; i++)
            {
                Draw();
                long t0 = Stopwatch.GetTimestamp();
                bool ok = await op();
                ticks[i] = Stopwatch.GetTimestamp() - t0;
                if (!ok) throw new UsageException($"{count} keys: a lookup missed a key that was stored");
            }
            Array.Sort(ticks);
            return ticks;
        }

        var exists = await TimeAsync(async () => (await store.ExistsAsync(lookupKeys)).All(v => v == 1));
        var get = await TimeAsync(async () => (await store.GetAsync(lookupKeys, destinations)).All(r => r.Status == KvStatus.Ok && r.Length == valueSize));
        double Us(long[] sorted, double q) => LatencyStats.Percentile(sorted, q) * 1e6 / Stopwatch.Frequency;
        return new ScaleRow(count, capacity, granule, (double)(emptyLive - before) / count, (double)(fullLive - emptyLive) / count, (double)(fullHeap - emptyHeap) / count, fill.Elapsed.TotalSeconds,
            Us(exists, 0.5), Us(exists, 0.99), Us(get, 0.5), Us(get, 0.99));
    }

    /// <summary>One size's figures. Latencies in microseconds per batch request.</summary>
    /// <param name="Keys">Keys stored.</param>
    /// <param name="ArenaBytes">Arena capacity (every value fits below the high watermark).</param>
    /// <param name="Granule">Allocation unit of the arena.</param>
    /// <param name="FixedBytesPerKey">Managed bytes of the empty node (allocator tables sized by the arena, buffers), per key at this size.</param>
    /// <param name="ManagedBytesPerKey">Live managed bytes added by filling, per key: the index (slots, versions, key copies, table).</param>
    /// <param name="HeapBytesPerKey">Growth of the GC heap (live plus fragmentation) by filling, per key.</param>
    /// <param name="FillSeconds">Time to put every key, 256 per request.</param>
    /// <param name="ExistsP50Us">Median batch EXISTS latency.</param>
    /// <param name="ExistsP99Us">99th percentile batch EXISTS latency.</param>
    /// <param name="GetP50Us">Median batch GET latency.</param>
    /// <param name="GetP99Us">99th percentile batch GET latency.</param>
    public sealed record ScaleRow(long Keys, long ArenaBytes, int Granule, double FixedBytesPerKey, double ManagedBytesPerKey, double HeapBytesPerKey,
        double FillSeconds, double ExistsP50Us, double ExistsP99Us, double GetP50Us, double GetP99Us)
    {
        public string Describe() => string.Create(CultureInfo.InvariantCulture,
            $"{Keys,10} {ArenaBytes / (double)(1 << 20),8:F0}MiB {Granule,7} {FixedBytesPerKey,8:F1} {ManagedBytesPerKey,14:F1} {HeapBytesPerKey,11:F1} {FillSeconds,7:F1} {ExistsP50Us,9:F1}us {ExistsP99Us,7:F1}us {GetP50Us,7:F1}us {GetP99Us,7:F1}us");
    }
}

/// <summary>ScaleRow's JSON, generated at compile time: no reflection, so the native AOT build writes it too (docs/deploy.md).</summary>
[JsonSerializable(typeof(ScaleBenchCommand.ScaleRow))]
internal sealed partial class ScaleRowJson : JsonSerializerContext;
