using System.Text.Json;

namespace Kvasir.Protocol.Stats;

/// <summary>A file that is not an access-statistics file of a version this reader knows; the message says why, in one line.</summary>
public sealed class AccessStatsFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The access-statistics file, schema "kvasir-access-stats" version 1 (docs/engine-side.md § Access statistics
/// file; vector tests/vectors/access_stats.json): the one reader and writer that the collector, the node and the
/// CLI share. Pure code: bytes and streams in, bytes and streams out; opening files is the caller's business.
/// </summary>
public static class AccessStatsJson
{
    /// <summary>The "schema" every file carries.</summary>
    public const string Schema = "kvasir-access-stats";

    /// <summary>The version this code writes and the newest it reads.</summary>
    public const int Version = 1;

    /// <summary>Tier names the schema allows for a hit, in the order <c>hits_by_tier</c> lists them.</summary>
    public static readonly IReadOnlyList<string> Tiers = ["engine", "dram", "disk", "shared"];

    /// <summary>
    /// Parses and checks a file's bytes: the schema, a version of 1 .. <see cref="Version"/>, the required fields
    /// (start_unix_ms, end_unix_ms, accesses; each access's t, block, hit), tier names, time order, and the stored
    /// summary's shape when there is one. Unknown fields are ignored. Throws <see cref="AccessStatsFormatException"/>.
    /// Does not compare the stored summary with the accesses: see <see cref="AccessStatsSummary.Difference"/>.
    /// </summary>
    public static AccessStatsDocument Parse(ReadOnlySpan<byte> json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json.ToArray()); }
        catch (JsonException ex) { throw new AccessStatsFormatException($"not JSON: {OneLine(ex.Message)}", ex); }
        using (doc) return Parse(doc.RootElement);
    }

    /// <summary>As <see cref="Parse(ReadOnlySpan{byte})"/>, reading <paramref name="stream"/> to its end.</summary>
    public static AccessStatsDocument Parse(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(stream); }
        catch (JsonException ex) { throw new AccessStatsFormatException($"not JSON: {OneLine(ex.Message)}", ex); }
        using (doc) return Parse(doc.RootElement);
    }

    private static AccessStatsDocument Parse(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new AccessStatsFormatException("not an access statistics file: the top level is not an object");
        if (!root.TryGetProperty("schema", out var schema) || schema.ValueKind != JsonValueKind.String)
            throw new AccessStatsFormatException($"not an access statistics file: no \"schema\": \"{Schema}\"");
        if (schema.GetString() != Schema) throw new AccessStatsFormatException($"schema is '{schema.GetString()}', not '{Schema}'");
        if (!root.TryGetProperty("version", out var version) || version.ValueKind != JsonValueKind.Number || !version.TryGetInt32(out int v) || v < 1)
            throw new AccessStatsFormatException("\"version\" is missing or not a whole number >= 1");
        if (v > Version) throw new AccessStatsFormatException($"version {v} is newer than this reader (it reads version {Version}); upgrade kvasir");
        var accessesJson = root.TryGetProperty("accesses", out var a) && a.ValueKind == JsonValueKind.Array
            ? a : throw new AccessStatsFormatException("\"accesses\" is missing or not an array");
        var accesses = new List<AccessRecord>(accessesJson.GetArrayLength());
        int i = 0;
        foreach (var e in accessesJson.EnumerateArray())
        {
            accesses.Add(ParseAccess(e, i));
            if (i > 0 && accesses[i].T < accesses[i - 1].T)
                throw new AccessStatsFormatException($"accesses[{i}]: t {accesses[i].T} is earlier than the access before it (accesses must be in time order)");
            i++;
        }
        return new AccessStatsDocument(
            String(root, "source", "") ?? "",
            Long(root, "start_unix_ms", "") ?? throw new AccessStatsFormatException("\"start_unix_ms\" is missing"),
            Long(root, "end_unix_ms", "") ?? throw new AccessStatsFormatException("\"end_unix_ms\" is missing"),
            Long(root, "dropped", "") ?? 0,
            accesses)
        {
            StoredSummary = root.TryGetProperty("summary", out var s) && s.ValueKind == JsonValueKind.Object ? ParseSummary(s) : null,
        };
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
        if (tier is not null && !Tiers.Contains(tier))
            throw new AccessStatsFormatException($"{where}: tier '{tier}' is not one of {string.Join(", ", Tiers)} or null");
        return new AccessRecord(t.GetDouble(), block, hit.GetBoolean(), tier, Long(e, "bytes", where), Long(e, "tokens", where));
    }

    private static AccessStatsSummary ParseSummary(JsonElement s)
    {
        const string where = "summary";
        long Required(JsonElement o, string name, string at) => Long(o, name, at) ?? throw new AccessStatsFormatException($"{at}: \"{name}\" is missing");
        if (!s.TryGetProperty("reuse_distance", out var reuse) || reuse.ValueKind != JsonValueKind.Object)
            throw new AccessStatsFormatException($"{where}: \"reuse_distance\" is missing or not an object");
        if (!s.TryGetProperty("hottest", out var hottest) || hottest.ValueKind != JsonValueKind.Array)
            throw new AccessStatsFormatException($"{where}: \"hottest\" is missing or not an array");
        if (!s.TryGetProperty("hits_by_tier", out var tiers) || tiers.ValueKind != JsonValueKind.Object)
            throw new AccessStatsFormatException($"{where}: \"hits_by_tier\" is missing or not an object");
        var hot = new List<HotBlock>();
        foreach (var h in hottest.EnumerateArray())
        {
            if (h.ValueKind != JsonValueKind.Object) throw new AccessStatsFormatException($"{where}.hottest[{hot.Count}] is not an object");
            hot.Add(new HotBlock(String(h, "block", $"{where}.hottest[{hot.Count}]") ?? throw new AccessStatsFormatException($"{where}.hottest[{hot.Count}]: \"block\" is missing"),
                Required(h, "accesses", $"{where}.hottest[{hot.Count}]")));
        }
        var byTier = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var p in tiers.EnumerateObject())
            byTier[p.Name] = p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt64(out long n) ? n
                : throw new AccessStatsFormatException($"{where}.hits_by_tier: \"{p.Name}\" is not a whole number");
        return new AccessStatsSummary(
            Required(s, "total_accesses", where), Required(s, "hits", where), Required(s, "misses", where),
            Double(s, "hit_rate", where) ?? throw new AccessStatsFormatException($"{where}: \"hit_rate\" is missing"),
            Required(s, "unique_blocks", where),
            new ReuseDistanceSummary(Required(reuse, "count", $"{where}.reuse_distance"),
                Double(reuse, "p50", $"{where}.reuse_distance"), Double(reuse, "p90", $"{where}.reuse_distance"), Double(reuse, "p99", $"{where}.reuse_distance")),
            hot, byTier);
    }

    private static string? String(JsonElement o, string name, string where) =>
        !o.TryGetProperty(name, out var p) || p.ValueKind == JsonValueKind.Null ? null
        : p.ValueKind == JsonValueKind.String ? p.GetString()
        : throw new AccessStatsFormatException($"{Where(where)}\"{name}\" is not a string");

    private static long? Long(JsonElement o, string name, string where) =>
        !o.TryGetProperty(name, out var p) || p.ValueKind == JsonValueKind.Null ? null
        : p.ValueKind == JsonValueKind.Number && p.TryGetInt64(out long n) ? n
        : throw new AccessStatsFormatException($"{Where(where)}\"{name}\" is not a whole number");

    private static double? Double(JsonElement o, string name, string where) =>
        !o.TryGetProperty(name, out var p) || p.ValueKind == JsonValueKind.Null ? null
        : p.ValueKind == JsonValueKind.Number ? p.GetDouble()
        : throw new AccessStatsFormatException($"{Where(where)}\"{name}\" is not a number");

    private static string Where(string where) => where.Length == 0 ? "" : where + ": ";

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");

    /// <summary>
    /// Writes <paramref name="document"/> as one JSON object (compact field order: schema, version, source, times,
    /// dropped, accesses, summary) with <paramref name="summary"/>, by default the one computed from its accesses.
    /// </summary>
    public static void Write(Utf8JsonWriter w, AccessStatsDocument document, AccessStatsSummary? summary = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(document);
        w.WriteStartObject();
        w.WriteString("schema", Schema);
        w.WriteNumber("version", Version);
        w.WriteString("source", document.Source);
        w.WriteNumber("start_unix_ms", document.StartUnixMs);
        w.WriteNumber("end_unix_ms", document.EndUnixMs);
        w.WriteNumber("dropped", document.Dropped);
        w.WriteStartArray("accesses");
        foreach (var a in document.Accesses)
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
        WriteSummary(w, summary ?? AccessStatsSummary.Compute(document.Accesses));
        w.WriteEndObject();
    }

    /// <summary>As <see cref="Write(Utf8JsonWriter, AccessStatsDocument, AccessStatsSummary?)"/>, UTF-8 JSON to <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, AccessStatsDocument document, AccessStatsSummary? summary = null)
    {
        using var w = new Utf8JsonWriter(stream);
        Write(w, document, summary);
    }

    /// <summary>The file's bytes, UTF-8 JSON.</summary>
    public static byte[] ToUtf8Bytes(AccessStatsDocument document, AccessStatsSummary? summary = null)
    {
        using var buffer = new MemoryStream();
        Write(buffer, document, summary);
        return buffer.ToArray();
    }

    /// <summary>The summary as the schema writes it, one JSON object.</summary>
    public static void WriteSummary(Utf8JsonWriter w, AccessStatsSummary s)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(s);
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

    /// <summary>The summary's bytes, UTF-8 JSON.</summary>
    public static byte[] SummaryToUtf8Bytes(AccessStatsSummary summary)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer)) WriteSummary(w, summary);
        return buffer.ToArray();
    }
}
