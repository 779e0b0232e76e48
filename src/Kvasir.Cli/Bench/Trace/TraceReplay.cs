using System.Diagnostics;

namespace Kvasir.Cli.Bench.Trace;

/// <summary>What a replay against a live target measured, besides its hits.</summary>
public sealed record TraceReplayResult(
    TraceHits Hits, long BytesRead, long BytesWritten, double GetSeconds, double PutSeconds, double WallSeconds,
    long[] LookupTicks, long Errors)
{
    public double GetGBps => GetSeconds > 0 ? BytesRead / GetSeconds / 1e9 : 0;

    public double PutGBps => PutSeconds > 0 ? BytesWritten / PutSeconds / 1e9 : 0;

    /// <summary>Lookup (batched exists) latency at quantile <paramref name="q"/>, in microseconds.</summary>
    public double LookupMicros(double q) => LatencyStats.Percentile(LookupTicks, q) * 1e6 / Stopwatch.Frequency;
}

/// <summary>
/// Replays a trace against a live target, one request at a time: a batched exists of the request's chain, GETs of the
/// hit prefix (the longest run of present blocks from the start) into a caller buffer, then one PUT of the rest as a
/// chain whose parent is the last hit block. The same sequence of store operations as <see cref="TraceSimulator"/>.
/// </summary>
public sealed class TraceReplay(IReadOnlyList<TraceRequest> requests, int blockBytes, double speed)
{
    /// <summary>Requests replayed so far (for a progress bar).</summary>
    public int Done => Volatile.Read(ref _done);

    private int _done;

    public async Task<TraceReplayResult> RunAsync(IBenchTarget target, CancellationToken ct = default)
    {
        int longest = requests.Count == 0 ? 0 : requests.Max(r => r.Blocks.Length);
        var value = new byte[blockBytes];
        new Random(17).NextBytes(value);
        var buffer = new byte[(long)longest * blockBytes];
        var keyCache = new Dictionary<long, ReadOnlyMemory<byte>>();
        ReadOnlyMemory<byte> KeyOf(long block) => keyCache.TryGetValue(block, out var k) ? k : keyCache[block] = TraceFile.Key(block);
        var lengths = new long[longest];
        var lookups = new long[requests.Count];
        long blocks = 0, hits = 0, input = 0, saved = 0, read = 0, written = 0, errors = 0, getTicks = 0, putTicks = 0;
        var wall = Stopwatch.StartNew();
        long origin = requests.Count > 0 ? requests[0].TimestampMs : 0;
        for (int r = 0; r < requests.Count; r++)
        {
            ct.ThrowIfCancellationRequested();
            var request = requests[r];
            if (speed > 0)
            {
                var due = TimeSpan.FromMilliseconds((request.TimestampMs - origin) / speed) - wall.Elapsed;
                if (due > TimeSpan.Zero) await Task.Delay(due, ct);
            }
            var keys = request.Blocks.Select(KeyOf).ToArray();
            var presentView = new int[keys.Length];
            long t0 = Stopwatch.GetTimestamp();
            await target.ExistsAsync(keys, presentView);
            lookups[r] = Stopwatch.GetTimestamp() - t0;
            int k = 0;
            while (k < keys.Length && presentView[k] == 1) k++;
            errors += presentView.Count(p => p < 0);

            int hit = 0;
            if (k > 0)
            {
                var destinations = new Memory<byte>[k];
                for (int i = 0; i < k; i++) destinations[i] = buffer.AsMemory(i * blockBytes, blockBytes);
                var got = lengths.AsMemory(0, k);
                long g0 = Stopwatch.GetTimestamp();
                await target.GetAsync(keys[..k], destinations, lengths);
                getTicks += Stopwatch.GetTimestamp() - g0;
                while (hit < k && got.Span[hit] == blockBytes) hit++;
                errors += got.Span.ToArray().Count(l => l == IBenchTarget.Error);
                read += (long)hit * blockBytes;
            }
            if (hit < keys.Length)
            {
                var missed = keys[hit..];
                var values = Enumerable.Repeat((ReadOnlyMemory<byte>)value, missed.Length).ToArray();
                long p0 = Stopwatch.GetTimestamp();
                errors += await target.PutChainAsync(missed, values, hit > 0 ? keys[hit - 1] : default);
                putTicks += Stopwatch.GetTimestamp() - p0;
                written += (long)missed.Length * blockBytes;
            }
            blocks += keys.Length;
            hits += hit;
            input += request.InputTokens;
            saved += TraceFile.TokensSaved(request, hit);
            Interlocked.Increment(ref _done);
        }
        Array.Sort(lookups);
        return new TraceReplayResult(new TraceHits(requests.Count, blocks, hits, input, saved, 0), read, written,
            (double)getTicks / Stopwatch.Frequency, (double)putTicks / Stopwatch.Frequency, wall.Elapsed.TotalSeconds, lookups, errors);
    }
}
