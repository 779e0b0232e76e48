using System.Diagnostics;
using System.Text;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Bench.Alloc;

/// <summary>Result of one run: utilisation and eviction rate over the steady-state window, and put throughput.</summary>
internal sealed record SimulationResult(
    string Workload, string Mode, long Puts, double UtilMin, double UtilMedian, double AllocatedMedian,
    double EvictionsPerPut, long OutOfMemory, double OpsPerSecond);

/// <summary>
/// Puts fresh keys (reserve + commit, no payload copy) until 3x capacity has been written. The first 1x fills the
/// arena; the last 2x is the steady-state window, sampled after every put. Only reserve+commit is timed.
/// </summary>
internal static class Simulation
{
    public static SimulationResult Run(Workload workload, long capacity, int? blockSize, int seed, double highWatermark = 0.95, double lowWatermark = 0.90)
    {
        var options = new StoreOptions
        {
            Capacity = capacity,
            MaxValueBytes = Math.Min(capacity, 64L << 20),
            BlockSize = blockSize,
            HighWatermark = highWatermark,
            LowWatermark = lowWatermark,
        };
        using var store = new KvArenaStore(options);
        var random = new Random(seed);
        var utilisation = new List<double>();
        var allocated = new List<double>();
        long written = 0;
        long puts = 0;
        long windowPuts = 0;
        long windowStartEvictions = -1;
        long timedTicks = 0;
        var key = new byte[16];

        for (long i = 0; written < 3 * capacity; i++)
        {
            long length = workload.Next(random);
            BitConverter.TryWriteBytes(key, i);
            long begin = Stopwatch.GetTimestamp();
            WireStatus status = store.TryReserve(key, length, out Reservation? reservation);
            if (status == WireStatus.Ok)
            {
                store.Commit(reservation!, 0);
            }

            timedTicks += Stopwatch.GetTimestamp() - begin;
            puts++;
            written += length;

            if (written >= capacity)
            {
                StoreStats stats = store.GetStats();
                if (windowStartEvictions < 0)
                {
                    windowStartEvictions = stats.Evictions;
                }
                else
                {
                    windowPuts++;
                    utilisation.Add(stats.Utilisation);
                    allocated.Add((double)stats.AllocatedBytes / capacity);
                }
            }
        }

        StoreStats final = store.GetStats();
        utilisation.Sort();
        allocated.Sort();
        return new SimulationResult(
            workload.Name,
            (blockSize is int block ? $"block {Size(block)}" : $"variable (granule {Size(options.Granule)})")
                + $", wm {highWatermark:0.##}/{lowWatermark:0.##}",
            puts,
            utilisation[0],
            utilisation[utilisation.Count / 2],
            allocated[allocated.Count / 2],
            (double)(final.Evictions - windowStartEvictions) / windowPuts,
            final.OutOfMemory,
            puts / ((double)timedTicks / Stopwatch.Frequency));
    }

    public static string Table(IEnumerable<SimulationResult> results)
    {
        var text = new StringBuilder();
        text.AppendLine("| workload | mode | puts | util min | util median | allocated median | evictions/put | OOM | puts/s |");
        text.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (SimulationResult r in results)
        {
            text.AppendLine(
                $"| {r.Workload} | {r.Mode} | {r.Puts:N0} | {r.UtilMin:P1} | {r.UtilMedian:P1} | {r.AllocatedMedian:P1} | " +
                $"{r.EvictionsPerPut:F3} | {r.OutOfMemory} | {r.OpsPerSecond:N0} |");
        }

        return text.ToString();
    }

    public static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 when bytes % (1L << 30) == 0 => $"{bytes >> 30} GiB",
        >= 1L << 20 when bytes % (1L << 20) == 0 => $"{bytes >> 20} MiB",
        >= 1L << 10 when bytes % (1L << 10) == 0 => $"{bytes >> 10} KiB",
        _ => $"{bytes} B",
    };
}
