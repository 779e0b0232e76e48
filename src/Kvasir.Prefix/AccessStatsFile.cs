using Kvasir.Protocol.Stats;

namespace Kvasir.Prefix;

/// <summary>
/// An access-statistics file, schema "kvasir-access-stats" version 1 (docs/engine-side.md): who wrote it, its time
/// origin, the accesses in time order, and their summary. Written by the .NET and Python collectors and by the node;
/// <see cref="Read(string)"/> takes any of them. The format itself (model, summary, reader, writer) is
/// Kvasir.Protocol's <see cref="AccessStatsJson"/>; this type adds files and this box's exceptions.
/// </summary>
public sealed record AccessStatsFile(string Source, long StartUnixMs, long EndUnixMs, long Dropped, IReadOnlyList<AccessRecord> Accesses, AccessStatsSummary Summary)
{
    /// <summary>The "schema" every file carries.</summary>
    public const string Schema = AccessStatsJson.Schema;

    /// <summary>The version this code writes and the newest it reads.</summary>
    public const int Version = AccessStatsJson.Version;

    /// <summary>
    /// Reads and checks a file: another schema, no version or a newer one, malformed or missing fields, accesses out
    /// of time order: <see cref="MetadataMismatchException"/> saying why; a stored summary that differs from the one
    /// recomputed from the accesses: <see cref="ChecksumMismatchException"/>. Unknown fields are ignored.
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
        AccessStatsDocument doc;
        try { doc = AccessStatsJson.Parse(stream); }
        catch (AccessStatsFormatException e)
        {
            throw new MetadataMismatchException($"{name}: not a readable access-statistics file: {e.Message}", new Dictionary<string, object?> { ["file"] = name }, e);
        }
        var computed = AccessStatsSummary.Compute(doc.Accesses);
        if (doc.StoredSummary is { } stored && computed.Difference(stored) is { } difference)
            throw new ChecksumMismatchException($"{name}: the summary does not match the accesses: {difference}", new Dictionary<string, object?> { ["file"] = name });
        return new AccessStatsFile(doc.Source, doc.StartUnixMs, doc.EndUnixMs, doc.Dropped, doc.Accesses, computed);
    }

    /// <summary>Writes the file to <paramref name="path"/> (UTF-8 JSON, replacing it).</summary>
    public void Write(string path)
    {
        using var stream = File.Create(path);
        Write(stream);
    }

    /// <summary>Writes the file, with <see cref="Summary"/>, to <paramref name="stream"/>.</summary>
    public void Write(Stream stream) =>
        AccessStatsJson.Write(stream, new AccessStatsDocument(Source, StartUnixMs, EndUnixMs, Dropped, Accesses), Summary);
}
