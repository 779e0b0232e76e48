using System.Text;
using Kvasir.Client.Internal;
using Kvasir.Protocol;

namespace Kvasir.Client;

/// <summary>
/// The Kvasir client. Every data call is a batch with a result per key, in the caller's order.
/// Values are read from and written to the caller's memory directly: PUT sends the caller's
/// buffers (or gathered pieces) as they are, GET receives each value straight into the caller's
/// buffer (or scatters it over pieces). Thread-safe; many calls may be in flight at once.
/// Batches larger than the node's limits are split transparently (chained batches in order).
/// </summary>
public sealed partial class KvStore : IAsyncDisposable
{
    private readonly IKvTransport _transport = null!;
    private readonly ClusterRouter? _router;

    private KvStore(IKvTransport transport) => _transport = transport;

    private KvStore(ClusterRouter router) => _router = router;

    /// <summary>
    /// Connects to a node over TCP, or through its shared-memory arena when it is on this host
    /// (<see cref="KvStoreOptions.Transport"/>) — or, when the options name a registry or a server list,
    /// to a cluster (keys placed by rendezvous hashing, docs/cluster.md). Throws
    /// <see cref="KvasirException"/> (or <see cref="KvasirAuthException"/>) with the reason.
    /// </summary>
    public static async Task<KvStore> ConnectAsync(KvStoreOptions options, CancellationToken ct = default)
    {
        options.Validate(hasMember: false);
        if (options.IsRouted) return new KvStore(await ClusterRouter.StartAsync(options, null, ct).ConfigureAwait(false));
        return new KvStore(await ShmNegotiation.ConnectAsync(options, ct).ConfigureAwait(false));
    }

    /// <summary>
    /// Connects to the cluster the options name (a registry, or a server list, which may be empty) with
    /// <paramref name="member"/>, a node in this process, as one of its members: keys placed on it are
    /// read and written without a socket, the others go to their nodes as in
    /// <see cref="ConnectAsync(KvStoreOptions, CancellationToken)"/>. The member must already be reachable by
    /// other processes at its <see cref="InProcessNodeInfo.Address"/> and, with a registry, register itself
    /// there under its <see cref="InProcessNodeInfo.NodeId"/>; this call waits up to
    /// <see cref="KvStoreOptions.ConnectTimeout"/> for it to appear. The store owns the member from this call
    /// on: it is disposed with the store, or before this method throws. Kvasir.Embedded's
    /// <c>EmbeddedKvStore.ConnectAsync</c> starts a cache node and calls this.
    /// </summary>
    public static async Task<KvStore> ConnectAsync(KvStoreOptions options, IInProcessNode member, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(member);
        try { options.Validate(hasMember: true); }
        catch
        {
            await member.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return new KvStore(await ClusterRouter.StartAsync(options, member, ct).ConfigureAwait(false));
    }

    /// <summary>
    /// A store over a node in this process (transport <see cref="KvTransportKind.InProcess"/>). The store owns
    /// <paramref name="node"/>: disposing the store disposes it. Throws <see cref="ArgumentException"/> (the caller
    /// keeps the node) when the node reports impossible limits. Kvasir.Embedded's <c>EmbeddedKvStore</c> opens
    /// stores over cache nodes this way.
    /// </summary>
    public static KvStore Open(IInProcessNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return new KvStore(new InProcessTransport(node));
    }

    /// <summary>
    /// The transport this store's values take: <see cref="KvTransportKind.Tcp"/>, <see cref="KvTransportKind.Shm"/>
    /// or <see cref="KvTransportKind.InProcess"/>. In a cluster, <see cref="KvTransportKind.Auto"/>: each
    /// node's connection decides on its own (see <see cref="KvStoreOptions.Transport"/>).
    /// </summary>
    public KvTransportKind Transport => _router is null ? _transport.Kind : KvTransportKind.Auto;

    /// <summary>
    /// Why this store's node is reached over TCP although <see cref="KvStoreOptions.Transport"/> is
    /// <see cref="KvTransportKind.Auto"/> (the node is not on this host, has no arena, its arena cannot be opened,
    /// ...); null when it uses shared memory, when TCP was asked for, and for a cluster store.
    /// </summary>
    public string? TransportReason => (_transport as TcpTransport)?.FallbackReason;

    /// <summary>True when this store routes over a cluster's nodes.</summary>
    public bool IsCluster => _router is not null;

    /// <summary>The nodes keys are placed on now (one, for a single-node store).</summary>
    public IReadOnlyList<Kvasir.Cluster.NodeRecord> Nodes => _router?.Nodes
        ?? [new Kvasir.Cluster.NodeRecord { Id = NodeId, Address = NodeId, Capacity = _transport.Limits.Capacity }];

    /// <summary>
    /// Why this cluster store has no node to send keys to: its registry's cluster has no node up. The report names the
    /// cluster, the Redis (password redacted) and the clusters that have nodes there — usually the name was wrong or
    /// forgotten. Null while a node is up, and for a single node or a static list. Keys sent meanwhile are
    /// <see cref="KvStatus.Unavailable"/>; the store logs the line (a warning, at most once a minute), and
    /// <see cref="GetAsync(ReadOnlyMemory{byte}, CancellationToken)"/>, <see cref="PingAsync"/>, scans and removals by
    /// prefix throw it.
    /// </summary>
    public Task<Kvasir.Cluster.NoNodeReport?> NoNodeReportAsync() => _router?.NoNodeReportAsync() ?? Task.FromResult<Kvasir.Cluster.NoNodeReport?>(null);

    /// <summary>The ids of the nodes that hold <paramref name="key"/>'s copies, best first.</summary>
    public IReadOnlyList<string> Placement(ReadOnlySpan<byte> key, int? replicas = null)
        => _router?.Place(key, replicas ?? _router.Replicas) ?? [NodeId];

    /// <summary>Each node's STATS (or why it could not answer).</summary>
    public async Task<IReadOnlyList<(Kvasir.Cluster.NodeRecord Node, IReadOnlyDictionary<string, long>? Stats, string? Error)>> NodeStatsAsync(CancellationToken ct = default)
    {
        if (_router is not null) return await _router.NodeStatsAsync(ct).ConfigureAwait(false);
        return [(Nodes[0], await StatsAsync(ct).ConfigureAwait(false), null)];
    }

    /// <summary>Largest value the node accepts, in bytes (in a cluster, the smallest limit among the nodes reached so far).</summary>
    public long MaxValueBytes => _router?.MaxValueBytes ?? _transport.Limits.MaxValueBytes;

    /// <summary>The node's id as it reported it; in a cluster, the in-process member's id or "cluster".</summary>
    public string NodeId => _router is null ? _transport.Limits.NodeId : _router.EmbeddedNodeId ?? "cluster";

    /// <summary>UTF-8 bytes of each key: a convenience for string keys.</summary>
    public static ReadOnlyMemory<byte>[] Keys(params IEnumerable<string> keys) => keys.Select(k => (ReadOnlyMemory<byte>)Encoding.UTF8.GetBytes(k)).ToArray();

    /// <summary>Stores each key's value from one contiguous buffer.</summary>
    public Task<KvStatus[]> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values,
        PutOptions? options = null, CancellationToken ct = default)
    {
        CheckCounts(keys.Count, values.Count, nameof(values));
        var sources = new ValueSource[keys.Count];
        for (int i = 0; i < sources.Length; i++) sources[i] = new ValueSource(values[i]);
        return PutCoreAsync(new PutBatch(keys, sources, GivenCrcs(options, keys.Count)), options, ct);
    }

    /// <summary>Stores each key's value gathered from several pieces, concatenated in order (no copy is made to join them).</summary>
    public Task<KvStatus[]> PutGatherAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<IReadOnlyList<ReadOnlyMemory<byte>>> pieces,
        PutOptions? options = null, CancellationToken ct = default)
    {
        CheckCounts(keys.Count, pieces.Count, nameof(pieces));
        var sources = new ValueSource[keys.Count];
        for (int i = 0; i < sources.Length; i++) sources[i] = new ValueSource(pieces[i]);
        return PutCoreAsync(new PutBatch(keys, sources, GivenCrcs(options, keys.Count)), options, ct);
    }

    /// <summary>
    /// Reads each key's value into its destination. Ok with the value's length (the value is whole;
    /// bytes past it are untouched), NotFound, or BufferTooSmall (the destination is not written).
    /// </summary>
    public async Task<KvGetResult[]> GetAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations, CancellationToken ct = default)
    {
        CheckCounts(keys.Count, destinations.Count, nameof(destinations));
        var dests = new ValueDestination[keys.Count];
        for (int i = 0; i < dests.Length; i++) dests[i] = new ValueDestination(destinations[i]);
        return (await GetCoreAsync(new GetBatch(keys, dests), ct).ConfigureAwait(false)).Results;
    }

    /// <summary>Reads each key's value scattered over several pieces, filled in order.</summary>
    public async Task<KvGetResult[]> GetScatterAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<IReadOnlyList<Memory<byte>>> pieces, CancellationToken ct = default)
    {
        CheckCounts(keys.Count, pieces.Count, nameof(pieces));
        var dests = new ValueDestination[keys.Count];
        for (int i = 0; i < dests.Length; i++) dests[i] = new ValueDestination(pieces[i]);
        return (await GetCoreAsync(new GetBatch(keys, dests), ct).ConfigureAwait(false)).Results;
    }

    /// <summary>
    /// Reads one value into a new array; null on a miss, which includes a value whose bytes failed
    /// <see cref="KvStoreOptions.VerifyValueCrc"/> (counted and logged). Throws <see cref="KvasirException"/> when the node cannot answer.
    /// </summary>
    public async Task<byte[]?> GetAsync(ReadOnlyMemory<byte> key, CancellationToken ct = default)
    {
        var batch = await GetCoreAsync(new GetBatch([key], [ValueDestination.Allocating]), ct).ConfigureAwait(false);
        var result = batch.Results[0];
        if (result.Status == KvStatus.Unavailable && _router is not null) await _router.ThrowIfNoNodeAsync("get failed: Unavailable").ConfigureAwait(false);
        return result.Status switch
        {
            KvStatus.Ok => batch.Allocated[0],
            KvStatus.NotFound or KvStatus.ChecksumMismatch => null,
            _ => throw new KvasirException($"get failed: {result.Status}"),
        };
    }

    /// <summary>Per key: 1 present, 0 missing, −1 error (invalid key, node unavailable, timeout).</summary>
    public async Task<int[]> ExistsAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, CancellationToken ct = default)
    {
        var statuses = await KeyOpAsync(Opcode.Exists, keys, ct).ConfigureAwait(false);
        return statuses.Select(s => s switch { KvStatus.Ok => 1, KvStatus.NotFound => 0, _ => -1 }).ToArray();
    }

    /// <summary>
    /// EXISTS of a chain (keys in chain order): per key 1 present, 0 missing, −1 error, and every key past the first
    /// miss is 0: what counts is the stored prefix. In a cluster the chain is looked up on the nodes of
    /// <paramref name="root"/> (empty: the first key), one request per node tried — as a put with chain placement
    /// stored it (<see cref="KvStoreOptions.ChainPlacement"/>).
    /// </summary>
    public async Task<int[]> ExistsChainAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, ReadOnlyMemory<byte> root = default, CancellationToken ct = default)
    {
        var statuses = keys.Count == 0 ? []
            : _router is not null ? await _router.ChainLookupAsync(keys.Count, root.IsEmpty ? keys[0] : root,
                (s, start) => s.KeyOpAsync(Opcode.Exists, keys.Skip(start).ToArray(), ct)).ConfigureAwait(false)
            : ChainPrefix(await KeyOpAsync(Opcode.Exists, keys, ct).ConfigureAwait(false));
        return statuses.Select(s => s switch { KvStatus.Ok => 1, KvStatus.NotFound => 0, _ => -1 }).ToArray();
    }

    /// <summary>
    /// GET of a chain: as <see cref="GetAsync(IReadOnlyList{ReadOnlyMemory{byte}}, IReadOnlyList{Memory{byte}}, CancellationToken)"/>,
    /// but every key past the first miss is NotFound, and in a cluster the chain is read from the nodes of
    /// <paramref name="root"/> (empty: the first key) as <see cref="ExistsChainAsync"/> does.
    /// </summary>
    public async Task<KvGetResult[]> GetChainAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations,
        ReadOnlyMemory<byte> root = default, CancellationToken ct = default)
    {
        CheckCounts(keys.Count, destinations.Count, nameof(destinations));
        var results = new KvGetResult[keys.Count];
        KvStatus[] statuses;
        if (keys.Count == 0) return results;
        if (_router is not null)
        {
            statuses = await _router.ChainLookupAsync(keys.Count, root.IsEmpty ? keys[0] : root, async (s, start) =>
            {
                var sub = await s.GetAsync(keys.Skip(start).ToArray(), destinations.Skip(start).ToArray(), ct).ConfigureAwait(false);
                sub.CopyTo(results, start);
                return sub.Select(r => r.Status).ToArray();
            }).ConfigureAwait(false);
        }
        else
        {
            (await GetAsync(keys, destinations, ct).ConfigureAwait(false)).CopyTo(results, 0);
            statuses = ChainPrefix(results.Select(r => r.Status).ToArray());
        }
        for (int i = 0; i < results.Length; i++)
            if (statuses[i] != results[i].Status) results[i] = new KvGetResult(statuses[i], 0);
        return results;
    }

    /// <summary>Statuses of a chain lookup: every key after the first one not found is NotFound.</summary>
    private static KvStatus[] ChainPrefix(KvStatus[] statuses)
    {
        int first = Array.FindIndex(statuses, s => s != KvStatus.Ok);
        if (first >= 0) Array.Fill(statuses, KvStatus.NotFound, first + 1, statuses.Length - first - 1);
        return statuses;
    }

    /// <summary>Removes keys: Ok, or NotFound when absent. Readers in flight finish with the old bytes.</summary>
    public Task<KvStatus[]> RemoveAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, CancellationToken ct = default) => KeyOpAsync(Opcode.Remove, keys, ct);

    /// <summary>Pins keys: a pinned value is never evicted (it can still be removed or overwritten). Pins nest.</summary>
    public Task<KvStatus[]> PinAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, CancellationToken ct = default) => KeyOpAsync(Opcode.Pin, keys, ct);

    /// <summary>Drops one pin per key.</summary>
    public Task<KvStatus[]> UnpinAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, CancellationToken ct = default) => KeyOpAsync(Opcode.Unpin, keys, ct);

    /// <summary>The node's counters (STATS), by name. In a cluster: each counter summed over the nodes that answered.</summary>
    public async Task<IReadOnlyDictionary<string, long>> StatsAsync(CancellationToken ct = default)
    {
        if (_router is null) return (await _transport.StatsAsync(ct).ConfigureAwait(false)).ToDictionary(p => p.Key, p => p.Value);
        var sum = new Dictionary<string, long>();
        foreach (var (_, stats, _) in await _router.NodeStatsAsync(ct).ConfigureAwait(false))
            foreach (var (name, value) in stats ?? new Dictionary<string, long>()) sum[name] = sum.GetValueOrDefault(name) + value;
        return sum;
    }

    /// <summary>Round trip to the node (in a cluster: to every node; throws naming the first that did not answer).</summary>
    public async Task PingAsync(CancellationToken ct = default)
    {
        if (_router is null) { await _transport.PingAsync(ct).ConfigureAwait(false); return; }
        await _router.ThrowIfNoNodeAsync("ping").ConfigureAwait(false);
        foreach (var (node, _, error) in await _router.NodeStatsAsync(ct).ConfigureAwait(false))
            if (error is not null) throw new KvasirException($"node {node.Id} ({node.Address}): {error}");
    }

    /// <summary>
    /// Values a cluster store wrote back to replicas that had none or an older version when it read them
    /// (<see cref="KvStoreOptions.ReplicaVersions"/>); 0 for a single node.
    /// </summary>
    public long ReadRepairs => _router?.ReadRepairs ?? 0;

    /// <summary>
    /// Why a cluster store's last membership poll failed: its registry unreachable (the reason names the Redis and the
    /// cause) or damaged. Null while the polls succeed, and for a single node or a static server list. Meanwhile the store
    /// routes over the last membership it read (docs/cluster.md § What happens when). Python: <c>KvStore.membership_error</c>.
    /// </summary>
    public string? MembershipError => _router?.MembershipError;

    /// <summary>
    /// Membership polls of a cluster store that failed since it connected, whatever the cause (<see cref="MembershipError"/>
    /// names the last); 0 for a single node or a static server list. Python: <c>KvStore.membership_failures</c>.
    /// </summary>
    public long MembershipFailures => _router?.MembershipFailures ?? 0;

    /// <summary>
    /// GET hits answered <see cref="KvStatus.ChecksumMismatch"/> since the store connected (<see cref="KvStoreOptions.VerifyValueCrc"/>);
    /// in a cluster, summed over the nodes the store currently holds connections to.
    /// </summary>
    public long ChecksumMismatches => _router?.ChecksumMismatches ?? _transport.ChecksumMismatches;
    private static IReadOnlyList<uint>? GivenCrcs(PutOptions? options, int count)
    {
        if (options?.ValueCrc32C is not { } crcs) return null;
        if (crcs.Count != count) throw new ArgumentException($"{count} keys but {crcs.Count} CRCs in PutOptions.ValueCrc32C", nameof(options));
        return crcs;
    }

    internal async Task<KvStatus[]> PutCoreAsync(PutBatch batch, PutOptions? options, CancellationToken ct)
    {
        if (_router is not null)
        {
            var routed = await _router.PutAsync(batch.Keys, batch.Values, options, ct).ConfigureAwait(false);
            routed.CopyTo(batch.Results, 0);
            return batch.Results;
        }
        bool chain = options?.Chain ?? false;
        var limits = _transport.Limits;
        if (options?.Ttl is { } ttl)
        {
            if (!_transport.SupportsTtl) throw new KvasirException($"node {limits.NodeId} does not store a TTL (HELLO feature 0x2): upgrade the node or put without --ttl");
            batch.TtlSeconds = PutOptions.TtlSeconds(ttl);
        }
        // Keys the node would refuse are answered here, without sending their bytes. Chunks break
        // at them; the next chunk's chain parent is the refused key, exactly as the node would link it.
        var chunks = new List<(int Start, int End, ReadOnlyMemory<byte> Parent, bool HasParent)>();
        int runStart = 0;
        for (int i = 0; i <= batch.Keys.Count; i++)
        {
            bool refused = false;
            if (i < batch.Keys.Count)
            {
                var status = Check(batch.Keys[i], batch.Values[i].Length, limits);
                if (status != KvStatus.Ok) { batch.Results[i] = status; refused = true; }
            }
            if (i == batch.Keys.Count || refused)
            {
                SplitPut(batch, runStart, i, chain, options?.ChainParent ?? default, limits, chunks);
                runStart = i + 1;
            }
        }
        // A chain's requests go in order (a block is linked once its parent is stored), and so do those of a batch that
        // names a key twice: requests sent at once go on different connections (or are striped) and may be stored in any
        // order, and the last value must win (it did not: StripeTests).
        if (chain || (chunks.Count > 1 && Stripes.HasDuplicateKey(batch.Keys, 0, batch.Keys.Count)))
        {
            foreach (var c in chunks)
                await _transport.PutAsync(batch, c.Start, c.End, chain, c.Parent, c.HasParent, ct).ConfigureAwait(false);
        }
        else
        {
            if (chunks.Count == 1) await _transport.PutAsync(batch, chunks[0].Start, chunks[0].End, false, default, false, ct).ConfigureAwait(false);
            else await Task.WhenAll(chunks.Select(c => _transport.PutAsync(batch, c.Start, c.End, false, default, false, ct))).ConfigureAwait(false);
        }
        return batch.Results;
    }

    private static void SplitPut(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> firstParent, NodeLimits limits,
        List<(int, int, ReadOnlyMemory<byte>, bool)> chunks)
    {
        int chunkStart = start;
        // Fixed part: count, a chain parent, the TTL suffix. Each entry counts a CRC whether or not its connection sends one.
        int fixedMeta = 4 + 2 + ProtocolLimits.MaxKeyBytes + PutRequest.SuffixSize(batch.TtlSeconds is not null);
        int meta = fixedMeta;
        for (int i = start; i < end; i++)
        {
            int entry = PutRequest.EntrySize(batch.Keys[i].Length, valueCrc: true, version: batch.Versions is not null);
            if (i > chunkStart && (i - chunkStart >= limits.MaxBatchKeys || meta + entry > limits.MaxMetaBytes))
            {
                chunks.Add(Chunk(chunkStart, i));
                chunkStart = i;
                meta = fixedMeta;
            }
            meta += entry;
        }
        if (end > chunkStart) chunks.Add(Chunk(chunkStart, end));

        (int, int, ReadOnlyMemory<byte>, bool) Chunk(int s, int e)
        {
            if (!chain) return (s, e, default, false);
            if (s > 0) return (s, e, batch.Keys[s - 1], true);
            return (s, e, firstParent, !firstParent.IsEmpty);
        }
    }

    internal async Task<GetBatch> GetCoreAsync(GetBatch batch, CancellationToken ct)
    {
        if (_router is not null)
        {
            await _router.GetAsync(batch, ct).ConfigureAwait(false);
            return batch;
        }
        var chunks = KeyChunks(batch.Keys, _transport.Limits, i => batch.Results[i] = new KvGetResult(KvStatus.InvalidKey, 0));
        // One request (the usual case) is awaited as it is: no WhenAll, no iterator.
        if (chunks.Count == 1) await _transport.GetAsync(batch, chunks[0].Start, chunks[0].End, ct).ConfigureAwait(false);
        else await Task.WhenAll(chunks.Select(c => _transport.GetAsync(batch, c.Start, c.End, ct))).ConfigureAwait(false);
        return batch;
    }

    internal async Task<KvStatus[]> KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, CancellationToken ct)
    {
        if (_router is not null) return await _router.KeyOpAsync(op, keys, ct).ConfigureAwait(false);
        var results = new KvStatus[keys.Count];
        var chunks = KeyChunks(keys, _transport.Limits, i => results[i] = KvStatus.InvalidKey);
        await Task.WhenAll(chunks.Select(c => _transport.KeyOpAsync(op, keys, c.Start, c.End, results, ct))).ConfigureAwait(false);
        return results;
    }

    /// <summary>Runs of valid keys, each within the node's batch and metadata limits; invalid keys are reported through <paramref name="invalid"/>.</summary>
    private static List<(int Start, int End)> KeyChunks(IReadOnlyList<ReadOnlyMemory<byte>> keys, NodeLimits limits, Action<int> invalid)
    {
        var chunks = new List<(int, int)>();
        int chunkStart = -1, meta = 4;
        for (int i = 0; i <= keys.Count; i++)
        {
            bool valid = i < keys.Count && ValidKey(keys[i], limits);
            if (i < keys.Count && !valid) invalid(i);
            bool full = chunkStart >= 0 && valid && (i - chunkStart >= limits.MaxBatchKeys || meta + 2 + keys[i].Length > limits.MaxMetaBytes);
            if (chunkStart >= 0 && (!valid || full))
            {
                chunks.Add((chunkStart, i));
                chunkStart = -1;
                meta = 4;
            }
            if (valid)
            {
                if (chunkStart < 0) chunkStart = i;
                meta += 2 + keys[i].Length;
            }
        }
        return chunks;
    }

    private static KvStatus Check(ReadOnlyMemory<byte> key, long length, NodeLimits limits)
        => !ValidKey(key, limits) ? KvStatus.InvalidKey : length > limits.MaxValueBytes ? KvStatus.ValueTooLarge : KvStatus.Ok;

    private static bool ValidKey(ReadOnlyMemory<byte> key, NodeLimits limits) => key.Length >= 1 && key.Length <= limits.MaxKeyBytes;

    private static void CheckCounts(int keys, int other, string name)
    {
        if (keys != other) throw new ArgumentException($"{keys} keys but {other} {name}", name);
    }

    public ValueTask DisposeAsync() => _router?.DisposeAsync() ?? _transport.DisposeAsync();
}
