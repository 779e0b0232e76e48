using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics.X86;
using Kvasir.Protocol;

namespace Kvasir.Bench.Micro;

/// <summary>
/// Single-thread CRC-32C throughput of every path, interleaved so that all candidates see the same machine: each round
/// times one batch (about 1 MiB of input: many calls for small sizes, one call for 4 MiB) of every candidate in turn,
/// in a rotating order. Reports the median batch as GB/s (10⁹ bytes per second) and, in parentheses, the 90th
/// percentile (the speed on a core that was not taken away mid-batch). Successive calls are independent, so for small
/// sizes the core overlaps them: the figure is a throughput, not a latency. The ratio column compares with "striped",
/// the fallback without carry-less multiplies, which is also the algorithm every call used before the folding paths
/// (issue 21; then with a branching join multiply, measured equal). Every candidate is checked against it first.
/// Usage: dotnet run -c Release --project bench/Kvasir.Bench.Micro -- crc [rounds] [sizes, comma-separated bytes]
/// </summary>
public static class Crc32CThroughput
{
    private delegate uint AppendPath(uint state, ReadOnlySpan<byte> data);

    public static void Run(string[] args)
    {
        int rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 101;
        int[] sizes = args.Length > 2
            ? args[2].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray()
            : [64, 4 << 10, 64 << 10, 1 << 20, 4 << 20];
        var candidates = Candidates();
        Console.WriteLine($"CRC-32C GB/s, median (p90) of {rounds} interleaved batches of ~1 MiB per candidate; ratio = median / striped");
        Console.WriteLine($"| size | {string.Join(" | ", candidates.Select(c => c.Name))} |");
        Console.WriteLine($"| ---: |{string.Concat(candidates.Select(_ => " ---: |"))}");
        foreach (int size in sizes)
        {
            var data = GC.AllocateUninitializedArray<byte>(size, pinned: true);
            new Random(size).NextBytes(data);
            uint expected = Crc32C.AppendStriped(Crc32C.InitialState, data);
            var usable = candidates.Where(c => size >= c.MinLength).ToList();
            foreach (var c in usable)
            {
                if (c.Append(Crc32C.InitialState, data) != expected) throw new InvalidOperationException($"{c.Name} disagrees at {size} bytes");
            }

            int calls = Math.Max(1, (1 << 20) / size);
            var samples = usable.ToDictionary(c => c.Name, _ => new List<double>());
            long warmStart = Stopwatch.GetTimestamp();
            while (Stopwatch.GetElapsedTime(warmStart) < TimeSpan.FromSeconds(0.5))
            {
                foreach (var c in usable) Batch(c.Append, data, calls);
            }

            for (int r = 0; r < rounds; r++)
            {
                for (int i = 0; i < usable.Count; i++)
                {
                    var c = usable[(i + r) % usable.Count];
                    samples[c.Name].Add((double)size * calls / Batch(c.Append, data, calls));
                }
            }

            double baseline = Median(samples["striped"]);
            var cells = candidates.Select(c => samples.TryGetValue(c.Name, out var s)
                ? $"{Median(s):F2} ({Percentile(s, 0.9):F2}) {Median(s) / baseline:F2}×"
                : "–");
            Console.WriteLine($"| {Size(size)} | {string.Join(" | ", cells)} |");
        }
    }

    private static List<(string Name, AppendPath Append, int MinLength)> Candidates()
    {
        var list = new List<(string, AppendPath, int)>
        {
            ("chain", Crc32C.AppendChain, 0),
            ("striped", Crc32C.AppendStriped, 0),
        };
        if (Pclmulqdq.IsSupported) list.Add(("fold128", Crc32CFold.Append128, Crc32CFold.MinLength128));
        if (Pclmulqdq.V256.IsSupported) list.Add(("fold256", Crc32CFold.Append256, Crc32CFold.MinLength256));
        if (Pclmulqdq.V512.IsSupported) list.Add(("fold512", Crc32CFold.Append512, Crc32CFold.MinLength512));
        list.Add(("Append", Crc32C.Append, 0));
        return list;
    }

    /// <summary>Nanoseconds for <paramref name="calls"/> independent checksums of <paramref name="data"/>.</summary>
    private static double Batch(AppendPath append, byte[] data, int calls)
    {
        uint sink = 0;
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < calls; i++) sink ^= append(Crc32C.InitialState, data);
        double ns = Stopwatch.GetElapsedTime(start).TotalNanoseconds;
        GC.KeepAlive(sink);
        return ns;
    }

    private static double Median(List<double> values) => Percentile(values, 0.5);

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted[(int)Math.Round(p * (sorted.Count - 1))];
    }

    private static string Size(int bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MiB" : bytes >= 1024 ? $"{bytes >> 10} KiB" : $"{bytes} B";
}
