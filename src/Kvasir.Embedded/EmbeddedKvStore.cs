using Kvasir.Client;
using Kvasir.Server;
using Microsoft.Extensions.Logging;

namespace Kvasir.Embedded;

/// <summary>
/// <see cref="KvStore"/>s over a cache node in this process: values are copied once between the
/// caller's memory and the node's arena, with no socket in between (transport
/// <see cref="KvTransportKind.InProcess"/>). Same statuses and limits as over the wire.
/// </summary>
public static class EmbeddedKvStore
{
    /// <summary>A store over <paramref name="node"/>, started or not. The caller keeps owning the node: disposing the store leaves it running.</summary>
    public static KvStore InProcess(CacheNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return KvStore.Open(new InProcessNode(node, ownsNode: false));
    }

    /// <summary>
    /// Creates a node inside this process, without a listening socket, and returns a store over it;
    /// disposing the store stops the node and frees its arena. Throws <see cref="ArgumentException"/> for invalid options.
    /// </summary>
    public static KvStore Start(NodeOptions options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return KvStore.Open(new InProcessNode(new CacheNode(options, loggerFactory), ownsNode: true));
    }

    /// <summary>
    /// Starts a node in this process that lends <see cref="EmbeddedNodeOptions.Capacity"/> bytes to the cluster
    /// <paramref name="options"/> name: it listens on <see cref="EmbeddedNodeOptions.DataPlaneAddress"/> for other
    /// clients, registers in the registry (if any) with kind "embedded", and is a member of the returned store's
    /// cluster, which reads and writes the keys placed on it without a socket (docs/cluster.md). Without a registry
    /// the cluster is the server list plus this node; the list may be empty. Disposing the store unregisters and
    /// stops the node. Throws <see cref="KvasirException"/> with the reason (bad options, address in use,
    /// registry unreachable); nothing is left running then.
    /// </summary>
    public static async Task<KvStore> ConnectAsync(KvStoreOptions options, EmbeddedNodeOptions embedded, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(embedded);
        options.Validate(hasMember: true);
        embedded.Validate();
        var node = new CacheNode(embedded.ToNodeOptions(options), options.LoggerFactory);
        try { node.Start(); }
        catch (Exception ex)
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw new KvasirException($"embedded node cannot listen on {embedded.DataPlaneAddress}: {ex.Message}", ex);
        }
        return await KvStore.ConnectAsync(options, new InProcessNode(node, ownsNode: true), ct).ConfigureAwait(false);
    }
}
