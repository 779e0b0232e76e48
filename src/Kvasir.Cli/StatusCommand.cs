using System.Globalization;
using System.Text.Json.Nodes;
using Kvasir.Client;
using Kvasir.Cluster;
using Kvasir.Protocol;

namespace Kvasir.Cli;

/// <summary><c>kvasir status</c>: one row per node of a cluster (or of one node), from the registry and each node's STATS.</summary>
public static class StatusCommand
{
    public const string Help = """
        kvasir status --redis URL [--redis-ca PEM] [--cluster NAME] [--auth-key-file PATH] [--json]   the cluster's nodes, one row each
        kvasir status [--server HOST:PORT] [--auth-key-file PATH] [--json]            one node
          Columns: id, address, kind, state (up | unreachable: registered but not answering |
          down: heartbeat lost, listed for an hour), capacity, used, keys, hit ratio, version, uptime.
          Exit 0 when every listed node is up, 1 otherwise. TLS nodes: --tls-ca, --tls-server-name, --tls-cert/--tls-key
          as for kvasir get (see kvasir get --help).
        """;

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ["server", "auth-key", "auth-key-file", "redis", "redis-ca", "cluster", "timeout", .. ClientCommands.TlsOptionNames], ["json"]);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        var timeout = TimeSpan.FromSeconds(cl.Int("timeout", 5, 1));
        var options = ClientCommands.StoreOptions(cl, "kvasir-status", 1, timeout);
        var rows = new List<Row>();
        if (options.RedisUrl is { } url)
        {
            IReadOnlyList<MemberStatus> members;
            try
            {
                await using var registry = await RedisClusterRegistry.ConnectAsync(RedisUrl.Parse(url, options.RedisCaFile), options.Cluster, timeout);
                members = await registry.ListAllAsync();
                if (members.Count == 0)
                {
                    // the usual cause is a wrong or forgotten --cluster: say what this Redis does hold
                    var report = await NoNodeReport.ReadAsync(registry, RedisUrl.Redact(url));
                    Console.Error.WriteLine($"kvasir status: {report.Message(NoNodeCheck.Fix)}");
                    return 1;
                }
            }
            catch (ClusterRegistryException ex) { throw new KvasirException($"cannot read cluster '{options.Cluster}' from {RedisUrl.Redact(url)}: {ex.Message}"); }
            rows.AddRange(await Task.WhenAll(members.Select(m => m.Live
                ? ProbeAsync(m.Record, options)
                : Task.FromResult(new Row(m.Record, "down", null, $"since {DateTimeOffset.FromUnixTimeMilliseconds(m.SinceMs).ToLocalTime():HH:mm:ss}")))));
        }
        else
        {
            rows.Add(await ProbeAsync(new NodeRecord { Id = options.Server, Address = options.Server }, options));
        }
        if (cl.Has("json")) PrintJson(rows);
        else PrintTable(rows, options.RedisUrl is null ? null : options.Cluster);
        return rows.All(r => r.State == "up") ? 0 : 1;
    }

    private sealed record Row(NodeRecord Node, string State, IReadOnlyDictionary<string, long>? Stats, string? Note);

    private static async Task<Row> ProbeAsync(NodeRecord node, KvStoreOptions options)
    {
        try
        {
            await using var store = await KvStore.ConnectAsync(new KvStoreOptions
            {
                Server = node.Address,
                AuthKey = options.AuthKey,
                Tls = options.Tls,
                ConnectTimeout = options.RequestTimeout,
                RequestTimeout = options.RequestTimeout,
                ConnectionsPerNode = 1,
                ClientName = "kvasir-status",
                Transport = KvTransportKind.Tcp,   // counters only: no arena to map
            });
            return new Row(node, "up", await store.StatsAsync(), null);
        }
        catch (KvasirException ex)
        {
            return new Row(node, "unreachable", null, ex.Message);
        }
    }

    private static void PrintTable(List<Row> rows, string? cluster)
    {
        if (cluster is not null) Console.WriteLine($"cluster {cluster}: {rows.Count(r => r.State == "up")} up, {rows.Count(r => r.State != "up")} not up");
        var table = new List<string[]> { new[] { "ID", "ADDRESS", "KIND", "STATE", "CAPACITY", "USED", "KEYS", "SERVED%", "DRAM%", "VERSION", "UPTIME" } };
        foreach (var r in rows)
        {
            var s = r.Stats;
            long Get(string name) => s is not null && s.TryGetValue(name, out var v) ? v : 0;
            var hits = s is null ? default : HitCounts.From(s);
            table.Add([
                r.Node.Id, r.Node.Address, r.Node.Kind, r.State + (r.Note is null ? "" : $" ({r.Note})"),
                ByteSize.Format(s is null ? r.Node.Capacity : Get("capacity_bytes")),
                s is null ? "-" : ByteSize.Format(Get("allocated_bytes")),
                s is null ? "-" : Get("keys").ToString(CultureInfo.InvariantCulture),
                hits.Lookups == 0 ? "-" : (100.0 * hits.ServedRatio).ToString("F1", CultureInfo.InvariantCulture),
                hits.Lookups == 0 ? "-" : (100.0 * hits.DramRatio).ToString("F1", CultureInfo.InvariantCulture),
                r.Node.Version.Length == 0 ? "-" : r.Node.Version,
                s is null ? "-" : TimeSpan.FromMilliseconds(Get("uptime_ms")).ToString(@"d\.hh\:mm\:ss", CultureInfo.InvariantCulture),
            ]);
        }
        var widths = Enumerable.Range(0, table[0].Length).Select(c => table.Max(row => row[c].Length)).ToArray();
        foreach (var row in table) Console.WriteLine(string.Join("  ", row.Select((cell, c) => cell.PadRight(widths[c]))).TrimEnd());
    }

    private static void PrintJson(List<Row> rows)
    {
        var nodes = new JsonArray([.. rows.Select(r => new JsonObject
        {
            ["id"] = r.Node.Id,
            ["addr"] = r.Node.Address,
            ["kind"] = r.Node.Kind,
            ["state"] = r.State,
            ["note"] = r.Note,
            ["version"] = r.Node.Version,
            ["served_hit_ratio"] = r.Stats is null ? null : HitCounts.From(r.Stats).ServedRatio,
            ["dram_hit_ratio"] = r.Stats is null ? null : HitCounts.From(r.Stats).DramRatio,
            ["stats"] = r.Stats is null ? null : new JsonObject(r.Stats.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
        })]);
        Console.WriteLine(nodes.ToJsonString());
    }
}
