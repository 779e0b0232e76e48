using Kvasir.Client;

namespace Kvasir.Cli;

/// <summary>
/// Every verb that talks to a cluster through --redis stops at once, in one line, when the cluster has no node up:
/// which cluster and Redis it looked at, which clusters have nodes there, and the fix (a bare "Unavailable", or a
/// quiet "0 keys", was all it said before). The line is the SDK's <see cref="Kvasir.Cluster.NoNodeReport"/> with the
/// CLI's fix.
/// </summary>
public static class NoNodeCheck
{
    public const string Fix = "give --cluster NAME";

    /// <summary>Throws <see cref="KvasirException"/> (exit 3) when <paramref name="store"/>'s cluster has no node up.</summary>
    public static async Task RequireNodeAsync(KvStore store)
    {
        if (await store.NoNodeReportAsync() is { } report) throw new KvasirException(report.Message(Fix));
    }
}
