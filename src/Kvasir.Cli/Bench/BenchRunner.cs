using System.Diagnostics;
using System.Text;

namespace Kvasir.Cli.Bench;

/// <summary>
/// Runs one benchmark: <see cref="BenchSettings.Inflight"/> lanes, each with its own target, each
/// keeping one batch request outstanding. Latency is per request; throughput counts only values
/// that arrived whole and verified (GET) or were stored (PUT). Every GET value is checked (sampled by
/// default, every byte with <see cref="VerifyMode.Full"/>) unless verification is off, and a failed
/// check is counted, never ignored.
/// </summary>
public sealed class BenchRunner(string targetName, Func<Task<IBenchTarget>> openTarget, BenchSettings settings)
{
    private long _requests, _values, _goodBytes, _errors, _misses, _verifyFailures;

    /// <summary>Payload bytes moved so far (for a progress display); safe to read from any thread.</summary>
    public long GoodBytes => Interlocked.Read(ref _goodBytes);

    public static ReadOnlyMemory<byte>[] KeysFor(BenchSettings s) =>
        Enumerable.Range(0, s.Keys).Select(i => (ReadOnlyMemory<byte>)Encoding.ASCII.GetBytes($"bench:{s.ValueSize}:{i}")).ToArray();

    public async Task<BenchResult> RunAsync(CancellationToken ct = default)
    {
        var s = settings;
        var keys = KeysFor(s);
        // Each key has its own value (memory: keys × value size), so a value served under the wrong key is caught.
        var values = Enumerable.Range(0, s.Keys).Select(k => (ReadOnlyMemory<byte>)ValuePattern.Create(k, s.ValueSize)).ToArray();
        if (s.Prefill && s.Op != "put") await PrefillAsync(keys, values);

        var lanes = new IBenchTarget[s.Inflight];
        for (int i = 0; i < lanes.Length; i++) lanes[i] = await openTarget();
        string transport = lanes[0].Transport;
        var latencies = new List<long>[s.Inflight];
        long start = Stopwatch.GetTimestamp();
        long measureFrom = start + (long)(s.Warmup.TotalSeconds * Stopwatch.Frequency);
        long end = s.Requests is null ? measureFrom + (long)(s.Duration.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        long next = 0, issued = 0, finished;
        ProcessCost cost;
        // The client's own cost over the measured time: taken by the first lane past the warm-up, and after the last reply.
        int costTaken = 0;
        var costFrom = ProcessCost.Now();
        try
        {
            await Task.WhenAll(Enumerable.Range(0, s.Inflight).Select(lane => Task.Run(async () =>
            {
                var target = lanes[lane];
                var lat = latencies[lane] = new List<long>(1 << 14);
                var rng = new Random(lane);
                var dests = Enumerable.Range(0, s.Batch).Select(_ => (Memory<byte>)new byte[s.ValueSize]).ToArray();
                var batchKeys = new ReadOnlyMemory<byte>[s.Batch];
                var batchValues = new ReadOnlyMemory<byte>[s.Batch];
                var indices = new int[s.Batch];
                var lengths = new long[s.Batch];
                var present = new int[s.Batch];
                while (!ct.IsCancellationRequested && Stopwatch.GetTimestamp() < end)
                {
                    bool measured = Stopwatch.GetTimestamp() >= measureFrom;
                    if (measured && Volatile.Read(ref costTaken) == 0 && Interlocked.Exchange(ref costTaken, 1) == 0) costFrom = ProcessCost.Now();
                    if (s.Requests is { } limit && measured && Interlocked.Increment(ref issued) > limit) break;
                    for (int j = 0; j < s.Batch; j++)
                    {
                        int k = (int)((ulong)Interlocked.Increment(ref next) % (ulong)s.Keys);
                        indices[j] = k;
                        batchKeys[j] = keys[k];
                        batchValues[j] = values[k];
                    }
                    string op = s.Op == "mixed" ? (rng.NextDouble() < s.ReadRatio ? "get" : "put") : s.Op;
                    long t0 = Stopwatch.GetTimestamp();
                    long errors = 0, misses = 0, bad = 0, good = 0;
                    switch (op)
                    {
                        case "put":
                            errors = await target.PutAsync(batchKeys, batchValues);
                            good = (s.Batch - errors) * (long)s.ValueSize;
                            break;
                        case "get":
                            await target.GetAsync(batchKeys, dests, lengths);
                            for (int j = 0; j < s.Batch; j++)
                            {
                                if (lengths[j] == IBenchTarget.Miss) misses++;
                                else if (lengths[j] < 0) errors++;
                                else if (!ValuePattern.Check(s.Verify, dests[j].Span, lengths[j], indices[j], values[indices[j]].Span)) bad++;
                                else good += lengths[j];
                            }
                            break;
                        default:
                            await target.ExistsAsync(batchKeys, present);
                            foreach (var p in present) { if (p == 0) misses++; else if (p < 0) errors++; }
                            break;
                    }
                    long t1 = Stopwatch.GetTimestamp();
                    if (!measured) continue;
                    lat.Add(t1 - t0);
                    Interlocked.Increment(ref _requests);
                    Interlocked.Add(ref _values, s.Batch);
                    Interlocked.Add(ref _goodBytes, good);
                    Interlocked.Add(ref _errors, errors);
                    Interlocked.Add(ref _misses, misses);
                    Interlocked.Add(ref _verifyFailures, bad);
                }
            })));
            finished = Stopwatch.GetTimestamp();
            cost = ProcessCost.Now() - costFrom;
        }
        finally
        {
            foreach (var lane in lanes) await lane.DisposeAsync();
        }
        // Measured time runs from the end of the warm-up to the last lane's last reply, tail included.
        double seconds = Math.Max(1e-9, (finished - measureFrom) / (double)Stopwatch.Frequency);
        var all = latencies.Where(l => l is not null).SelectMany(l => l).ToArray();
        Array.Sort(all);
        double Us(double q) => LatencyStats.Percentile(all, q) * 1e6 / Stopwatch.Frequency;
        return new BenchResult(targetName, transport, s.Op, s.ValueSize, s.Batch, s.Inflight, seconds, _requests, _values,
            _goodBytes / seconds / 1e9, _values / seconds, Us(0.50), Us(0.90), Us(0.99), Us(0.999), _errors, _misses, _verifyFailures)
        { ClientCost = cost };
    }

    private async Task PrefillAsync(ReadOnlyMemory<byte>[] keys, ReadOnlyMemory<byte>[] values)
    {
        await using var target = await openTarget();
        int step = Math.Max(1, Math.Min(settings.Batch, (int)Math.Max(1, (64L << 20) / Math.Max(1, settings.ValueSize))));
        for (int i = 0; i < keys.Length; i += step)
        {
            int n = Math.Min(step, keys.Length - i);
            int failed = await target.PutAsync(keys[i..(i + n)], values[i..(i + n)]);
            if (failed > 0) throw new InvalidOperationException($"pre-fill failed for {failed} of {n} keys at key {i} on {targetName}");
        }
    }
}
