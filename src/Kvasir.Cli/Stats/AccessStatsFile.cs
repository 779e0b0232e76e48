using System.Globalization;
using System.Text.Json;

namespace Kvasir.Cli.Stats;

// The access statistics file, schema v1 (docs/engine-side.md § Access statistics file): reader, writer and the
// summary. Kept in this one file so that it can be swapped for Kvasir.Prefix's equivalent when the two meet.

/// <summary>A file that is not an access statistics file of a version this reader knows; the message says why, in one line.</summary>
public sealed class AccessStatsFormatException(string message) : Exception(message);

/// <summary>One access: <paramref name="T"/> in ms since the file's start, the block id, hit or miss, where a hit was served.</summary>
public sealed record AccessRecord(double T, string Block, bool Hit, string? Tier = null, long? Bytes = null, long? Tokens = null);

/// <summary>Reuse distance (LRU stack distance) percentiles by nearest rank; null when no access had one.</summary>
public sealed record ReuseDistanceSummary(int Count, double? P50, double? P90, double? P99);

public sealed record HotBlock(string Block, int Accesses);

/// <summary>What the schema's "summary" holds.</summary>
public sealed record AccessStatsSummary(
    int TotalAccesses, int Hits, int Misses, double HitRate, int UniqueBlocks,
    ReuseDistanceSummary ReuseDistance, IReadOnlyList<HotBlock> Hottest, IReadOnlyDictionary<string, int> HitsByTier);

/// <summary>An access statistics file, schema v1: accesses in time order and their summary.</summary>
public sealed class AccessStatsFile
{
    public const string Schema = "kvasir-access-stats";
    public const int Version = 1;

    /// <summary>Tier names the schema allows for a hit.</summary>
    public static readonly IReadOnlyList<string> Tiers = ["engine", "dram", "disk", "shared"];

    public required string Source { get; init; }
    public required long StartUnixMs { get; init; }
    public required long EndUnixMs { get; init; }
    public long Dropped { get; init; }
    public required IReadOnlyList<AccessRecord> Accesses { get; init; }

    /// <summary>The summary stored in a file that was read (null for one built in memory); <see cref="Summary"/> recomputes it.</summary>
    public JsonElement? StoredSummary { get; init; }

    /// <summary>The summary computed from <see cref="Accesses"/>.</summary>
    public AccessStatsSummary Summary() => Summarize(Accesses);

    /// <summary>Reads and checks a file. Throws <see cref="AccessStatsFormatException"/> for a missing, unreadable or invalid one.</summary>
    public static AccessStatsFile Read(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new AccessStatsFormatException($"cannot read {path}: {ex.Message}");
        }
        try { return Parse(bytes); }
        catch (AccessStatsFormatException ex) { throw new AccessStatsFormatException($"{path}: {ex.Message}"); }
    }

    /// <summary>Parses a file's bytes; unknown fields are ignored, another schema or a larger version is refused.</summary>
    public static AccessStatsFile Parse(ReadOnlySpan<byte> json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json.ToArray()); }
        catch (JsonException ex) { throw new AccessStatsFormatException($"not JSON: {ex.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new AccessStatsFormatException("not an access statistics file: the top level is not an object");
            if (!root.TryGetProperty("schema", out var schema) || schema.ValueKind != JsonValueKind.String)
                throw new AccessStatsFormatException($"not an access statistics file: no \"schema\": \"{Schema}\"");
            if (schema.GetString() != Schema) throw new AccessStatsFormatException($"schema is '{schema.GetString()}', not '{Schema}'");
            if (!root.TryGetProperty("version", out var version) || !version.TryGetInt32(out int v) || v < 1)
                throw new AccessStatsFormatException("\"version\" is missing or not a whole number >= 1");
            if (v > Version) throw new AccessStatsFormatException($"version {v} is newer than this reader (it reads version {Version}); upgrade kvasir");
            var accessesJson = root.TryGetProperty("accesses", out var a) && a.ValueKind == JsonValueKind.Array
                ? a : throw new AccessStatsFormatException("\"accesses\" is missing or not an array");
            var accesses = new List<AccessRecord>(accessesJson.GetArrayLength());
            int i = 0;
            foreach (var e in accessesJson.EnumerateArray())
            {
                accesses.Add(ParseAccess(e, i));
                if (i > 0 && accesses[i].T < accesses[i - 1].T) throw new AccessStatsFormatException($"accesses[{i}]: t {accesses[i].T} is earlier than the access before it (accesses must be in time order)");
                i++;
            }
            return new AccessStatsFile
            {
                Source = String(root, "source", "") ?? "",
                StartUnixMs = Long(root, "start_unix_ms", "") ?? throw new AccessStatsFormatException("\"start_unix_ms\" is missing"),
                EndUnixMs = Long(root, "end_unix_ms", "") ?? throw new AccessStatsFormatException("\"end_unix_ms\" is missing"),
                Dropped = Long(root, "dropped", "") ?? 0,
                Accesses = accesses,
                StoredSummary = root.TryGetProperty("summary", out var s) && s.ValueKind == JsonValueKind.Object ? s.Clone() : null,
            };
        }
    }

    private static AccessRecord ParseAccess(JsonElement e, int i)
    {
        string where = $"accesses[{i}]";
        if (e.ValueKind != JsonValueKind.Object) throw new AccessStatsFormatException($"{where} is not an object");
        if (!e.TryGetProperty("t", out var t) || t.ValueKind != JsonValueKind.Number || !double.IsFinite(t.GetDouble()))
            throw new AccessStatsFormatException($"{where}: \"t\" is missing or not a number");
        var block = String(e, "block", where) ?? throw new AccessStatsFormatException($"{where}: \"block\" is missing");
        if (!e.TryGetProperty("hit", out var hit) || hit.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            throw new AccessStatsFormatException($"{where}: \"hit\" is missing or not true/false");
        var tier = String(e, "tier", where);
        if (tier is not null && !Tiers.Contains(tier)) throw new AccessStatsFormatException($"{where}: tier '{tier}' is not one of {string.Join(", ", Tiers)} or null");
        return new AccessRecord(t.GetDouble(), block, hit.GetBoolean(), tier, Long(e, "bytes", where), Long(e, "tokens", where));
    }

    private static string? String(JsonElement o, string name, string where) =>
        !o.TryGetProperty(name, out var p) || p.ValueKind == JsonValueKind.Null ? null
        : p.ValueKind == JsonValueKind.String ? p.GetString()
        : throw new AccessStatsFormatException($"{Where(where)}\"{name}\" is not a string");

    private static long? Long(JsonElement o, string name, string where) =>
        !o.TryGetProperty(name, out var p) || p.ValueKind == JsonValueKind.Null ? null
        : p.ValueKind == JsonValueKind.Number && p.TryGetInt64(out long n) ? n
        : throw new AccessStatsFormatException($"{Where(where)}\"{name}\" is not a whole number");

    private static string Where(string where) => where.Length == 0 ? "" : where + ": ";

    /// <summary>Writes the file (with its recomputed summary) to <paramref name="path"/>, atomically.</summary>
    public void Write(string path)
    {
        var tmp = path + ".tmp";
        File.WriteAllBytes(tmp, ToJson());
        File.Move(tmp, path, overwrite: true);
    }

    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false }))
        {
            w.WriteStartObject();
            w.WriteString("schema", Schema);
            w.WriteNumber("version", Version);
            w.WriteString("source", Source);
            w.WriteNumber("start_unix_ms", StartUnixMs);
            w.WriteNumber("end_unix_ms", EndUnixMs);
            w.WriteNumber("dropped", Dropped);
            w.WriteStartArray("accesses");
            foreach (var a in Accesses)
            {
                w.WriteStartObject();
                w.WriteNumber("t", a.T);
                w.WriteString("block", a.Block);
                w.WriteBoolean("hit", a.Hit);
                if (a.Tier is null) w.WriteNull("tier"); else w.WriteString("tier", a.Tier);
                if (a.Bytes is { } b) w.WriteNumber("bytes", b); else w.WriteNull("bytes");
                if (a.Tokens is { } k) w.WriteNumber("tokens", k); else w.WriteNull("tokens");
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WritePropertyName("summary");
            WriteSummary(w, Summary());
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>The summary as the schema writes it.</summary>
    public static void WriteSummary(Utf8JsonWriter w, AccessStatsSummary s)
    {
        w.WriteStartObject();
        w.WriteNumber("total_accesses", s.TotalAccesses);
        w.WriteNumber("hits", s.Hits);
        w.WriteNumber("misses", s.Misses);
        w.WriteNumber("hit_rate", s.HitRate);
        w.WriteNumber("unique_blocks", s.UniqueBlocks);
        w.WriteStartObject("reuse_distance");
        w.WriteNumber("count", s.ReuseDistance.Count);
        foreach (var (name, value) in new[] { ("p50", s.ReuseDistance.P50), ("p90", s.ReuseDistance.P90), ("p99", s.ReuseDistance.P99) })
        {
            if (value is { } d) w.WriteNumber(name, d); else w.WriteNull(name);
        }
        w.WriteEndObject();
        w.WriteStartArray("hottest");
        foreach (var h in s.Hottest)
        {
            w.WriteStartObject();
            w.WriteString("block", h.Block);
            w.WriteNumber("accesses", h.Accesses);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartObject("hits_by_tier");
        foreach (var (tier, n) in s.HitsByTier) w.WriteNumber(tier, n);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public static byte[] SummaryJson(AccessStatsSummary s)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer)) WriteSummary(w, s);
        return buffer.ToArray();
    }

    /// <summary>The summary of <paramref name="accesses"/> (in time order), as the schema defines it.</summary>
    public static AccessStatsSummary Summarize(IReadOnlyList<AccessRecord> accesses)
    {
        int hits = 0;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var byTier = new Dictionary<string, int>(StringComparer.Ordinal);
        var distances = ReuseDistances(accesses);
        foreach (var a in accesses)
        {
            if (a.Hit)
            {
                hits++;
                if (a.Tier is { } t) byTier[t] = byTier.GetValueOrDefault(t) + 1;
            }
            counts[a.Block] = counts.GetValueOrDefault(a.Block) + 1;
        }
        var sorted = distances.Where(d => d >= 0).Select(d => (double)d).Order().ToArray();
        double? Rank(double p) => sorted.Length == 0 ? null : sorted[Math.Max(1, (int)Math.Ceiling(p / 100 * sorted.Length)) - 1];
        return new AccessStatsSummary(
            accesses.Count, hits, accesses.Count - hits, accesses.Count == 0 ? 0.0 : (double)hits / accesses.Count, counts.Count,
            new ReuseDistanceSummary(sorted.Length, Rank(50), Rank(90), Rank(99)),
            counts.OrderByDescending(c => c.Value).ThenBy(c => c.Key, StringComparer.Ordinal).Take(10).Select(c => new HotBlock(c.Key, c.Value)).ToList(),
            Tiers.Where(byTier.ContainsKey).ToDictionary(t => t, t => byTier[t], StringComparer.Ordinal));
    }

    /// <summary>
    /// Per access, its reuse distance: the number of distinct blocks accessed since the previous access of the same
    /// block (LRU stack distance), or -1 for a first access. O(n log n): a Fenwick tree marks each block's latest access.
    /// </summary>
    public static int[] ReuseDistances(IReadOnlyList<AccessRecord> accesses)
    {
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

    /// <summary>The summary as text, for <c>kvasir stats summary</c> and <c>visualize --summary</c>.</summary>
    public string SummaryText()
    {
        var s = Summary();
        var c = CultureInfo.InvariantCulture;
        var lines = new List<string>
        {
            string.Create(c, $"source          {Source}"),
            string.Create(c, $"span            {DateTimeOffset.FromUnixTimeMilliseconds(StartUnixMs):yyyy-MM-dd HH:mm:ss.fff}Z + {(EndUnixMs - StartUnixMs) / 1000.0:F1} s"),
            string.Create(c, $"accesses        {s.TotalAccesses} ({Dropped} dropped)"),
            string.Create(c, $"hits            {s.Hits}"),
            string.Create(c, $"misses          {s.Misses}"),
            string.Create(c, $"hit rate        {100 * s.HitRate:F1} %"),
            string.Create(c, $"unique blocks   {s.UniqueBlocks}"),
            string.Create(c, $"reuse distance  {s.ReuseDistance.Count} reuses; p50 {Num(s.ReuseDistance.P50)}, p90 {Num(s.ReuseDistance.P90)}, p99 {Num(s.ReuseDistance.P99)} distinct blocks"),
            "hits by tier    " + (s.HitsByTier.Count == 0 ? "-" : string.Join(", ", s.HitsByTier.Select(t => $"{t.Key} {t.Value}"))),
            "hottest blocks",
        };
        lines.AddRange(s.Hottest.Select(h => string.Create(c, $"  {h.Accesses,8}  {h.Block}")));
        return string.Join('\n', lines);

        static string Num(double? d) => d is { } v ? v.ToString("0.##", CultureInfo.InvariantCulture) : "-";
    }
}
