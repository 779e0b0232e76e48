using System.Diagnostics;

namespace Kvasir.Bench.Micro;

/// <summary>
/// The <see cref="PrefixLookupBreakdownBenchmarks"/> lookups timed in CPU time (<see cref="Environment.CpuUsage"/>,
/// getrusage: microsecond resolution) next to wall time. On a shared machine with a load far above its cores,
/// BenchmarkDotNet's wall clock mostly measures how long the process waited for a core; CPU time leaves that out and
/// still counts every cache miss (a stalled core is a busy core). Other processes running on the same core between
/// two of ours still evict our lines, so small working sets look worse than on a quiet machine.
/// Usage: dotnet run -c Release -- prefix-cpu [rounds] [lookups per round]
/// </summary>
public static class PrefixLookupCpuTime
{
    public static void Run(string[] args)
    {
        int rounds = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 9;
        int lookups = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 20_000;
        Console.WriteLine($"ns per block, medians (min) of {rounds} rounds of {lookups:N0} lookups of a 16-block chain");
        Console.WriteLine("| cached blocks | policy | lookup CPU | lookup wall | first-block probe CPU |");
        Console.WriteLine("| ---: | --- | ---: | ---: | ---: |");
        foreach (int blocks in new[] { 1_000, 100_000, 1_000_000 })
        {
            foreach (string policy in new[] { "lru", "fifo" })
            {
                var bench = new PrefixLookupBreakdownBenchmarks { CachedBlocks = blocks, Policy = policy };
                bench.Setup();
                var (lookupCpu, lookupWall) = Time(() => bench.Lookup(), rounds, lookups);
                var (probeCpu, _) = Time(() => bench.FirstBlockProbe() ? 1 : 0, rounds, lookups);
                Console.WriteLine($"| {blocks:N0} | {policy} | {lookupCpu} | {lookupWall} | {probeCpu} |");
            }
        }
    }

    private static (string Cpu, string Wall) Time(Func<long> call, int rounds, int calls)
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
        return (Format(cpu), Format(wall));
    }

    private static string Format(List<double> perBlock)
    {
        perBlock.Sort();
        return $"{perBlock[perBlock.Count / 2]:F1} ({perBlock[0]:F1})";
    }
}
