using System.Text.Json.Nodes;
using Kvasir.Cluster;

namespace Kvasir.Server.Admin;

/// <summary>
/// /v1/cluster: the members of the node's cluster as this node sees them (read through its own registry
/// connection), each with its data and admin address, for the dashboard's member list and links.
/// </summary>
internal static class ClusterView
{
    public static async Task<JsonObject> ReadAsync(CacheNode node)
    {
        var self = Member(node.NodeId, node.DataAddress, node.AdminAddress, live: true, sinceMs: 0, self: true);
        if (node.Options.Cluster is not { } cluster) return View(null, null, [self]);
        if (node.Registration is not { } registration) return View(cluster.Name, "not registered yet (Redis not reached)", [self]);
        try
        {
            var all = await registration.Registry.ListAllAsync().ConfigureAwait(false);
            var members = all.OrderBy(m => m.Record.Id, StringComparer.Ordinal)
                .Select(m => Member(m.Record.Id, m.Record.Address, m.Record.AdminAddress, m.Live, m.SinceMs, m.Record.Id == node.NodeId))
                .ToArray();
            return View(cluster.Name, null, members);
        }
        catch (ClusterRegistryException ex)
        {
            return View(cluster.Name, ex.Message, [self]);
        }
    }

    private static JsonObject View(string? cluster, string? error, JsonNode[] members)
        => new() { ["cluster"] = cluster, ["error"] = error, ["members"] = new JsonArray(members) };

    private static JsonObject Member(string id, string addr, string? admin, bool live, long sinceMs, bool self) => new()
    {
        ["id"] = id,
        ["addr"] = addr,
        ["admin"] = admin,
        ["live"] = live,
        ["since_ms"] = sinceMs,
        ["self"] = self,
    };
}
