using System.Diagnostics;

namespace Kvasir.Bench.Micro;

/// <summary>
/// The <see cref="PrefixLookupBreakdownBenchmarks"/> lookups timed in CPU time (<see cref="Environment.CpuUsage"/>,
/// getrusage: microsecond resolution) next to wall time. On a shared machine with a load far above its cores,
/// BenchmarkDotNet's wall clock mostly measures how long the process waited for a core; CPU time leaves that out and
/// still counts every cache miss (a stalled core is a busy core). Other processes running on the same core between
/// two of ours still evict our lines, so small working sets look worse than on a quiet machine. The last column is
/// <see cref="PrefixCacheBenchmarks.InsertPerBlock"/> (a new 16-block chain into a full LRU cache, evicting 16) in the
/// same CPU time, as blocks per second.
/// Usage: dotnet run -c Release -- prefix-cpu [rounds] [lookups per round]
/// </summary>
public static class PrefixLookupCpuTime
{
    public static void Run(string[] args)
    {
        int rounds = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 9;
        int lookups = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 20_000;
        Console.WriteLine($"ns per block, medians (min) of {rounds} rounds of {lookups:N0} lookups of a 16-block chain");
        Console.WriteLine("| cached blocks | policy | lookup CPU | lookup wall | first-block probe CPU | insert CPU (blocks/s) |");
        Console.WriteLine("| ---: | --- | ---: | ---: | ---: | ---: |");
        foreach (int blocks in new[] { 1_000, 100_000, 1_000_000 })
        {
            foreach (string policy in new[] { "lru", "fifo" })
            {
                var bench = new PrefixLookupBreakdownBenchmarks { CachedBlocks = blocks, Policy = policy };
                bench.Setup();
                var (lookupCpuTimes, lookupWallTimes) = Time(() => bench.Lookup(), rounds, lookups);
                var (probeCpuTimes, _) = Time(() => bench.FirstBlockProbe() ? 1 : 0, rounds, lookups);
                var (lookupCpu, lookupWall, probeCpu) = (Format(lookupCpuTimes), Format(lookupWallTimes), Format(probeCpuTimes));
                Console.WriteLine($"| {blocks:N0} | {policy} | {lookupCpu} | {lookupWall} | {probeCpu} | {(policy == "lru" ? InsertRate(blocks, rounds, lookups) : "")} |");
            }
        }
    }

    /// <summary>Blocks inserted per CPU second, median (best) of the rounds: new 16-block chains into a full cache.</summary>
    private static string InsertRate(int blocks, int rounds, int inserts)
    {
        var bench = new PrefixCacheBenchmarks { CachedBlocks = blocks };
        bench.Setup();
        var (cpu, _) = Time(() => bench.InsertPerBlock(), rounds, Math.Min(inserts, 4096));
        return $"{1e9 / cpu[cpu.Count / 2]:N0} ({1e9 / cpu[0]:N0})";
    }

    /// <summary>ns per block in CPU and in wall time, each round's, sorted.</summary>
    private static (List<double> Cpu, List<double> Wall) Time(Func<long> call, int rounds, int calls)
    {
        long sink = 0;
        for (int i = 0; i < calls; i++) sink += call();   // warm-up: JIT tiers and caches
        var cpu = new List<double>();
        var wall = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            var start = Environment.CpuUsage.TotalTime;
            long ticks = Stopwatch.GetTimestamp();
            for (int i = 0; i < calls; i++) sink += call();
            wall.Add(Stopwatch.GetElapsedTime(ticks).TotalNanoseconds / calls / 16);
            cpu.Add((Environment.CpuUsage.TotalTime - start).TotalNanoseconds / calls / 16);
        }
        GC.KeepAlive(sink);
        cpu.Sort();
        wall.Sort();
        return (cpu, wall);
    }

    private static string Format(List<double> perBlock) => $"{perBlock[perBlock.Count / 2]:F1} ({perBlock[0]:F1})";
}
