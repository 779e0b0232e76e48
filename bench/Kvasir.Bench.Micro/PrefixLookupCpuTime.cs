using System.Diagnostics;
using Kvasir.Prefix;

namespace Kvasir.Bench.Micro;

/// <summary>
/// The <see cref="PrefixLookupBreakdownBenchmarks"/> lookups timed in CPU time (<see cref="Environment.CpuUsage"/>,
/// getrusage: microsecond resolution) next to wall time. On a shared machine with a load far above its cores,
/// BenchmarkDotNet's wall clock mostly measures how long the process waited for a core; CPU time leaves that out and
/// still counts every cache miss (a stalled core is a busy core). Other processes running on the same core between
/// two of ours still evict our lines, so small working sets look worse than on a quiet machine. Wall time is therefore
/// taken per batch of 200 calls (well under a scheduler time slice) and reported as the batches' tenth percentile
/// (median): the cost on a core that was not taken away mid-batch. Each measurement first warms up for at least a
/// second, so the JIT's optimised code is in place (a shorter warm-up left the first case, 1k LRU, partly in unoptimised
/// code). The LookupMany column looks up 16 chains per call (<see cref="PrefixCache{TBlock}.LookupMany"/>), still per
/// block. The last column is <see cref="PrefixCacheBenchmarks.InsertPerBlock"/> (a new 16-block chain into a full LRU
/// cache, evicting 16), as blocks per CPU second (per wall second of the tenth-percentile batch).
/// Usage: dotnet run -c Release -- prefix-cpu [rounds] [lookups per round]
/// </summary>
public static class PrefixLookupCpuTime
{
    public static void Run(string[] args)
    {
        int rounds = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 9;
        int lookups = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 20_000;
        Console.WriteLine($"ns per block, medians (min) of {rounds} rounds of {lookups:N0} lookups of a 16-block chain");
        Console.WriteLine("| cached blocks | policy | lookup CPU | lookup wall p10 (p50) | LookupMany of 16 chains, wall p10 (p50) | first-block probe wall p10 (p50) | insert CPU (wall p10), blocks/s |");
        Console.WriteLine("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (int blocks in new[] { 1_000, 100_000, 1_000_000 })
        {
            foreach (string policy in new[] { "lru", "fifo" })
            {
                var bench = new PrefixLookupBreakdownBenchmarks { CachedBlocks = blocks, Policy = policy };
                bench.Setup();
                var (lookupCpuTimes, lookupWallTimes) = Time(() => bench.Lookup(), rounds, lookups);
                var (_, manyWallTimes) = Time(bench.LookupMany, rounds, lookups / PrefixCache<int>.LookupGroup, PrefixCache<int>.LookupGroup);
                var (_, probeWallTimes) = Time(() => bench.FirstBlockProbe() ? 1 : 0, rounds, lookups);
                var (lookupCpu, lookupWall, manyWall, probeWall) = (Format(lookupCpuTimes), FormatBatches(lookupWallTimes), FormatBatches(manyWallTimes), FormatBatches(probeWallTimes));
                Console.WriteLine($"| {blocks:N0} | {policy} | {lookupCpu} | {lookupWall} | {manyWall} | {probeWall} | {(policy == "lru" ? InsertRate(blocks, rounds, lookups) : "")} |");
            }
        }
    }

    /// <summary>Blocks inserted per CPU second, median of the rounds (per wall second, tenth-percentile batch): new 16-block chains into a full cache.</summary>
    private static string InsertRate(int blocks, int rounds, int inserts)
    {
        var bench = new PrefixCacheBenchmarks { CachedBlocks = blocks };
        bench.Setup();
        var (cpu, wall) = Time(() => bench.InsertPerBlock(), rounds, Math.Min(inserts, 4096));
        return $"{1e9 / cpu[cpu.Count / 2]:N0} ({1e9 / wall[wall.Count / 10]:N0})";
    }

    /// <summary>
    /// ns per block in CPU time (each round's) and in wall time (each batch of <see cref="Batch"/> calls: short enough
    /// that most batches run without being descheduled, so their low percentile is the cost on a quiet core), sorted.
    /// A call covers <paramref name="chains"/> 16-block chains.
    /// </summary>
    private static (List<double> Cpu, List<double> Wall) Time(Func<long> call, int rounds, int calls, int chains = 1)
    {
        int blocksPerCall = 16 * chains;
        long sink = 0;
        // Warm-up, at least WarmUp long: the JIT's tiers (a method is recompiled optimised some 100 ms after its 30th
        // call, later while other methods are still being compiled) and the caches.
        long warmStart = Stopwatch.GetTimestamp();
        for (int i = 0; i < calls || Stopwatch.GetElapsedTime(warmStart) < WarmUp; i++) sink += call();
        var cpu = new List<double>();
        var wall = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            var start = Environment.CpuUsage.TotalTime;
            for (int done = 0; done < calls; done += Batch)
            {
                int batch = Math.Min(Batch, calls - done);
                long ticks = Stopwatch.GetTimestamp();
                for (int i = 0; i < batch; i++) sink += call();
                wall.Add(Stopwatch.GetElapsedTime(ticks).TotalNanoseconds / batch / blocksPerCall);
            }
            cpu.Add((Environment.CpuUsage.TotalTime - start).TotalNanoseconds / calls / blocksPerCall);
        }
        GC.KeepAlive(sink);
        cpu.Sort();
        wall.Sort();
        return (cpu, wall);
    }

    private const int Batch = 200;
    private static readonly TimeSpan WarmUp = TimeSpan.FromSeconds(1);

    /// <summary>Median (best) of CPU rounds.</summary>
    private static string Format(List<double> perBlock) => $"{perBlock[perBlock.Count / 2]:F1} ({perBlock[0]:F1})";

    /// <summary>Tenth percentile (median) of wall-time batches.</summary>
    private static string FormatBatches(List<double> perBlock) => $"{perBlock[perBlock.Count / 10]:F1} ({perBlock[perBlock.Count / 2]:F1})";
}
