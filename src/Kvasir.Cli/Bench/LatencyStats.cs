namespace Kvasir.Cli.Bench;

/// <summary>Percentiles of per-request latencies (Stopwatch ticks).</summary>
public static class LatencyStats
{
    /// <summary>Nearest-rank percentile of sorted samples (q in 0..1): the smallest sample with at least q of all samples at or below it; 0 for no samples.</summary>
    public static double Percentile(long[] sorted, double q)
    {
        if (sorted.Length == 0) return 0;
        int rank = (int)Math.Ceiling(q * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
