using Kvasir.Protocol.Stats;

namespace Kvasir.Prefix;

/// <summary>
/// Records block accesses (hit or miss, where a hit was served, bytes, tokens) and writes them as an
/// access-statistics file, schema v1 (<see cref="AccessStatsFile"/>, docs/engine-side.md), the same file the
/// Python collector and the node write. Keeps at most <see cref="MaxEvents"/> accesses; later ones are counted
/// as dropped (and left out of the summary). Thread-safe.
/// </summary>
public sealed class AccessStatsCollector
{
    private readonly object _lock = new();
    private readonly List<(double UnixMs, string Block, bool Hit, string? Tier, long? Bytes, long? Tokens)> _accesses = [];
    private readonly double _startUnixMs;
    private readonly TimeProvider _clock;
    private long _dropped;

    /// <summary>
    /// A collector keeping at most <paramref name="maxEvents"/> accesses (default 1,000,000, about 100 bytes each;
    /// at least 1), named <paramref name="source"/> in files (default "dotnet"). <paramref name="clock"/> supplies
    /// times for accesses recorded without one (default the system clock).
    /// </summary>
    public AccessStatsCollector(int maxEvents = 1_000_000, string source = "dotnet", TimeProvider? clock = null)
    {
        if (maxEvents < 1)
            throw new ConfigInvalidException($"max events must be at least 1, not {maxEvents}", new Dictionary<string, object?> { ["max_events"] = maxEvents });
        MaxEvents = maxEvents;
        Source = source;
        _clock = clock ?? TimeProvider.System;
        _startUnixMs = UnixMs(_clock.GetUtcNow());
    }

    /// <summary>Accesses kept at most.</summary>
    public int MaxEvents { get; }

    /// <summary>The file's "source".</summary>
    public string Source { get; }

    /// <summary>Accesses kept now.</summary>
    public int Count { get { lock (_lock) return _accesses.Count; } }

    /// <summary>Accesses not kept because <see cref="MaxEvents"/> was reached.</summary>
    public long Dropped { get { lock (_lock) return _dropped; } }

    /// <summary>
    /// Records one access of <paramref name="blockId"/>. <paramref name="time"/> defaults to now;
    /// <paramref name="tier"/> ("engine", "dram", "disk", "shared") says where a hit was served (null for a miss or
    /// unknown); <paramref name="bytes"/> and <paramref name="tokens"/> when known.
    /// </summary>
    public void RecordAccess(string blockId, bool isHit, DateTimeOffset? time = null, string? tier = null, long? bytes = null, long? tokens = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(blockId);
        if (tier is not null and not ("engine" or "dram" or "disk" or "shared"))
            throw new ArgumentOutOfRangeException(nameof(tier), tier, "tier must be engine, dram, disk, shared or null (schema v1), as Python's record_access says");
        double at = UnixMs(time ?? _clock.GetUtcNow());
        lock (_lock)
        {
            if (_accesses.Count >= MaxEvents)
            {
                _dropped++;
                return;
            }
            _accesses.Add((at, blockId, isHit, tier, bytes, tokens));
        }
    }

    /// <summary>The summary of the accesses kept so far (time order).</summary>
    public AccessStatsSummary GetStatsSummary() => Snapshot().Summary;

    /// <summary>The accesses kept so far as a file's content, without writing it.</summary>
    public AccessStatsFile Snapshot()
    {
        lock (_lock)
        {
            var ordered = _accesses.Select((a, i) => (a, i)).OrderBy(x => x.a.UnixMs).ThenBy(x => x.i).Select(x => x.a).ToArray();
            long start = (long)Math.Floor(Math.Min(_startUnixMs, ordered.Length > 0 ? ordered[0].UnixMs : _startUnixMs));
            long end = (long)Math.Ceiling(Math.Max(start, ordered.Length > 0 ? ordered[^1].UnixMs : start));
            var records = ordered.Select(a => new AccessRecord(a.UnixMs - start, a.Block, a.Hit, a.Tier, a.Bytes, a.Tokens)).ToArray();
            return new AccessStatsFile(Source, start, end, _dropped, records, AccessStatsSummary.Compute(records));
        }
    }

    /// <summary>Writes the accesses kept so far to <paramref name="path"/> (replacing it) in schema v1.</summary>
    public void ExportStats(string path) => Snapshot().Write(path);

    private static double UnixMs(DateTimeOffset time) => (time - DateTimeOffset.UnixEpoch).TotalMilliseconds;
}
