using System.Globalization;
using Kvasir.Protocol.Stats;
using ScottPlot;

namespace Kvasir.Cli.Stats;

/// <summary>The plots of <c>kvasir stats visualize</c>, drawn with ScottPlot into PNG files.</summary>
public static class StatsPlots
{
    public const int Width = 1200, Height = 700;

    /// <summary>The plot types, in the order <c>--type all</c> writes them.</summary>
    public static readonly IReadOnlyList<string> Types = ["heatmap", "hitrate", "reuse", "timeline"];

    /// <summary>Rows of the heatmap: the hottest blocks.</summary>
    public const int HeatmapBlocks = 40;

    /// <summary>Draws one plot type of <paramref name="file"/> into <paramref name="path"/>.</summary>
    public static void Draw(AccessStatsFile file, string type, string path)
    {
        var plot = type switch
        {
            "heatmap" => Heatmap(file),
            "hitrate" => HitRate(file),
            "reuse" => Reuse(file),
            "timeline" => Timeline(file),
            _ => throw new ArgumentException($"unknown plot type '{type}'", nameof(type)),
        };
        plot.SavePng(path, Width, Height);
    }

    private static string Subtitle(AccessStatsFile f) =>
        string.Create(CultureInfo.InvariantCulture, $"{f.Source}, from {DateTimeOffset.FromUnixTimeMilliseconds(f.StartUnixMs):yyyy-MM-dd HH:mm:ss} UTC, {f.Accesses.Count} accesses");

    /// <summary>Time buckets over the file's span: about <paramref name="target"/> buckets of a round width in seconds.</summary>
    private static (double BucketSeconds, int Count) Buckets(AccessStatsFile f, int target)
    {
        double span = Math.Max(f.Accesses.Count == 0 ? 0 : f.Accesses[^1].T / 1000, 1e-3);
        double raw = span / target;
        double pow = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double width = new[] { 1, 2, 5, 10 }.Select(m => m * pow).First(w => w >= raw);
        return (width, Math.Max(1, (int)Math.Ceiling(span / width + 1e-9)));
    }

    private static int Bucket(double tMs, double bucketSeconds, int count) => Math.Min(count - 1, (int)(tMs / 1000 / bucketSeconds));

    private static Plot NewPlot(string title, string x, string y)
    {
        var plot = new Plot();
        plot.Title(title);
        plot.XLabel(x);
        plot.YLabel(y);
        return plot;
    }

    /// <summary>A block id short enough for an axis label: its head and tail, which tell keys like prefix:N apart.</summary>
    private static string Short(string block) => block.Length <= 18 ? block : block[..8] + "…" + block[^8..];

    /// <summary>Blocks × time: the hottest blocks (hottest on top), accesses per time bucket as colour.</summary>
    private static Plot Heatmap(AccessStatsFile f)
    {
        var (width, count) = Buckets(f, 60);
        var hottest = f.Accesses.GroupBy(a => a.Block, StringComparer.Ordinal)
            .Select(g => (Block: g.Key, N: g.Count())).OrderByDescending(b => b.N).ThenBy(b => b.Block, StringComparer.Ordinal)
            .Take(HeatmapBlocks).Select(b => b.Block).ToList();
        var row = hottest.Select((b, i) => (b, i)).ToDictionary(x => x.b, x => x.i, StringComparer.Ordinal);
        var data = new double[Math.Max(1, hottest.Count), count];
        foreach (var a in f.Accesses)
            if (row.TryGetValue(a.Block, out int r)) data[r, Bucket(a.T, width, count)]++;
        var plot = NewPlot($"Access heatmap: {hottest.Count} hottest blocks × time ({Subtitle(f)})",
            string.Create(CultureInfo.InvariantCulture, $"time since start (s), {width:0.###} s per column"), "block (hottest on top)");
        var hm = plot.Add.Heatmap(data);
        hm.Colormap = new ScottPlot.Colormaps.Turbo();
        hm.Rectangle = new CoordinateRect(0, count * width, 0, Math.Max(1, hottest.Count));
        plot.Add.ColorBar(hm).Label = "accesses per column";
        var positions = Enumerable.Range(0, hottest.Count).Select(i => hottest.Count - i - 0.5).ToArray();
        int step = Math.Max(1, hottest.Count / 20);
        var ticks = positions.Where((_, i) => i % step == 0).ToArray();
        var labels = hottest.Where((_, i) => i % step == 0).Select((b, i) => $"#{i * step + 1} {Short(b)}").ToArray();
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks, labels);
        plot.Axes.SetLimits(0, count * width, 0, Math.Max(1, hottest.Count));
        return plot;
    }

    /// <summary>Hit rate per time bucket, and the running hit rate, in percent.</summary>
    private static Plot HitRate(AccessStatsFile f)
    {
        var (width, count) = Buckets(f, 60);
        var hits = new double[count];
        var all = new double[count];
        foreach (var a in f.Accesses)
        {
            int b = Bucket(a.T, width, count);
            all[b]++;
            if (a.Hit) hits[b]++;
        }
        var xs = new List<double>();
        var ys = new List<double>();
        var runX = new List<double>();
        var runY = new List<double>();
        double h = 0, n = 0;
        for (int b = 0; b < count; b++)
        {
            h += hits[b];
            n += all[b];
            if (all[b] == 0) continue;
            xs.Add((b + 0.5) * width);
            ys.Add(100 * hits[b] / all[b]);
            runX.Add((b + 1) * width);
            runY.Add(100 * h / n);
        }
        var s = f.Summary();
        var plot = NewPlot(string.Create(CultureInfo.InvariantCulture, $"Hit rate over time: {100 * s.HitRate:F1} % overall ({Subtitle(f)})"),
            string.Create(CultureInfo.InvariantCulture, $"time since start (s), {width:0.###} s per point"), "hit rate (%)");
        var per = plot.Add.Scatter(xs.ToArray(), ys.ToArray());
        per.LegendText = "per interval";
        per.LineWidth = 1.5f;
        per.MarkerSize = 5;
        var run = plot.Add.Scatter(runX.ToArray(), runY.ToArray());
        run.LegendText = "cumulative";
        run.LineWidth = 2.5f;
        run.MarkerSize = 0;
        plot.ShowLegend(Alignment.LowerRight);
        plot.Axes.SetLimits(0, count * width, 0, 105);
        return plot;
    }

    /// <summary>Histogram of reuse distances in power-of-two bins, with the percentiles in the title.</summary>
    private static Plot Reuse(AccessStatsFile f)
    {
        var distances = AccessStatsSummary.ReuseDistances(f.Accesses).Where(d => d >= 0).ToArray();
        int maxBin = distances.Length == 0 ? 0 : Bin(distances.Max());
        var counts = new double[maxBin + 1];
        foreach (var d in distances) counts[Bin(d)]++;
        var plot = NewPlot(string.Create(CultureInfo.InvariantCulture,
                $"Reuse distance (distinct blocks between two accesses of a block): p50 {Num(f.Summary().ReuseDistance.P50)}, p90 {Num(f.Summary().ReuseDistance.P90)}, p99 {Num(f.Summary().ReuseDistance.P99)}"),
            $"reuse distance (distinct blocks, power-of-two bins); {f.Accesses.Count - distances.Length} first accesses not shown", "reuses");
        var bars = plot.Add.Bars(Enumerable.Range(0, counts.Length).Select(i => (double)i).ToArray(), counts);
        bars.Color = Colors.SteelBlue;
        var labels = Enumerable.Range(0, counts.Length).Select(BinLabel).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(Enumerable.Range(0, counts.Length).Select(i => (double)i).ToArray(), labels);
        plot.Axes.Margins(bottom: 0);
        return plot;

        static int Bin(int d) => d == 0 ? 0 : 1 + (int)Math.Log2(d);
        static string BinLabel(int bin) => bin switch
        {
            0 => "0",
            1 => "1",
            _ => $"{1 << (bin - 1)}-{(1 << bin) - 1}",
        };
        static string Num(double? d) => d is { } v ? v.ToString("0.##", CultureInfo.InvariantCulture) : "-";
    }

    /// <summary>Accesses per second over time, hits stacked on misses.</summary>
    private static Plot Timeline(AccessStatsFile f)
    {
        var (width, count) = Buckets(f, 80);
        var hits = new double[count];
        var misses = new double[count];
        foreach (var a in f.Accesses)
        {
            int b = Bucket(a.T, width, count);
            if (a.Hit) hits[b] += 1 / width; else misses[b] += 1 / width;
        }
        var plot = NewPlot($"Accesses per second, hits and misses ({Subtitle(f)})",
            string.Create(CultureInfo.InvariantCulture, $"time since start (s), {width:0.###} s per bar"), "accesses per second");
        var missBars = new List<Bar>();
        var hitBars = new List<Bar>();
        for (int b = 0; b < count; b++)
        {
            double x = (b + 0.5) * width;
            missBars.Add(new Bar { Position = x, Value = misses[b], ValueBase = 0, FillColor = Colors.IndianRed, Size = width * 0.9, LineWidth = 0 });
            hitBars.Add(new Bar { Position = x, Value = misses[b] + hits[b], ValueBase = misses[b], FillColor = Colors.SeaGreen, Size = width * 0.9, LineWidth = 0 });
        }
        plot.Add.Bars(missBars).LegendText = "misses";
        plot.Add.Bars(hitBars).LegendText = "hits";
        plot.ShowLegend(Alignment.UpperRight);
        plot.Axes.Margins(bottom: 0);
        plot.Axes.SetLimitsX(0, count * width);
        return plot;
    }
}
