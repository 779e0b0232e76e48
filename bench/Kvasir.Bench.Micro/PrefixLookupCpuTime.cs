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
/// code). The single-chain lookup and <see cref="PrefixCache{TBlock}.LookupMany"/> of 8 and of 32 chains per call are
/// timed in the same rounds, in turns (one round of each, then the next round), so what the machine does meanwhile
/// falls on all three alike; all are per block. The probe column is the chain's first block alone. The last column is
/// <see cref="PrefixCacheBenchmarks.InsertPerBlock"/> (a new 16-block chain into a full LRU cache, evicting 16), as
/// blocks per CPU second (per wall second of the tenth-percentile batch). A last table gives each lookup's 1M / 1k
/// ratio (CPU medians).
/// Usage: dotnet run -c Release -- prefix-cpu [rounds] [lookups per round] [policies, default lru,fifo] [blocks a chain, default 16]
/// (with long chains a small cache holds fewer chains than a batch of 8 or 32: those columns are then left empty).
/// </summary>
public static class PrefixLookupCpuTime
{
    public static void Run(string[] args)
    {
        int rounds = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 9;
        int lookups = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 20_000;
        string[] policies = args.Length > 3 ? args[3].Split(',') : ["lru", "fifo"];
        int chainLength = args.Length > 4 ? int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture) : 16;
        Console.WriteLine($"ns per block: CPU median (wall p10) of {rounds} rounds of {lookups:N0} {chainLength}-block chains looked up per kind, kinds in turns");
        Console.WriteLine("| cached blocks | policy | Lookup | LookupMany of 8 | LookupMany of 32 | first-block probe wall p10 | insert CPU (wall p10), blocks/s |");
        Console.WriteLine("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        var cpuMedians = new Dictionary<(int Blocks, string Policy), double[]>();
        foreach (int blocks in new[] { 1_000, 100_000, 1_000_000 })
        {
            foreach (string policy in policies)
            {
                var bench = new PrefixLookupBreakdownBenchmarks { CachedBlocks = blocks, Policy = policy, ChainLength = chainLength };
                bench.Setup();
                var results = Time(rounds, chainLength,
                    new Kind(() => bench.Lookup(), lookups, 1),
                    bench.HasBatches8 ? new Kind(bench.LookupMany8, lookups / 8, 8) : null,
                    bench.HasBatches32 ? new Kind(bench.LookupMany32, lookups / 32, 32) : null,
                    new Kind(() => bench.FirstBlockProbe() ? 1 : 0, lookups, 1));
                cpuMedians[(blocks, policy)] = results.Select(r => r.Cpu.Count > 0 ? r.Cpu[r.Cpu.Count / 2] : double.NaN).ToArray();
                string Both(int k) => results[k].Cpu.Count == 0 ? "-" : $"{results[k].Cpu[results[k].Cpu.Count / 2]:F1} ({results[k].Wall[results[k].Wall.Count / 10]:F1})";
                Console.WriteLine($"| {blocks:N0} | {policy} | {Both(0)} | {Both(1)} | {Both(2)} | {results[3].Wall[results[3].Wall.Count / 10]:F1} | {(policy == "fifo" ? "" : InsertRate(blocks, policy, rounds, lookups))} |");
            }
        }
        Console.WriteLine();
        Console.WriteLine("| policy | Lookup 100k / 1k, 1M / 1k | LookupMany of 8 | LookupMany of 32 |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (string policy in policies)
        {
            var (small, mid, large) = (cpuMedians[(1_000, policy)], cpuMedians[(100_000, policy)], cpuMedians[(1_000_000, policy)]);
            string Growth(int k) => double.IsNaN(small[k]) ? "-" : $"{mid[k] / small[k]:F2}×, {large[k] / small[k]:F2}×";
            Console.WriteLine($"| {policy} | {Growth(0)} | {Growth(1)} | {Growth(2)} |");
        }
    }

    /// <summary>A call to time: it looks up <paramref name="Chains"/> chains; <paramref name="Calls"/> calls a round.</summary>
    private sealed record Kind(Func<long> Call, int Calls, int Chains);

    /// <summary>Blocks inserted per CPU second, median of the rounds (per wall second, tenth-percentile batch): new 16-block chains into a full cache.</summary>
    private static string InsertRate(int blocks, string policy, int rounds, int inserts)
    {
        var bench = new PrefixCacheBenchmarks { CachedBlocks = blocks, Policy = policy };
        bench.Setup();
        var (cpu, wall) = Time(rounds, 16, new Kind(() => bench.InsertPerBlock(), Math.Min(inserts, 4096), 1))[0];
        return $"{1e9 / cpu[cpu.Count / 2]:N0} ({1e9 / wall[wall.Count / 10]:N0})";
    }

    /// <summary>
    /// ns per block in CPU time (each round's) and in wall time (each batch of <see cref="Batch"/> calls: short enough
    /// that most batches run without being descheduled, so their low percentile is the cost on a quiet core), sorted,
    /// per kind. Each kind is warmed up, then the rounds take the kinds in turns.
    /// </summary>
    private static (List<double> Cpu, List<double> Wall)[] Time(int rounds, int chainLength, params Kind?[] kinds)
    {
        long sink = 0;
        var results = kinds.Select(_ => (Cpu: new List<double>(), Wall: new List<double>())).ToArray();
        // Warm-up, at least WarmUp long each: the JIT's tiers (a method is recompiled optimised some 100 ms after its
        // 30th call, later while other methods are still being compiled) and the caches.
        foreach (var kind in kinds)
        {
            if (kind is null) continue;
            long warmStart = Stopwatch.GetTimestamp();
            for (int i = 0; i < kind.Calls || Stopwatch.GetElapsedTime(warmStart) < WarmUp; i++) sink += kind.Call();
        }
        for (int r = 0; r < rounds; r++)
        {
            for (int k = 0; k < kinds.Length; k++)
            {
                if (kinds[k] is not { } kind) continue;
                var (call, calls, chains) = kind;
                int blocksPerCall = chainLength * chains;
                var start = Environment.CpuUsage.TotalTime;
                for (int done = 0; done < calls; done += Batch)
                {
                    int batch = Math.Min(Batch, calls - done);
                    long ticks = Stopwatch.GetTimestamp();
                    for (int i = 0; i < batch; i++) sink += call();
                    results[k].Wall.Add(Stopwatch.GetElapsedTime(ticks).TotalNanoseconds / batch / blocksPerCall);
                }
                results[k].Cpu.Add((Environment.CpuUsage.TotalTime - start).TotalNanoseconds / calls / blocksPerCall);
            }
        }
        GC.KeepAlive(sink);
        foreach (var (cpu, wall) in results)
        {
            cpu.Sort();
            wall.Sort();
        }
        return results;
    }

    private const int Batch = 200;
    private static readonly TimeSpan WarmUp = TimeSpan.FromSeconds(1);
}
