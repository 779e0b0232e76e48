namespace Kvasir.Protocol.Stats;

/// <summary>
/// One recorded access, as an access-statistics file stores it (schema v1, docs/engine-side.md § Access statistics
/// file): <paramref name="T"/> in ms since the file's start, the block id, hit or miss, where a hit was served
/// (one of <see cref="AccessStatsJson.Tiers"/>, or null), its bytes and tokens when known.
/// </summary>
public sealed record AccessRecord(double T, string Block, bool Hit, string? Tier = null, long? Bytes = null, long? Tokens = null);

/// <summary>A block and how often it was accessed.</summary>
public sealed record HotBlock(string Block, long Accesses);

/// <summary>
/// Reuse distances (LRU stack distance: distinct blocks accessed since the previous access of the same block) over
/// the accesses that have one; percentiles by nearest rank, null when <see cref="Count"/> is 0.
/// </summary>
public sealed record ReuseDistanceSummary(long Count, double? P50, double? P90, double? P99);

/// <summary>
/// The content of an access-statistics file: who wrote it, its time origin, the accesses in time order, how many
/// were not kept, and the summary the file stored (null when it had none or the content was built in memory).
/// </summary>
public sealed record AccessStatsDocument(string Source, long StartUnixMs, long EndUnixMs, long Dropped, IReadOnlyList<AccessRecord> Accesses)
{
    /// <summary>The "summary" the file stored, as read; <see cref="AccessStatsSummary.Compute"/> gives the true one.</summary>
    public AccessStatsSummary? StoredSummary { get; init; }
}

/// <summary>
/// The summary of an access-statistics file (schema v1), as <c>get_stats_summary()</c> returns it in both languages
/// and as the file stores it. The one implementation for the engine-side collector, the node and the CLI.
/// </summary>
public sealed record AccessStatsSummary(
    long TotalAccesses, long Hits, long Misses, double HitRate, long UniqueBlocks,
    ReuseDistanceSummary ReuseDistance, IReadOnlyList<HotBlock> Hottest, IReadOnlyDictionary<string, long> HitsByTier)
{
    /// <summary>Blocks listed in <see cref="Hottest"/> at most.</summary>
    public const int HottestCount = 10;

    /// <summary>
    /// The summary of <paramref name="accesses"/> in the order given (time order). Hits by tier count hits only,
    /// schema tiers in the schema's order, then any other tier name in ordinal order. O(n log n).
    /// </summary>
    public static AccessStatsSummary Compute(IReadOnlyList<AccessRecord> accesses)
    {
        ArgumentNullException.ThrowIfNull(accesses);
        int n = accesses.Count;
        long hits = 0;
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var tiers = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var a in accesses)
        {
            if (a.Hit)
            {
                hits++;
                if (a.Tier is { } tier) tiers[tier] = tiers.GetValueOrDefault(tier) + 1;
            }
            counts[a.Block] = counts.GetValueOrDefault(a.Block) + 1;
        }
        var distances = ReuseDistances(accesses).Where(d => d >= 0).Order().ToArray();
        var hottest = counts.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal)
            .Take(HottestCount).Select(p => new HotBlock(p.Key, p.Value)).ToArray();
        var byTier = new Dictionary<string, long>(StringComparer.Ordinal);   // insertion order is the written order
        foreach (var t in AccessStatsJson.Tiers.Where(tiers.ContainsKey)) byTier[t] = tiers[t];
        foreach (var t in tiers.Keys.Where(k => !byTier.ContainsKey(k)).Order(StringComparer.Ordinal)) byTier[t] = tiers[t];
        return new AccessStatsSummary(n, hits, n - hits, n == 0 ? 0 : (double)hits / n, counts.Count,
            new ReuseDistanceSummary(distances.Length, Percentile(distances, 50), Percentile(distances, 90), Percentile(distances, 99)),
            hottest, byTier);
    }

    /// <summary>
    /// Per access, its reuse distance: the number of distinct blocks accessed since the previous access of the same
    /// block (LRU stack distance), or -1 for a first access. O(n log n): a Fenwick tree marks each block's latest access.
    /// </summary>
    public static int[] ReuseDistances(IReadOnlyList<AccessRecord> accesses)
    {
        ArgumentNullException.ThrowIfNull(accesses);
        var result = new int[accesses.Count];
        var tree = new int[accesses.Count + 1];
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < accesses.Count; i++)
        {
            var block = accesses[i].Block;
            if (last.TryGetValue(block, out int p))
            {
                result[i] = Sum(tree, i) - Sum(tree, p + 1);
                Add(tree, p + 1, -1);
            }
            else result[i] = -1;
            Add(tree, i + 1, 1);
            last[block] = i;
        }
        return result;
    }

    /// <summary>
    /// Whether <paramref name="other"/> says the same: counts, blocks and tiers exactly (tiers by content, not
    /// order), the rates and percentiles within <paramref name="tolerance"/> (floats cross JSON and another language).
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

    /// <summary>The difference from <paramref name="other"/> (the stored one) in words, or null when <see cref="SameAs"/>.</summary>
    public string? Difference(AccessStatsSummary other, double tolerance = 1e-9) =>
        SameAs(other, tolerance) ? null : $"stored {Describe(other)} but recomputed {Describe(this)}";

    private static string Describe(AccessStatsSummary s) =>
        $"(total {s.TotalAccesses}, hits {s.Hits}, misses {s.Misses}, hit_rate {s.HitRate}, unique {s.UniqueBlocks}, " +
        $"reuse {s.ReuseDistance.Count}/{s.ReuseDistance.P50}/{s.ReuseDistance.P90}/{s.ReuseDistance.P99}, " +
        $"hottest [{string.Join(", ", s.Hottest.Select(h => $"{h.Block}:{h.Accesses}"))}], " +
        $"tiers {{{string.Join(", ", s.HitsByTier.Select(p => $"{p.Key}:{p.Value}"))}}})";

    private static bool Close(double? a, double? b, double tolerance) =>
        a is null ? b is null : b is not null && Math.Abs(a.Value - b.Value) <= tolerance;

    /// <summary>Nearest rank: the value at rank ceil(p/100 · n), 1-based, in integers so no rounding can move it.</summary>
    private static double? Percentile(int[] sorted, int p)
    {
        if (sorted.Length == 0) return null;
        long rank = Math.Max(1, ((long)p * sorted.Length + 99) / 100);
        return sorted[rank - 1];
    }

    private static int Sum(int[] tree, int i)
    {
        int s = 0;
        for (; i > 0; i -= i & -i) s += tree[i];
        return s;
    }

    private static void Add(int[] tree, int i, int delta)
    {
        for (; i < tree.Length; i += i & -i) tree[i] += delta;
    }
}
