using System.Text.Json.Nodes;
using Kvasir.Protocol;

namespace Kvasir.Server.Admin;

/// <summary>
/// The JSON documents of /v1/health and /v1/status, built from a node's counters as <see cref="JsonObject"/> trees
/// (written without reflection, so the native AOT build serves them too; docs/deploy.md).
/// </summary>
internal static class AdminReports
{
    public static JsonObject Health(CacheNode node, IReadOnlyList<(string Component, string Reason)> problems)
    {
        var components = new JsonObject { ["arena"] = Component("arena", problems) };
        if (node.Store.HasDisk) components["disk"] = Component("disk", problems);
        if (node.Store.HasSharedFs) components["shared-fs"] = Component("shared-fs", problems);
        if (node.Options.Cluster is not null) components["redis"] = Component("redis", problems);
        if (problems.Any(p => p.Component == "node_id")) components["node_id"] = Component("node_id", problems);   // another live node holds this id
        return new JsonObject { ["status"] = problems.Count == 0 ? "healthy" : "degraded", ["components"] = components };
    }

    private static JsonObject Component(string name, IReadOnlyList<(string Component, string Reason)> problems)
        => problems.FirstOrDefault(p => p.Component == name) is { Reason: { } reason } ? new JsonObject { ["status"] = "degraded", ["reason"] = reason } : new JsonObject { ["status"] = "ok" };

    public static JsonObject Status(CacheNode node)
    {
        var s = node.StatsSnapshot().ToDictionary(p => p.Key, p => p.Value);
        long Get(string name) => s.GetValueOrDefault(name);
        var hits = HitCounts.From(s);
        var tiers = new JsonObject
        {
            ["dram"] = new JsonObject
            {
                ["capacity_bytes"] = Get("capacity_bytes"),
                ["used_bytes"] = Get("allocated_bytes"),
                ["live_bytes"] = Get("live_bytes"),
                ["keys"] = Get("keys"),
                ["hits"] = Get("hits"),
                ["misses"] = Get("misses"),
                ["dropped"] = Get(node.Store.HasDisk || node.Store.HasSharedFs ? "tier_evicted_unsaved" : "evictions"),
            },
        };
        if (node.Store.HasDisk)
        {
            tiers["disk"] = new JsonObject
            {
                ["capacity_bytes"] = Get("disk_capacity_bytes"),
                ["used_bytes"] = Get("disk_bytes"),
                ["keys"] = Get("disk_keys"),
                ["hits"] = Get("tier_served_disk"),
                ["misses"] = Get("disk_misses"),
                ["dropped"] = Get("disk_dropped_keys"),
                ["errors"] = Get("disk_read_errors") + Get("disk_write_errors") + Get("disk_corrupt"),
            };
        }
        if (node.Store.HasSharedFs)
        {
            tiers["shared_fs"] = new JsonObject
            {
                ["capacity_bytes"] = Get("shared_capacity_bytes"),
                ["used_bytes"] = Get("shared_bytes"),
                ["keys"] = Get("shared_keys"),
                ["hits"] = Get("tier_served_shared"),
                ["misses"] = Get("shared_misses"),
                ["writes"] = Get("shared_writes"),
                ["pending"] = Get("shared_pending"),
                ["dropped"] = Get("shared_dropped"),
                ["errors"] = Get("shared_read_errors") + Get("shared_write_errors") + Get("shared_corrupt"),
            };
        }
        var ops = new JsonObject();
        foreach (var op in Enum.GetValues<Opcode>())
            ops[op.ToString().ToLowerInvariant()] = new JsonObject
            {
                ["requests"] = node.Counters.Requests(op),
                ["keys"] = node.Counters.Keys(op),
                ["bytes_in"] = node.Counters.BytesInOf(op),
                ["bytes_out"] = node.Counters.BytesOutOf(op),
            };
        return new JsonObject
        {
            ["node_id"] = node.NodeId,
            ["version"] = typeof(CacheNode).Assembly.GetName().Version?.ToString(3),
            ["build"] = BuildInfo.Version,
            ["uptime_seconds"] = (DateTimeOffset.UtcNow - node.StartedAt).TotalSeconds,
            ["healthy"] = node.Problems().Count == 0,
            ["tiers"] = tiers,
            ["keys"] = Get("keys"),
            ["hits"] = hits.Served,
            ["misses"] = hits.Missed,
            ["hit_ratio"] = hits.ServedRatio,
            ["served_hit_ratio"] = hits.ServedRatio,
            ["dram_hit_ratio"] = hits.DramRatio,
            ["evictions"] = Get("evictions"),
            ["evicted_bytes"] = Get("evicted_bytes"),
            ["leases"] = Get("leases"),
            ["pinned_keys"] = Get("pinned_keys"),
            ["connections"] = Get("connections"),
            ["connections_total"] = Get("connections_total"),
            ["bytes_in"] = Get("bytes_in"),
            ["bytes_out"] = Get("bytes_out"),
            ["ops"] = ops,
            ["config"] = Config(node),
            ["stats"] = new JsonObject(s.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
        };
    }

    /// <summary>What the node was started with, for the dashboard's configuration summary (no secrets: auth and TLS are on or off).</summary>
    public static JsonObject Config(CacheNode node)
    {
        var o = node.Options;
        var tiers = o.Tiers;
        return new JsonObject
        {
            ["data_address"] = node.DataAddress,
            ["capacity_bytes"] = o.Store.Capacity,
            ["max_value_bytes"] = o.Store.MaxValueBytes,
            ["max_key_bytes"] = o.Store.MaxKeyBytes,
            ["eviction"] = o.Store.Eviction.ToString().ToLowerInvariant(),
            ["shared_memory"] = o.SharedMemory,
            ["disk_path"] = tiers?.DiskPath,
            ["disk_capacity_bytes"] = tiers?.DiskPath is null ? 0 : tiers.DiskCapacity,
            ["shared_fs_path"] = tiers?.SharedFsPath,
            ["cluster"] = o.Cluster?.Name,
            ["auth"] = o.AuthKey is not null,
            ["tls"] = o.HasTls,
            ["max_connections"] = o.MaxConnections,
        };
    }
}
