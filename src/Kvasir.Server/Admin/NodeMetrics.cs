using System.Diagnostics;
using System.Diagnostics.Metrics;
using Kvasir.Protocol;

namespace Kvasir.Server.Admin;

/// <summary>
/// The node's instruments, on a <see cref="Meter"/> named "Kvasir.Node" (any System.Diagnostics.Metrics
/// listener — OpenTelemetry, dotnet-counters, or <see cref="PrometheusExporter"/> — can read them).
/// Recording costs an Add/Record with a cached tag array: no lock and no allocation per request.
/// </summary>
public sealed class NodeMetrics : IDisposable
{
    public const string MeterName = "Kvasir.Node";

    private readonly Counter<long> _requests;
    private readonly Counter<long> _keys;
    private readonly Histogram<double> _duration;
    private readonly KeyValuePair<string, object?>[][] _opTags = new KeyValuePair<string, object?>[256][];
    private readonly KeyValuePair<string, object?>[]?[] _statusTags = new KeyValuePair<string, object?>[]?[256 * 64];

    /// <summary>How long one STATS snapshot serves the observable instruments: well within one scrape.</summary>
    private const long SnapshotMillis = 100;

    private readonly Lock _snapshotLock = new();
    private Dictionary<string, long>? _snapshot;
    private long _snapshotAt;

    public NodeMetrics(CacheNode node)
    {
        Meter = new Meter(MeterName, typeof(NodeMetrics).Assembly.GetName().Version?.ToString(3));
        _requests = Meter.CreateCounter<long>("kvasir_requests", "{request}", "Requests served, by opcode and frame status");
        _keys = Meter.CreateCounter<long>("kvasir_keys", "{key}", "Keys in requests, by opcode");
        _duration = Meter.CreateHistogram<double>("kvasir_request_duration", "s",
            "Time from a request's header to its reply being queued (PUT includes receiving the values), by opcode and frame status");
        foreach (var op in Enum.GetValues<Opcode>())
            _opTags[(byte)op] = [new("op", op.ToString().ToLowerInvariant())];

        Meter.CreateObservableCounter("kvasir_received", () => node.Counters.BytesIn, "By", "Frame bytes received");
        Meter.CreateObservableCounter("kvasir_sent", () => node.Counters.BytesOut, "By", "Frame bytes sent");
        Meter.CreateObservableCounter("kvasir_op_received", () => ByOp(node.Counters.BytesInOf), "By", "Frame bytes received, by the opcode of the request");
        Meter.CreateObservableCounter("kvasir_op_sent", () => ByOp(node.Counters.BytesOutOf), "By", "Frame bytes sent, by the opcode of the request answered");
        Meter.CreateObservableGauge("kvasir_connections", () => node.Counters.Connections, "{connection}", "Open connections");
        Meter.CreateObservableCounter("kvasir_connections_accepted", () => node.Counters.ConnectionsTotal, "{connection}", "Connections accepted");
        Meter.CreateObservableGauge("kvasir_connection_requests_in_flight_peak", () => node.Counters.RequestsInFlightPeak, "{request}",
            "Since start, the most requests one connection had received whose replies had not started to be sent (above 1: the client pipelines)");
        Meter.CreateObservableCounter("kvasir_protocol_errors", () => node.Counters.ProtocolErrors, "{connection}", "Connections closed with a frame-level error");
        Meter.CreateObservableGauge("kvasir_tier_capacity", () => PerTier(node, "capacity_bytes", "disk_capacity_bytes", "shared_capacity_bytes"), "By",
            "Capacity per tier (shared: the size of the filesystem the shared tier is on)");
        Meter.CreateObservableGauge("kvasir_tier_used", () => PerTier(node, "allocated_bytes", "disk_bytes", "shared_bytes"), "By",
            "Bytes in use per tier (shared: the files of every node under the shared path, as of the last walk)");
        Meter.CreateObservableGauge("kvasir_tier_keys", () => PerTier(node, "keys", "disk_keys", "shared_keys"), "{key}",
            "Keys per tier (shared: files under the shared path, as of the last walk)");
        Meter.CreateObservableCounter("kvasir_evictions", () => Stat(node, "evictions"), "{value}", "Values evicted from DRAM");
        Meter.CreateObservableCounter("kvasir_evicted", () => Stat(node, "evicted_bytes"), "By", "Bytes evicted from DRAM");
        Meter.CreateObservableGauge("kvasir_leases", () => Stat(node, "leases"), "{lease}", "Values being read now");
        Meter.CreateObservableGauge("kvasir_pinned_keys", () => Stat(node, "pinned_keys"), "{key}", "Pinned keys");
        Meter.CreateObservableCounter("kvasir_hits", () => Served(node).Hits, "{key}", "GET keys served, from any tier (DRAM, disk or shared FS)");
        Meter.CreateObservableCounter("kvasir_misses", () => Served(node).Misses, "{key}", "GET keys no tier had");
        Meter.CreateObservableCounter("kvasir_tier_hits", () => PerTier(node, "hits", "tier_served_disk", "tier_served_shared"), "{key}",
            "GET keys served from this tier (a disk or shared-FS hit was a DRAM miss first)");
        Meter.CreateObservableCounter("kvasir_tier_misses", () => PerTier(node, "misses", "disk_misses", "shared_misses"), "{key}",
            "Lookups this tier did not have (the next tier below is asked)");
        Meter.CreateObservableCounter("kvasir_tier_errors", () => TierErrors(node), "{error}",
            "Tier I/O failures by tier and kind: read, write, corrupt (a CRC or length mismatch: the copy is dropped), put_refused (a PUT answered TIER_FAILED)");
        Meter.CreateObservableCounter("kvasir_tier_dropped", () => TierDrops(node), "{value}",
            "Values a tier let go of without a copy below: DRAM evictions of values no lower tier holds, disk values dropped to make room, shared-FS writes dropped from a full queue");
        Meter.CreateObservableCounter("kvasir_value_received", () => ByTransport(node.Counters.ValueBytesIn), "By", "Value bytes stored, by opcode and transport (tcp, shm, inprocess)");
        Meter.CreateObservableCounter("kvasir_value_sent", () => ByTransport(node.Counters.ValueBytesOut), "By", "Value bytes served, by opcode and transport (tcp, shm, inprocess)");
        var build = new KeyValuePair<string, object?>[]
        {
            new("version", BuildInfo.Version), new("runtime", System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription),
        };
        Meter.CreateObservableGauge("kvasir_build_info", () => new Measurement<long>(1, build), "", "Always 1; the labels name the build (version with source revision) and the .NET runtime");
        Meter.CreateObservableCounter("kvasir_tier_promotions", () => Stat(node, "tier_promotions"), "{value}", "Values promoted from a lower tier into DRAM");
        Meter.CreateObservableGauge("kvasir_degraded", () => node.Problems().Count > 0 ? 1L : 0L, "", "1 when a tier or the cluster registration is failing");
        Meter.CreateObservableGauge("kvasir_uptime_seconds", () => (DateTimeOffset.UtcNow - node.StartedAt).TotalSeconds, "s", "Seconds since the node started");
    }

    public Meter Meter { get; }

    /// <summary>One request finished: its opcode, frame status, key count and duration (Stopwatch ticks).</summary>
    public void Request(Opcode op, WireStatus status, int keys, long elapsedTicks)
    {
        var tags = Tags(op, status);
        _requests.Add(1, tags);
        if (keys > 0) _keys.Add(keys, _opTags[(byte)op]);
        _duration.Record((double)elapsedTicks / Stopwatch.Frequency, tags);
    }

    /// <summary>Cached per (opcode, status); two threads may build the same array once, harmlessly.</summary>
    private ReadOnlySpan<KeyValuePair<string, object?>> Tags(Opcode op, WireStatus status)
    {
        int i = (byte)op * 64 + Math.Min((int)status, 63);
        var tags = Volatile.Read(ref _statusTags[i]);
        if (tags is null)
        {
            var name = StatusName(status);
            tags = [new("op", op.ToString().ToLowerInvariant()), new("status", name)];
            Volatile.Write(ref _statusTags[i], tags);
        }
        return tags;
    }

    /// <summary>A frame status as metrics and the access log spell it: <c>ok</c>, <c>bad_frame</c>, <c>auth_failed</c>, ….</summary>
    public static string StatusName(WireStatus status) => status == WireStatus.Ok ? "ok" : ToSnake(status.ToString());

    private static string ToSnake(string name)
        => string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    private static IEnumerable<Measurement<long>> ByOp(Func<Opcode, long> bytes)
    {
        foreach (var op in Enum.GetValues<Opcode>())
            yield return new Measurement<long>(bytes(op), new KeyValuePair<string, object?>("op", op.ToString().ToLowerInvariant()));
    }

    /// <summary>
    /// One STATS snapshot serves every observable instrument of a scrape (it was taken once per
    /// instrument: a dozen passes under the store's lock, contending with the data path, per scrape).
    /// </summary>
    private Dictionary<string, long> Stats(CacheNode node)
    {
        lock (_snapshotLock)
        {
            long now = Environment.TickCount64;
            if (_snapshot is null || now - _snapshotAt > SnapshotMillis)
            {
                var stats = new Dictionary<string, long>(StringComparer.Ordinal);
                foreach (var (k, v) in node.StatsSnapshot()) stats[k] = v;
                (_snapshot, _snapshotAt) = (stats, now);
            }
            return _snapshot;
        }
    }

    private long Stat(CacheNode node, string name) => Stats(node).GetValueOrDefault(name);

    /// <summary>GET keys served from any tier and missed by every tier, from one snapshot.</summary>
    private (long Hits, long Misses) Served(CacheNode node)
    {
        var counts = HitCounts.From(Stats(node));
        return (counts.Served, counts.Missed);
    }

    private IEnumerable<Measurement<long>> PerTier(CacheNode node, string dram, string disk, string shared)
    {
        var stats = Stats(node);
        yield return Tier(stats.GetValueOrDefault(dram), "dram");
        if (node.Store.HasDisk) yield return Tier(stats.GetValueOrDefault(disk), "disk");
        if (node.Store.HasSharedFs) yield return Tier(stats.GetValueOrDefault(shared), "shared");
    }

    private static Measurement<long> Tier(long value, string tier, string? kind = null)
        => kind is null ? new(value, new KeyValuePair<string, object?>("tier", tier))
            : new(value, new KeyValuePair<string, object?>("tier", tier), new KeyValuePair<string, object?>("kind", kind));

    private IEnumerable<Measurement<long>> TierErrors(CacheNode node)
    {
        var stats = Stats(node);
        foreach (var (tier, prefix, present) in new[] { ("disk", "disk", node.Store.HasDisk), ("shared", "shared", node.Store.HasSharedFs) })
        {
            if (!present) continue;
            foreach (var kind in new[] { "read", "write" })
                yield return Tier(stats.GetValueOrDefault($"{prefix}_{kind}_errors"), tier, kind);
            yield return Tier(stats.GetValueOrDefault($"{prefix}_corrupt"), tier, "corrupt");
        }
        if (node.Store.HasDisk) yield return Tier(stats.GetValueOrDefault("tier_write_failures"), "disk", "put_refused");
    }

    private IEnumerable<Measurement<long>> TierDrops(CacheNode node)
    {
        var stats = Stats(node);
        bool below = node.Store.HasDisk || node.Store.HasSharedFs;
        yield return Tier(stats.GetValueOrDefault(below ? "tier_evicted_unsaved" : "evictions"), "dram");
        if (node.Store.HasDisk) yield return Tier(stats.GetValueOrDefault("disk_dropped_keys"), "disk");
        if (node.Store.HasSharedFs) yield return Tier(stats.GetValueOrDefault("shared_dropped"), "shared");
    }

    private static IEnumerable<Measurement<long>> ByTransport(Func<NodeTransport, Opcode, long> bytes)
    {
        foreach (var transport in Enum.GetValues<NodeTransport>())
            foreach (var op in ValueOps[transport])
                yield return new Measurement<long>(bytes(transport, op),
                    new KeyValuePair<string, object?>("op", op.ToString().ToLowerInvariant()),
                    new KeyValuePair<string, object?>("transport", transport.ToString().ToLowerInvariant()));
    }

    /// <summary>The opcodes that carry values on each transport.</summary>
    private static readonly Dictionary<NodeTransport, Opcode[]> ValueOps = new()
    {
        [NodeTransport.Tcp] = [Opcode.Put, Opcode.Get],
        [NodeTransport.Shm] = [Opcode.Commit, Opcode.Lease],
        [NodeTransport.InProcess] = [Opcode.Put, Opcode.Get],
    };

    public void Dispose() => Meter.Dispose();
}
