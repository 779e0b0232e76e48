namespace Kvasir.Cluster;

/// <summary>
/// What a client says when its cluster name finds no node up: the cluster and the Redis (password redacted) it
/// looked at, and the clusters that have nodes registered in that Redis — the usual cause is a wrong or forgotten
/// cluster name (issue 19 item 3). Built by <see cref="ReadAsync"/>; <see cref="Message"/> makes the one line, with
/// the fix the caller names (<c>give --cluster NAME</c> for the CLI, <c>set KvStoreOptions.Cluster</c> for the SDK).
/// The Python client says the same line (python/kvasir/_membership.py).
/// </summary>
/// <param name="Cluster">The cluster name the client looked for.</param>
/// <param name="Redis">The registry URL, redacted (<see cref="RedisUrl.Redact"/>).</param>
/// <param name="OtherClusters">Other clusters with node records there, sorted; null when they could not be listed.</param>
/// <param name="HasRecords">Whether this cluster itself has node records (its nodes registered, then went down).</param>
/// <param name="ListError">Why the clusters could not be listed, when they could not.</param>
public sealed record NoNodeReport(string Cluster, string Redis, IReadOnlyList<string>? OtherClusters, bool HasRecords, string? ListError = null)
{
    /// <summary>Reads the cluster names in <paramref name="registry"/>'s Redis; a Redis error is kept in the report, not thrown.</summary>
    public static async Task<NoNodeReport> ReadAsync(RedisClusterRegistry registry, string redactedUrl)
    {
        try
        {
            var names = await registry.ListClusterNamesAsync().ConfigureAwait(false);
            return new NoNodeReport(registry.ClusterName, redactedUrl, [.. names.Where(n => n != registry.ClusterName)], names.Contains(registry.ClusterName));
        }
        catch (ClusterRegistryException ex)
        {
            return new NoNodeReport(registry.ClusterName, redactedUrl, null, false, ex.Message);
        }
    }

    /// <summary>
    /// One line: <c>no node is up in cluster 'C' at REDIS; clusters with nodes there: a, b (FIX)</c>, or that none
    /// has nodes there, or that this cluster's nodes registered but are all down.
    /// </summary>
    public string Message(string fix)
    {
        var head = $"no node is up in cluster '{Cluster}' at {Redis}";
        if (OtherClusters is null) return $"{head} (the clusters there could not be listed: {ListError})";
        var own = HasRecords ? " (its nodes registered there are all down: kvasir status lists them)" : "";
        return OtherClusters.Count == 0
            ? $"{head}{own}; no other cluster has nodes registered there" + (HasRecords ? "" : " (is this the Redis the nodes use?)")
            : $"{head}{own}; clusters with nodes there: {string.Join(", ", OtherClusters)} ({fix})";
    }
}
