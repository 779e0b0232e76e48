namespace Kvasir.Protocol;

/// <summary>
/// GET hit counts from a node's STATS counters, the one reading every report shares (/metrics, /v1/status, the
/// dashboard, <c>kvasir status</c>). <c>hits</c>/<c>misses</c> in STATS are the DRAM tier's: a DRAM miss served by
/// the disk or shared-FS tier (<c>tier_served_below</c>) is a served hit, not a miss.
/// </summary>
public readonly record struct HitCounts(long DramHits, long DramMisses, long ServedBelow)
{
    /// <summary>GET keys served from any tier.</summary>
    public long Served => DramHits + ServedBelow;

    /// <summary>GET keys no tier had.</summary>
    public long Missed => Math.Max(0, DramMisses - ServedBelow);

    /// <summary>Served / lookups; 0 before the first lookup.</summary>
    public double ServedRatio => Ratio(Served, Served + Missed);

    /// <summary>DRAM hits / lookups; 0 before the first lookup.</summary>
    public double DramRatio => Ratio(DramHits, DramHits + DramMisses);

    /// <summary>GET lookups so far.</summary>
    public long Lookups => DramHits + DramMisses;

    /// <summary>Reads the counters by their STATS names (a missing one is 0).</summary>
    public static HitCounts From(IReadOnlyDictionary<string, long> stats)
    {
        ArgumentNullException.ThrowIfNull(stats);
        return new(stats.GetValueOrDefault("hits"), stats.GetValueOrDefault("misses"), stats.GetValueOrDefault("tier_served_below"));
    }

    private static double Ratio(long part, long whole) => whole == 0 ? 0.0 : (double)part / whole;
}
