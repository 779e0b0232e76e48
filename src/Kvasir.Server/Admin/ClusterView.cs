using Kvasir.Cluster;

namespace Kvasir.Server.Admin;

/// <summary>
/// /v1/cluster: the members of the node's cluster as this node sees them (read through its own registry
/// connection), each with its data and admin address, for the dashboard's member list and links.
/// </summary>
internal static class ClusterView
{
    public static async Task<object> ReadAsync(CacheNode node)
    {
        var self = new { id = node.NodeId, addr = node.DataAddress, admin = node.AdminAddress, live = true, since_ms = 0L, self = true };
        if (node.Options.Cluster is not { } cluster) return new { cluster = (string?)null, error = (string?)null, members = new[] { self } };
        if (node.Registration is not { } registration)
            return new { cluster = (string?)cluster.Name, error = (string?)"not registered yet (Redis not reached)", members = new[] { self } };
        try
        {
            var all = await registration.Registry.ListAllAsync().ConfigureAwait(false);
            var members = all.OrderBy(m => m.Record.Id, StringComparer.Ordinal)
                .Select(m => new { id = m.Record.Id, addr = m.Record.Address, admin = m.Record.AdminAddress, live = m.Live, since_ms = m.SinceMs, self = m.Record.Id == node.NodeId })
                .ToArray();
            return new { cluster = (string?)cluster.Name, error = (string?)null, members };
        }
        catch (ClusterRegistryException ex)
        {
            return new { cluster = (string?)cluster.Name, error = (string?)ex.Message, members = new[] { self } };
        }
    }
}
