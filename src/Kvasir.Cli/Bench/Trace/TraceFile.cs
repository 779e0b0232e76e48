using System.Text;
using System.Text.Json;

namespace Kvasir.Cli.Bench.Trace;

/// <summary>One request of a Mooncake-format trace: its prompt as a chain of block ids (each id naming a block and its whole prefix).</summary>
public sealed record TraceRequest(long TimestampMs, int InputTokens, int OutputTokens, long[] Blocks);

/// <summary>
/// Reads the Mooncake trace format: one JSON object a line with <c>timestamp</c> (ms), <c>input_length</c>,
/// <c>output_length</c> (tokens) and <c>hash_ids</c> (the prompt's 512-token blocks, in order).
/// </summary>
public static class TraceFile
{
    /// <summary>Tokens per block in the Mooncake traces.</summary>
    public const int TokensPerBlock = 512;

    /// <summary>Reads at most <paramref name="limit"/> requests (null: all); a malformed line is a <see cref="FormatException"/> naming its line.</summary>
    public static List<TraceRequest> Read(string path, int? limit = null)
    {
        var requests = new List<TraceRequest>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path, Encoding.UTF8))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            if (limit is int max && requests.Count >= max) break;
            requests.Add(Parse(line, path, lineNumber));
        }
        return requests;
    }

    /// <summary>The key a block is stored under by every replay and the simulator (short ASCII, valid for memcached too).</summary>
    public static byte[] Key(long block) => Encoding.ASCII.GetBytes(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"t{block}"));

    /// <summary>Distinct block ids in the requests.</summary>
    public static int UniqueBlocks(IReadOnlyList<TraceRequest> requests) => requests.SelectMany(r => r.Blocks).Distinct().Count();

    /// <summary>Prefill tokens a hit of the first <paramref name="blocks"/> blocks saves (the last block may be partial).</summary>
    public static long TokensSaved(TraceRequest request, int blocks) => Math.Min((long)blocks * TokensPerBlock, Math.Max(request.InputTokens, 0));

    private static TraceRequest Parse(string line, string path, int lineNumber)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (!root.TryGetProperty("hash_ids", out var ids) || ids.ValueKind != JsonValueKind.Array)
                throw new FormatException("no hash_ids array");
            var blocks = new long[ids.GetArrayLength()];
            int i = 0;
            foreach (var id in ids.EnumerateArray()) blocks[i++] = id.GetInt64();
            return new TraceRequest(
                root.TryGetProperty("timestamp", out var t) ? t.GetInt64() : 0,
                root.TryGetProperty("input_length", out var input) ? input.GetInt32() : blocks.Length * TokensPerBlock,
                root.TryGetProperty("output_length", out var output) ? output.GetInt32() : 0,
                blocks);
        }
        catch (Exception ex) when (ex is JsonException or FormatException or InvalidOperationException)
        {
            throw new FormatException($"{path}:{lineNumber}: not a Mooncake trace line (timestamp, input_length, output_length, hash_ids): {ex.Message}");
        }
    }
}
