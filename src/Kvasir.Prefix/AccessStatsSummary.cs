namespace Kvasir.Prefix;

/// <summary>One recorded access, as stored in an access-statistics file: <see cref="T"/> is ms since the file's start.</summary>
public sealed record AccessRecord(double T, string Block, bool Hit, string? Tier, long? Bytes, long? Tokens);

/// <summary>A block and how often it was accessed.</summary>
public sealed record HotBlock(string Block, long Accesses);

/// <summary>
/// Reuse distances (LRU stack distance: distinct blocks accessed since the previous access of the same block) over
/// the accesses that have one; percentiles by nearest rank, null when <see cref="Count"/> is 0.
/// </summary>
public sealed record ReuseDistanceSummary(long Count, double? P50, double? P90, double? P99);

/// <summary>
/// The summary of an access-statistics file (schema v1, docs/engine-side.md), as <c>get_stats_summary()</c> returns it
/// in both languages and as the file stores it.
/// </summary>
public sealed record AccessStatsSummary(
    long TotalAccesses, long Hits, long Misses, double HitRate, long UniqueBlocks,
    ReuseDistanceSummary ReuseDistance, IReadOnlyList<HotBlock> Hottest, IReadOnlyDictionary<string, long> HitsByTier)
{
    /// <summary>Blocks listed in <see cref="Hottest"/> at most.</summary>
    public const int HottestCount = 10;

    /// <summary>
    /// The summary of <paramref name="accesses"/> in the order given (time order). O(n log n): reuse distances come
    /// from a Fenwick tree over the positions of each block's latest access.
    /// </summary>
    public static AccessStatsSummary Compute(IReadOnlyList<AccessRecord> accesses)
    {
        ArgumentNullException.ThrowIfNull(accesses);
        int n = accesses.Count;
        long hits = 0;
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var tiers = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        var tree = new long[n + 1];
        var distances = new List<long>();
        for (int i = 0; i < n; i++)
        {
            var access = accesses[i];
            if (access.Hit) hits++;
            counts[access.Block] = counts.GetValueOrDefault(access.Block) + 1;
            if (access.Tier is string tier)
                tiers[tier] = tiers.GetValueOrDefault(tier) + (access.Hit ? 1 : 0);
            if (last.TryGetValue(access.Block, out int previous))
            {
                distances.Add(Sum(tree, i) - Sum(tree, previous + 1));
                Add(tree, previous, -1);
            }
            Add(tree, i, 1);
            last[access.Block] = i;
        }
        distances.Sort();
        var hottest = counts.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal)
            .Take(HottestCount).Select(p => new HotBlock(p.Key, p.Value)).ToArray();
        return new AccessStatsSummary(n, hits, n - hits, n == 0 ? 0 : (double)hits / n, counts.Count,
            new ReuseDistanceSummary(distances.Count, Percentile(distances, 50), Percentile(distances, 90), Percentile(distances, 99)),
            hottest, tiers);
    }

    /// <summary>
    /// Whether <paramref name="other"/> says the same: counts, blocks and tiers exactly, the rates and percentiles
    /// within <paramref name="tolerance"/> (floats cross a JSON round trip and another language).
    /// </summary>
    public bool SameAs(AccessStatsSummary other, double tolerance = 1e-9)
    {
        ArgumentNullException.ThrowIfNull(other);
        return TotalAccesses == other.TotalAccesses && Hits == other.Hits && Misses == other.Misses
            && Math.Abs(HitRate - other.HitRate) <= tolerance && UniqueBlocks == other.UniqueBlocks
            && ReuseDistance.Count == other.ReuseDistance.Count
            && Close(ReuseDistance.P50, other.ReuseDistance.P50, tolerance)
            && Close(ReuseDistance.P90, other.ReuseDistance.P90, tolerance)
            && Close(ReuseDistance.P99, other.ReuseDistance.P99, tolerance)
            && Hottest.SequenceEqual(other.Hottest)
            && HitsByTier.Count == other.HitsByTier.Count
            && HitsByTier.All(p => other.HitsByTier.TryGetValue(p.Key, out long v) && v == p.Value);
    }

    /// <summary>The first difference from <paramref name="other"/> in words, or null when <see cref="SameAs"/>.</summary>
    public string? Difference(AccessStatsSummary other, double tolerance = 1e-9)
    {
        if (SameAs(other, tolerance)) return null;
        return $"stored {Describe(other)} but recomputed {Describe(this)}";
    }

    private static string Describe(AccessStatsSummary s) =>
        $"(total {s.TotalAccesses}, hits {s.Hits}, misses {s.Misses}, hit_rate {s.HitRate}, unique {s.UniqueBlocks}, " +
        $"reuse {s.ReuseDistance.Count}/{s.ReuseDistance.P50}/{s.ReuseDistance.P90}/{s.ReuseDistance.P99}, " +
        $"hottest [{string.Join(", ", s.Hottest.Select(h => $"{h.Block}:{h.Accesses}"))}], " +
        $"tiers {{{string.Join(", ", s.HitsByTier.Select(p => $"{p.Key}:{p.Value}"))}}})";

    private static bool Close(double? a, double? b, double tolerance) =>
        a is null ? b is null : b is not null && Math.Abs(a.Value - b.Value) <= tolerance;

    private static double? Percentile(List<long> sorted, int p)
    {
        if (sorted.Count == 0) return null;
        long rank = Math.Max(1, ((long)p * sorted.Count + 99) / 100);
        return sorted[(int)rank - 1];
    }

    private static void Add(long[] tree, int index, long delta)
    {
        for (int i = index + 1; i < tree.Length; i += i & -i) tree[i] += delta;
    }

    /// <summary>Sum of positions 0 .. count − 1.</summary>
    private static long Sum(long[] tree, int count)
    {
        long sum = 0;
        for (int i = count; i > 0; i -= i & -i) sum += tree[i];
        return sum;
    }
}
