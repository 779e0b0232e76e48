using System.Text.Json;

namespace Kvasir.Prefix;

/// <summary>
/// An access-statistics file, schema "kvasir-access-stats" version 1 (docs/engine-side.md): who wrote it, its time
/// origin, the accesses in time order, and their summary. Written by the .NET and Python collectors and by the node;
/// <see cref="Read(string)"/> takes any of them.
/// </summary>
public sealed record AccessStatsFile(string Source, long StartUnixMs, long EndUnixMs, long Dropped, IReadOnlyList<AccessRecord> Accesses, AccessStatsSummary Summary)
{
    /// <summary>The "schema" every file carries.</summary>
    public const string Schema = "kvasir-access-stats";

    /// <summary>The version this code writes and the newest it reads.</summary>
    public const int Version = 1;

    /// <summary>
    /// Reads and checks a file: another schema, no version or a newer one: <see cref="MetadataMismatchException"/>;
    /// malformed fields: <see cref="MetadataMismatchException"/> naming the field; a stored summary that differs from
    /// the one recomputed from the accesses: <see cref="ChecksumMismatchException"/>. Unknown fields are ignored.
    /// The returned <see cref="Summary"/> is the recomputed one.
    /// </summary>
    public static AccessStatsFile Read(string path)
    {
        using var stream = File.OpenRead(path);
        return Read(stream, path);
    }

    /// <summary>As <see cref="Read(string)"/>, from a stream; <paramref name="name"/> appears in errors.</summary>
    public static AccessStatsFile Read(Stream stream, string name = "stream")
    {
        JsonDocument document;
        try { document = JsonDocument.Parse(stream); }
        catch (JsonException e) { throw Bad(name, $"not JSON: {e.Message}", e); }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad(name, "the top level is not an object");
            string? schema = root.TryGetProperty("schema", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null;
            if (schema != Schema) throw Bad(name, $"schema is {(schema is null ? "missing" : $"'{schema}'")}, expected '{Schema}'");
            if (!root.TryGetProperty("version", out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int version))
                throw Bad(name, "version is missing or not an integer");
            if (version > Version || version < 1) throw Bad(name, $"version {version} is not supported (this reader knows 1 .. {Version})");
            try
            {
                string source = root.GetProperty("source").GetString() ?? "";
                long start = root.GetProperty("start_unix_ms").GetInt64();
                long end = root.GetProperty("end_unix_ms").GetInt64();
                long dropped = root.TryGetProperty("dropped", out var d) ? d.GetInt64() : 0;
                var accesses = new List<AccessRecord>();
                foreach (var a in root.GetProperty("accesses").EnumerateArray())
                {
                    accesses.Add(new AccessRecord(a.GetProperty("t").GetDouble(), a.GetProperty("block").GetString()!, a.GetProperty("hit").GetBoolean(),
                        OptionalString(a, "tier"), OptionalLong(a, "bytes"), OptionalLong(a, "tokens")));
                }
                var computed = AccessStatsSummary.Compute(accesses);
                if (root.TryGetProperty("summary", out var stored) && stored.ValueKind == JsonValueKind.Object)
                {
                    string? difference = computed.Difference(ParseSummary(stored));
                    if (difference is not null)
                        throw new ChecksumMismatchException($"{name}: the summary does not match the accesses: {difference}", new Dictionary<string, object?> { ["file"] = name });
                }
                return new AccessStatsFile(source, start, end, dropped, accesses, computed);
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw Bad(name, $"malformed field: {e.Message}", e);
            }
        }
    }

    /// <summary>Writes the file to <paramref name="path"/> (UTF-8 JSON, replacing it).</summary>
    public void Write(string path)
    {
        using var stream = File.Create(path);
        Write(stream);
    }

    /// <summary>Writes the file to <paramref name="stream"/>.</summary>
    public void Write(Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
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
            if (a.Bytes is long bytes) w.WriteNumber("bytes", bytes); else w.WriteNull("bytes");
            if (a.Tokens is long tokens) w.WriteNumber("tokens", tokens); else w.WriteNull("tokens");
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WritePropertyName("summary");
        WriteSummary(w, Summary);
        w.WriteEndObject();
    }

    private static void WriteSummary(Utf8JsonWriter w, AccessStatsSummary s)
    {
        w.WriteStartObject();
        w.WriteNumber("total_accesses", s.TotalAccesses);
        w.WriteNumber("hits", s.Hits);
        w.WriteNumber("misses", s.Misses);
        w.WriteNumber("hit_rate", s.HitRate);
        w.WriteNumber("unique_blocks", s.UniqueBlocks);
        w.WriteStartObject("reuse_distance");
        w.WriteNumber("count", s.ReuseDistance.Count);
        foreach (var (key, value) in new[] { ("p50", s.ReuseDistance.P50), ("p90", s.ReuseDistance.P90), ("p99", s.ReuseDistance.P99) })
        {
            if (value is double x) w.WriteNumber(key, x); else w.WriteNull(key);
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
        foreach (var (tier, hits) in s.HitsByTier) w.WriteNumber(tier, hits);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static AccessStatsSummary ParseSummary(JsonElement s)
    {
        var reuse = s.GetProperty("reuse_distance");
        return new AccessStatsSummary(
            s.GetProperty("total_accesses").GetInt64(), s.GetProperty("hits").GetInt64(), s.GetProperty("misses").GetInt64(),
            s.GetProperty("hit_rate").GetDouble(), s.GetProperty("unique_blocks").GetInt64(),
            new ReuseDistanceSummary(reuse.GetProperty("count").GetInt64(), OptionalDouble(reuse, "p50"), OptionalDouble(reuse, "p90"), OptionalDouble(reuse, "p99")),
            s.GetProperty("hottest").EnumerateArray().Select(h => new HotBlock(h.GetProperty("block").GetString()!, h.GetProperty("accesses").GetInt64())).ToArray(),
            s.GetProperty("hits_by_tier").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt64(), StringComparer.Ordinal));
    }

    private static string? OptionalString(JsonElement e, string name) =>
        e.TryGetProperty(name, out var p) && p.ValueKind != JsonValueKind.Null ? p.GetString() : null;

    private static long? OptionalLong(JsonElement e, string name) =>
        e.TryGetProperty(name, out var p) && p.ValueKind != JsonValueKind.Null ? p.GetInt64() : null;

    private static double? OptionalDouble(JsonElement e, string name) =>
        e.TryGetProperty(name, out var p) && p.ValueKind != JsonValueKind.Null ? p.GetDouble() : null;

    private static MetadataMismatchException Bad(string name, string why, Exception? cause = null) =>
        new($"{name}: not a readable access-statistics file: {why}", new Dictionary<string, object?> { ["file"] = name }, cause);
}
