using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// A store's way to a node in this process: each key of a batch range is one call on the node's
/// <see cref="IInProcessNode"/>, in order, and the range counts as one request. Values are copied
/// once, by the node, between the caller's memory and its own. Owns the node: disposing the
/// transport disposes it.
/// </summary>
internal sealed class InProcessTransport(IInProcessNode node) : IKvTransport
{
    private int _disposed;

    public NodeLimits Limits { get; } = LimitsOf(node.Info);

    public KvTransportKind Kind => KvTransportKind.InProcess;

    public async Task PutAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, CancellationToken ct)
    {
        for (int i = start; i < end; i++)
        {
            ct.ThrowIfCancellationRequested();
            var link = !chain ? default : i > start ? batch.Keys[i - 1] : hasParent ? parent : default;
            var value = batch.Values[i];
            IReadOnlyList<ReadOnlyMemory<byte>> pieces = value.Many ?? [value.One];
            TimeSpan? ttl = batch.TtlSeconds is { } seconds ? TimeSpan.FromSeconds(seconds) : null;
            // A versioned put (replicas with versions) keeps the writer's version, as a PUT with VERSION does over the wire.
            batch.Results[i] = batch.Versions is { } versions
                ? await node.PutAsync(batch.Keys[i], pieces, link, ttl, versions[i], ct).ConfigureAwait(false)
                : ttl is { } t
                ? await node.PutAsync(batch.Keys[i], pieces, link, t, ct).ConfigureAwait(false)
                : await node.PutAsync(batch.Keys[i], pieces, link, ct).ConfigureAwait(false);
        }
        node.CountRequest(Opcode.Put, end - start);
    }

    public async Task GetAsync(GetBatch batch, int start, int end, CancellationToken ct)
    {
        for (int i = start, prefetched = start; i < end; i++)
        {
            ct.ThrowIfCancellationRequested();
            if (i == prefetched) prefetched = node.PrefetchKeys(batch.Keys, i, end);
            var dest = batch.Destinations[i];
            if (dest.Allocate)
            {
                var (copy, version) = batch.WantVersions ? await node.GetVersionedAsync(batch.Keys[i], ct).ConfigureAwait(false)
                    : (await node.GetAsync(batch.Keys[i], ct).ConfigureAwait(false), 0);
                batch.Allocated[i] = copy;
                batch.Versions[i] = version;
                batch.Results[i] = copy is null ? new KvGetResult(KvStatus.NotFound, 0) : new KvGetResult(KvStatus.Ok, copy.Length);
                continue;
            }
            IReadOnlyList<Memory<byte>> pieces = dest.Many ?? [dest.One];
            if (batch.WantVersions) (batch.Results[i], batch.Versions[i]) = await node.GetVersionedAsync(batch.Keys[i], pieces, ct).ConfigureAwait(false);
            else batch.Results[i] = await node.GetAsync(batch.Keys[i], pieces, ct).ConfigureAwait(false);
        }
        node.CountRequest(Opcode.Get, end - start);
    }

    public async Task KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end, KvStatus[] results, CancellationToken ct)
    {
        for (int i = start, prefetched = start; i < end; i++)
        {
            ct.ThrowIfCancellationRequested();
            if (i == prefetched) prefetched = node.PrefetchKeys(keys, i, end);
            results[i] = op switch
            {
                Opcode.Exists => await node.ExistsAsync(keys[i], ct).ConfigureAwait(false),
                Opcode.Remove => await node.RemoveAsync(keys[i], ct).ConfigureAwait(false),
                Opcode.Pin => await node.PinAsync(keys[i], ct).ConfigureAwait(false),
                Opcode.Unpin => await node.UnpinAsync(keys[i], ct).ConfigureAwait(false),
                _ => throw new ArgumentOutOfRangeException(nameof(op)),
            };
        }
        node.CountRequest(op, end - start);
    }

    public async Task<List<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct) => [.. await node.StatsAsync(ct).ConfigureAwait(false)];

    public Task PingAsync(CancellationToken ct) => Task.CompletedTask;

    public bool SupportsTtl => true;

    /// <summary>In-process GETs copy from the node's memory in this process, with no wire or second mapping between: not checked.</summary>
    public long ChecksumMismatches => 0;

    public async Task<byte[]> KeyRequestAsync(Opcode op, byte[] meta, CancellationToken ct)
    {
        try { return await node.KeyRequestAsync(op, meta, ct).ConfigureAwait(false); }
        catch (NotSupportedException ex) { throw new KvasirException(ex.Message, ex); }
    }

    public ValueTask DisposeAsync() => Interlocked.Exchange(ref _disposed, 1) == 0 ? node.DisposeAsync() : default;

    private static NodeLimits LimitsOf(InProcessNodeInfo info)
    {
        if (info.MaxKeyBytes < 1 || info.MaxBatchKeys < 1 || info.MaxMetaBytes < 1 || info.MaxValueBytes < 0)
            throw new ArgumentException($"in-process node {info.NodeId} reports impossible limits", nameof(info));
        return new NodeLimits(info.MaxValueBytes, info.MaxKeyBytes, info.MaxBatchKeys, info.MaxMetaBytes, info.Capacity, info.NodeId);
    }
}
