using System.Globalization;
using Kvasir.Protocol.Stats;

namespace Kvasir.Cli.Stats;

/// <summary>
/// An access statistics file, schema v1 (docs/engine-side.md § Access statistics file), as the CLI reads, writes and
/// prints it. The format itself (model, summary, reader, writer) is Kvasir.Protocol's <see cref="AccessStatsJson"/>;
/// this type adds files, the CLI's messages and the text summary.
/// </summary>
public sealed class AccessStatsFile
{
    public required string Source { get; init; }
    public required long StartUnixMs { get; init; }
    public required long EndUnixMs { get; init; }
    public long Dropped { get; init; }
    public required IReadOnlyList<AccessRecord> Accesses { get; init; }

    /// <summary>The summary stored in a file that was read (null for one built in memory); <see cref="Summary"/> recomputes it.</summary>
    public AccessStatsSummary? StoredSummary { get; init; }

    /// <summary>The summary computed from <see cref="Accesses"/>.</summary>
    public AccessStatsSummary Summary() => AccessStatsSummary.Compute(Accesses);

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
        catch (AccessStatsFormatException ex) { throw new AccessStatsFormatException($"{path}: {ex.Message}", ex); }
    }

    /// <summary>Parses a file's bytes (<see cref="AccessStatsJson.Parse(ReadOnlySpan{byte})"/>).</summary>
    public static AccessStatsFile Parse(ReadOnlySpan<byte> json)
    {
        var doc = AccessStatsJson.Parse(json);
        return new AccessStatsFile
        {
            Source = doc.Source,
            StartUnixMs = doc.StartUnixMs,
            EndUnixMs = doc.EndUnixMs,
            Dropped = doc.Dropped,
            Accesses = doc.Accesses,
            StoredSummary = doc.StoredSummary,
        };
    }

    /// <summary>Writes the file (with its recomputed summary) to <paramref name="path"/>, atomically.</summary>
    public void Write(string path)
    {
        var tmp = path + ".tmp";
        File.WriteAllBytes(tmp, ToJson());
        File.Move(tmp, path, overwrite: true);
    }

    public byte[] ToJson() => AccessStatsJson.ToUtf8Bytes(new AccessStatsDocument(Source, StartUnixMs, EndUnixMs, Dropped, Accesses));

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
