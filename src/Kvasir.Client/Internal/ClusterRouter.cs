using System.Collections.Concurrent;
using Kvasir.Cluster;
using Kvasir.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kvasir.Client.Internal;

/// <summary>
/// Routes every key of a batch to its nodes by rendezvous placement over the live membership (a
/// Redis-watched cluster or a static list), sends one request per node in parallel, and puts the
/// per-key results back in the caller's order. With R replicas, puts go to the top R nodes (Ok when
/// any of them stored the value), reads try them in rank order until one has the key, and a node
/// that fails mid-batch only turns its keys into retries on the next replica.
/// </summary>
internal sealed partial class ClusterRouter : IAsyncDisposable
{
    private readonly KvStoreOptions _options;
    private readonly MembershipWatcher? _watcher;
    private readonly ConcurrentDictionary<string, NodeSlot> _slots = new(StringComparer.Ordinal);

    /// <summary>Checksum mismatches of the nodes this router holds stores for (a node that left takes its count with it).</summary>
    public long ChecksumMismatches => _slots.Values.Sum(s => s.Store?.ChecksumMismatches ?? 0);
    private readonly ILogger _log;
    private NodeSlot? _embedded;
    private string? _embeddedConflict;   // the other address last seen registered under the embedded member's id (logged once each)
    private View _view;

    private volatile int _replicas;
    private readonly RedisClusterRegistry? _registry;   // owned by the watcher
    private volatile ReportAt? _noNode;
    private long _noNodeLoggedMs;

    /// <summary>The fix a zero-node message names for SDK users (the CLI names --cluster).</summary>
    public const string NoNodeFix = "set KvStoreOptions.Cluster = NAME";

    /// <summary>How long a zero-node report is reused (each is a SCAN of the Redis), and how often it is logged at most.</summary>
    private const long NoNodeReportMs = 5_000, NoNodeLogMs = 60_000;

    private ClusterRouter(KvStoreOptions options, MembershipWatcher? watcher, IReadOnlyList<NodeRecord> nodes, ILogger log, int replicas,
        RedisClusterRegistry? registry = null)
    {
        _options = options;
        _replicas = replicas;
        _watcher = watcher;
        _registry = registry;
        _log = log;
        _view = new View(nodes);
        if (watcher is not null) watcher.Changed += snapshot => Update(snapshot.Nodes);
    }

    /// <summary>
    /// Copies of each value: <see cref="KvStoreOptions.Replicas"/> when set, else the cluster's setting (docs/cluster.md
    /// § Cluster settings; re-read on every membership poll), else 1.
    /// </summary>
    public int Replicas => _replicas;

    /// <summary>The membership watcher's last poll error; null while polls succeed, and for a static list.</summary>
    public string? MembershipError => _watcher?.LastError;

    /// <summary>Membership polls that failed (see <see cref="MembershipWatcher.Failures"/>); 0 for a static list.</summary>
    public long MembershipFailures => _watcher?.Failures ?? 0;

    /// <summary>The live nodes the router places keys on now, sorted by id.</summary>
    public IReadOnlyList<NodeRecord> Nodes => _view.Nodes;

    /// <summary>The in-process member's id, when this process runs one.</summary>
    public string? EmbeddedNodeId => _embedded?.Id;

    /// <summary>Smallest max value size among connected nodes (the protocol default until one is connected).</summary>
    public long MaxValueBytes
    {
        get
        {
            long min = long.MaxValue;
            foreach (var slot in _slots.Values) if (slot.Store is { } s) min = Math.Min(min, s.MaxValueBytes);
            return min == long.MaxValue ? ProtocolLimits.DefaultMaxValueBytes : min;
        }
    }

    /// <summary>
    /// Reads the membership and returns a router over it. <paramref name="member"/>, a node in this process,
    /// is owned from here on: disposed with the router, or before this method throws.
    /// </summary>
    public static async Task<ClusterRouter> StartAsync(KvStoreOptions options, IInProcessNode? member, CancellationToken ct)
    {
        var log = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Kvasir.Client");
        KvStore? memberStore = null;
        try
        {
            memberStore = member is null ? null : KvStore.Open(member);
            var memberInfo = member?.Info;
            string? memberId = memberInfo?.NodeId;
            ClusterRouter router;
            if (options.EffectiveRedisUrl is { } url)
            {
                RedisClusterRegistry registry;
                MembershipWatcher watcher;
                try
                {
                    registry = await RedisClusterRegistry.ConnectAsync(RedisUrl.Parse(url, options.RedisCaFile), options.Cluster, options.ConnectTimeout).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is FormatException or ClusterRegistryException) { throw new KvasirException(ex.Message, ex); }
                try
                {
                    watcher = await MembershipWatcher.StartAsync(registry, options.MembershipPoll, ownsRegistry: true, options.LoggerFactory).ConfigureAwait(false);
                }
                catch (ClusterRegistryException ex)
                {
                    await registry.DisposeAsync().ConfigureAwait(false);
                    throw new KvasirException($"cannot read cluster '{options.Cluster}' from {RedisUrl.Redact(url)}: {ex.Message}", ex);
                }
                var settings = options.Replicas > 0 ? null : await ClusterSettingsAsync(registry, watcher, options, url).ConfigureAwait(false);
                router = new ClusterRouter(options, watcher, watcher.Current.Nodes, log, settings is null ? options.Replicas : settings.Replicas ?? 1, registry);
                if (settings is not null)
                {
                    // the client did not say R: it follows the cluster's (kvasir cluster set replicas=N) while it runs
                    watcher.SettingsChanged += router.OnSettings;
                    watcher.FollowSettings(settings);
                }
                if (router.Nodes.Count == 0 && member is null) router.NoteNoNode();   // said at once: a wrong name is the usual cause
            }
            else
            {
                var nodes = options.ServerList().Select(a => new NodeRecord { Id = a, Address = a }).ToList();
                if (memberId is not null && nodes.All(n => n.Id != memberId)) nodes.Add(new NodeRecord { Id = memberId, Address = memberInfo!.Address });
                router = new ClusterRouter(options, null, nodes, log, Math.Max(options.Replicas, 1));
            }
            if (memberStore is not null)
            {
                router._embedded = new NodeSlot(memberId!, memberInfo!.Address, memberStore);
                router._slots[memberId!] = router._embedded;
                // A fresh member may not have registered yet when the first view was read.
                if (router._watcher is not null && router.Nodes.All(n => n.Id != memberId))
                {
                    var deadline = Environment.TickCount64 + (long)options.ConnectTimeout.TotalMilliseconds;
                    while (router.Nodes.All(n => n.Id != memberId) && Environment.TickCount64 < deadline)
                    {
                        await Task.Delay(20, ct).ConfigureAwait(false);
                        try { await router._watcher.RefreshAsync().ConfigureAwait(false); }
                        catch (ClusterRegistryException) { }
                    }
                }
            }
            return router;
        }
        catch
        {
            if (memberStore is not null) await memberStore.DisposeAsync().ConfigureAwait(false);
            else if (member is not null) await member.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private void OnSettings(ClusterSettings settings)
    {
        int replicas = settings.Replicas ?? 1, previous = _replicas;
        if (replicas == previous) return;
        _replicas = replicas;
        _log.LogInformation("cluster {Cluster}: {Replicas} replicas from now on (was {Previous}; kvasir cluster set)", _options.Cluster, replicas, previous);
    }

    private void Update(IReadOnlyList<NodeRecord> nodes)
    {
        Volatile.Write(ref _view, new View(nodes));
        // Slots of nodes that left are closed; their in-flight requests finish or fail per key.
        foreach (var (id, slot) in _slots)
            if (slot != _embedded && nodes.All(n => n.Id != id || n.Address != slot.Address) && _slots.TryRemove(id, out _))
                _ = slot.DisposeAsync().AsTask();
    }

    /// <summary>
    /// Why no key can be placed now: the registry's cluster has no node up (null while it has one, and for a static
    /// list). Names the cluster, the Redis and the clusters that do have nodes there; reused for a few seconds.
    /// </summary>
    public async Task<NoNodeReport?> NoNodeReportAsync()
    {
        if (_registry is null || Volatile.Read(ref _view).Nodes.Count > 0) return null;
        if (_noNode is { } cached && Environment.TickCount64 - cached.AtMs < NoNodeReportMs) return cached.Report;
        var report = await NoNodeReport.ReadAsync(_registry, RedisUrl.Redact(_options.EffectiveRedisUrl!)).ConfigureAwait(false);
        _noNode = new ReportAt(report, Environment.TickCount64);
        return report;
    }

    private sealed record ReportAt(NoNodeReport Report, long AtMs);

    /// <summary>Throws <see cref="KvasirException"/> with the zero-node line when the cluster has no node up.</summary>
    public async Task ThrowIfNoNodeAsync(string what)
    {
        if (await NoNodeReportAsync().ConfigureAwait(false) is { } report) throw new KvasirException($"{what}: {report.Message(NoNodeFix)}");
    }

    /// <summary>
    /// A batch found no node to go to: logs the zero-node line (a warning, at most once a minute per store), in the
    /// background — the batch's keys are Unavailable either way.
    /// </summary>
    private void NoteNoNode()
    {
        if (_registry is null) return;
        long now = Environment.TickCount64, last = Interlocked.Read(ref _noNodeLoggedMs);
        if ((last != 0 && now - last < NoNodeLogMs) || Interlocked.CompareExchange(ref _noNodeLoggedMs, now, last) != last) return;
        _ = Task.Run(async () =>
        {
            try
            {
                if (await NoNodeReportAsync().ConfigureAwait(false) is { } report) _log.LogWarning("{Message}", report.Message(NoNodeFix));
            }
            catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
            {
                // the store was disposed meanwhile
            }
        });
    }

    /// <summary>The replicas of one key over the current view, best first (node ids).</summary>
    public string[] Place(ReadOnlySpan<byte> key, int replicas)
    {
        var view = Volatile.Read(ref _view);
        int r = Math.Min(replicas, view.Nodes.Count);
        if (view.Nodes.Count == 0) NoteNoNode();
        if (r == 0) return [];
        Span<int> ranks = stackalloc int[r];
        Rendezvous.Rank(Rendezvous.Hash(key), view.Hashes, view.Ids, ranks);
        var ids = new string[r];
        for (int i = 0; i < r; i++) ids[i] = view.Ids[ranks[i]];
        return ids;
    }

    public async Task<KvStatus[]> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, ValueSource[] values, PutOptions? options, CancellationToken ct)
    {
        int replicas = options?.Replicas ?? _replicas;
        var root = ChainRootOf(keys, options);
        var plan = Plan(keys, replicas, root);
        var results = new KvStatus[keys.Count];
        var answers = new KvStatus[keys.Count][];
        for (int i = 0; i < keys.Count; i++) answers[i] = plan.Ranks[i] is { Length: > 0 } r ? new KvStatus[r.Length] : [];
        var parent = options?.ChainParent ?? default;
        // Placed by its root, a continuation's parent lives on the same nodes as the whole batch.
        var parentNodes = options is { Chain: true } && !parent.IsEmpty ? Place((root ?? parent).Span, replicas) : [];
        var versions = Versioned(replicas) ? Stamp(keys.Count) : null;
        await Task.WhenAll(plan.ByNode().Select(async group =>
        {
            var (slot, entries) = group;
            var subKeys = entries.Select(e => keys[e.Index]).ToArray();
            var subValues = entries.Select(e => values[e.Index]).ToArray();
            // Within one node a chain links each key to the nearest earlier key stored there: still an
            // ancestor, so prefix-aware eviction keeps its order (see docs/cluster.md).
            // The TTL goes to every replica (it was dropped here: cluster puts never expired).
            var subOptions = options is { Chain: true }
                ? new PutOptions { Chain = true, ChainParent = parentNodes.Contains(slot.Id) ? parent : default, Ttl = options.Ttl }
                : options?.Ttl is { } ttl ? new PutOptions { Ttl = ttl } : null;
            var statuses = await RunAsync(slot, entries.Count, s => s.PutCoreAsync(new PutBatch(subKeys, subValues) { Versions = Pick(versions, entries) }, subOptions, ct)).ConfigureAwait(false);
            for (int j = 0; j < entries.Count; j++) answers[entries[j].Index][entries[j].Rank] = statuses[j];
        })).ConfigureAwait(false);
        for (int i = 0; i < keys.Count; i++)
            results[i] = plan.Ranks[i] is null ? KvStatus.InvalidKey : Combine(answers[i], KvStatus.Ok);
        return results;
    }

    public Task GetAsync(GetBatch batch, CancellationToken ct) => Versioned(_replicas) ? GetNewestAsync(batch, ct) : GetInRankOrderAsync(batch, ct);

    /// <summary>Each key from the first replica in rank order that has it.</summary>
    private async Task GetInRankOrderAsync(GetBatch batch, CancellationToken ct)
    {
        var plan = Plan(batch.Keys, _replicas);
        var statuses = await RoundsAsync(plan, async (store, idx) =>
        {
            var sub = new GetBatch(idx.Select(i => batch.Keys[i]).ToArray(), idx.Select(i => batch.Destinations[i]).ToArray());
            await store.GetCoreAsync(sub, ct).ConfigureAwait(false);
            for (int j = 0; j < idx.Length; j++)
            {
                batch.Results[idx[j]] = sub.Results[j];
                batch.Allocated[idx[j]] = sub.Allocated[j];
            }
            return sub.Results.Select(r => r.Status).ToArray();
        }).ConfigureAwait(false);
        for (int i = 0; i < statuses.Length; i++)
            if (statuses[i] != batch.Results[i].Status) batch.Results[i] = new KvGetResult(statuses[i], 0);
    }

    /// <summary>EXISTS asks replicas in turn like GET; REMOVE, PIN and UNPIN go to every replica.</summary>
    public async Task<KvStatus[]> KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, CancellationToken ct)
    {
        var plan = Plan(keys, _replicas);
        if (op == Opcode.Exists)
            return await RoundsAsync(plan, (store, idx) => store.KeyOpAsync(op, idx.Select(i => keys[i]).ToArray(), ct)).ConfigureAwait(false);
        var results = new KvStatus[keys.Count];
        var answers = new KvStatus[keys.Count][];
        for (int i = 0; i < keys.Count; i++) answers[i] = plan.Ranks[i] is { Length: > 0 } r ? new KvStatus[r.Length] : [];
        await Task.WhenAll(plan.ByNode().Select(async group =>
        {
            var (slot, entries) = group;
            var sub = entries.Select(e => keys[e.Index]).ToArray();
            var statuses = await RunAsync(slot, entries.Count, s => s.KeyOpAsync(op, sub, ct)).ConfigureAwait(false);
            for (int j = 0; j < entries.Count; j++) answers[entries[j].Index][entries[j].Rank] = statuses[j];
        })).ConfigureAwait(false);
        for (int i = 0; i < keys.Count; i++) results[i] = plan.Ranks[i] is null ? KvStatus.InvalidKey : Combine(answers[i], KvStatus.Ok);
        return results;
    }

    /// <summary>
    /// Asks each key's replicas in rank order — one request per node per round — until one has it.
    /// A key that no replica had but that replicas could not answer (skipped for their backoff, or failed) asks each
    /// of those once more, backoff or not, in rank order until one has it, before it is a miss: otherwise a value
    /// acknowledged by one replica alone reads as a miss while that replica is up again (the write-once loss of
    /// bench/chaos.py; with both replicas in backoff after restarts, asking only the first asked the empty one).
    /// A key no replica had is NotFound when any replica said so; Unavailable only when none could be asked.
    /// </summary>
    private async Task<KvStatus[]> RoundsAsync(Plan plan, Func<KvStore, int[], Task<KvStatus[]>> call)
    {
        int count = plan.Ranks.Length;
        var results = new KvStatus[count];
        var sawMiss = new bool[count];
        var unanswered = new List<int>?[count];   // the replicas of each key that could not answer, in rank order
        for (int i = 0; i < count; i++) results[i] = plan.Ranks[i] is null ? KvStatus.InvalidKey : KvStatus.Unavailable;

        async Task Ask(IEnumerable<IGrouping<int, int>> groups, bool force) =>
            await Task.WhenAll(groups.Select(async group =>
            {
                var idx = group.ToArray();
                var statuses = await RunAsync(plan.Slots[group.Key], idx.Length, s => call(s, idx), force).ConfigureAwait(false);
                for (int j = 0; j < idx.Length; j++)
                {
                    int i = idx[j];
                    results[i] = statuses[j];
                    sawMiss[i] |= statuses[j] == KvStatus.NotFound;
                    if (!force && statuses[j] == KvStatus.Unavailable) (unanswered[i] ??= []).Add(group.Key);   // one group per key per round
                }
            })).ConfigureAwait(false);

        var pending = Enumerable.Range(0, count).Where(i => plan.Ranks[i] is { Length: > 0 }).ToList();
        for (int attempt = 0; pending.Count > 0; attempt++)
        {
            await Ask(pending.GroupBy(i => plan.Ranks[i]![attempt]), force: false).ConfigureAwait(false);
            pending = pending.Where(i => attempt + 1 < plan.Ranks[i]!.Length && Retry(results[i])).ToList();
        }
        // Last tries: one replica per key per turn (so no two answers race for its destination).
        for (int turn = 0; ; turn++)
        {
            var last = Enumerable.Range(0, count).Where(i => unanswered[i] is { } u && turn < u.Count && Retry(results[i])).ToList();
            if (last.Count == 0) break;
            await Ask(last.GroupBy(i => unanswered[i]![turn]), force: true).ConfigureAwait(false);
        }
        for (int i = 0; i < count; i++) if (sawMiss[i] && Retry(results[i])) results[i] = KvStatus.NotFound;
        return results;
    }

    /// <summary>The store of one node (null when it cannot be reached): key management asks every node in turn.</summary>
    public Task<KvStore?> NodeStoreAsync(NodeRecord node, CancellationToken ct) => SlotFor(node).GetStoreAsync(_options, ct).AsTask();

    /// <summary>Each live node's STATS, or the reason it could not answer.</summary>
    public async Task<IReadOnlyList<(NodeRecord Node, IReadOnlyDictionary<string, long>? Stats, string? Error)>> NodeStatsAsync(CancellationToken ct)
    {
        var nodes = Nodes;
        return await Task.WhenAll(nodes.Select(async n =>
        {
            var store = await SlotFor(n).GetStoreAsync(_options, ct).ConfigureAwait(false);
            if (store is null) return (n, (IReadOnlyDictionary<string, long>?)null, (string?)"unreachable");
            try { return (n, await store.StatsAsync(ct).ConfigureAwait(false), null); }
            catch (KvasirException ex) { return (n, null, ex.Message); }
        })).ConfigureAwait(false);
    }

    /// <summary>
    /// The key a chained put is placed by when chain placement applies to it (per put, else store-wide), or null.
    /// A continuation must name its root: placed by its own first key it would land away from what it continues.
    /// </summary>
    private ReadOnlyMemory<byte>? ChainRootOf(IReadOnlyList<ReadOnlyMemory<byte>> keys, PutOptions? options)
    {
        if (options is not { Chain: true } || !(options.ChainPlacement ?? _options.ChainPlacement) || keys.Count == 0) return null;
        return CheckedRoot(keys[0], options.ChainRoot, !options.ChainParent.IsEmpty);
    }

    private static ReadOnlyMemory<byte> CheckedRoot(ReadOnlyMemory<byte> firstKey, ReadOnlyMemory<byte> root, bool continuesParent)
    {
        try { return Rendezvous.ChainPlacementKey(firstKey, root, continuesParent); }
        catch (ArgumentException ex) { throw new KvasirException(ex.Message, ex); }
    }

    /// <summary>
    /// A chain lookup (docs/protocol.md § Placement): the chain lives on its root's replicas, asked in rank order,
    /// one request per node; each is asked for the keys from the first one not yet found, and its answer counts up
    /// to its first miss. Keys past the found prefix are NotFound (Unavailable when no replica answered).
    /// <paramref name="call"/> asks a node for keys[start..] and returns their statuses.
    /// </summary>
    public async Task<KvStatus[]> ChainLookupAsync(int count, ReadOnlyMemory<byte> root, Func<KvStore, int, Task<KvStatus[]>> call)
    {
        var plan = Plan([CheckedRoot(root, default, false)], _replicas);
        var results = new KvStatus[count];
        Array.Fill(results, KvStatus.Unavailable);
        int found = 0;
        foreach (int node in plan.Ranks[0] ?? [])
        {
            if (found == count) break;
            int start = found;
            var statuses = await RunAsync(plan.Slots[node], count - start, s => call(s, start)).ConfigureAwait(false);
            if (statuses.All(s => s == KvStatus.Unavailable)) continue;
            Array.Fill(results, KvStatus.NotFound, start, count - start);
            while (found < count && statuses[found - start] == KvStatus.Ok) results[found++] = KvStatus.Ok;
            if (found < count && !Retry(statuses[found - start])) { results[found] = statuses[found - start]; break; }
        }
        return results;
    }

    /// <summary>
    /// Keys of each valid key ranked over the view; invalid keys get a null rank list. With <paramref name="root"/>
    /// every valid key takes the root's ranking (chain placement).
    /// </summary>
    private Plan Plan(IReadOnlyList<ReadOnlyMemory<byte>> keys, int replicas, ReadOnlyMemory<byte>? root = null)
    {
        var view = Volatile.Read(ref _view);
        int r = Math.Min(Math.Max(replicas, 1), view.Nodes.Count);
        if (r == 0) NoteNoNode();
        var slots = new NodeSlot[view.Nodes.Count];
        for (int n = 0; n < slots.Length; n++) slots[n] = SlotFor(view.Nodes[n]);
        var ranks = new int[]?[keys.Count];
        Span<int> buffer = stackalloc int[Math.Max(r, 1)];
        int[]? rootRanks = null;
        if (root is { } rootKey && r > 0)
        {
            Rendezvous.Rank(Rendezvous.Hash(rootKey.Span), view.Hashes, view.Ids, buffer[..r]);
            rootRanks = buffer[..r].ToArray();
        }
        for (int i = 0; i < keys.Count; i++)
        {
            var key = keys[i];
            if (key.Length is < 1 or > ProtocolLimits.MaxKeyBytes) continue;
            if (r == 0) { ranks[i] = []; continue; }
            if (rootRanks is not null) { ranks[i] = rootRanks; continue; }
            Rendezvous.Rank(Rendezvous.Hash(key.Span), view.Hashes, view.Ids, buffer[..r]);
            ranks[i] = buffer[..r].ToArray();
        }
        return new Plan(slots, ranks);
    }

    private NodeSlot SlotFor(NodeRecord node)
    {
        // The member in this process is its id's node for this process, whatever address the registry shows for the id
        // (a crashed predecessor's record not yet expired, another process given the same id): replacing its slot by a
        // socket to that address disposed it, and so stopped the node in this process.
        if (_embedded is { } own && node.Id == own.Id)
        {
            if (node.Address != own.Address && Interlocked.Exchange(ref _embeddedConflict, node.Address) != node.Address)
                _log.LogWarning("node id {Id} is registered at {Address}, but it is this process's own node ({Own}): another process uses the same id, or a predecessor's registration has not expired yet",
                    own.Id, node.Address, own.Address);
            return own;
        }
        if (_slots.TryGetValue(node.Id, out var slot) && slot.Address == node.Address && slot.Tls == node.Tls) return slot;
        var fresh = new NodeSlot(node.Id, node.Address, node.Tls);
        if (slot is not null && _slots.TryUpdate(node.Id, fresh, slot)) { _ = slot.DisposeAsync().AsTask(); return fresh; }
        return _slots.GetOrAdd(node.Id, fresh);
    }

    /// <summary>
    /// <paramref name="call"/> on the slot's node. Only a node that failed is marked down: a call skipped for the backoff
    /// leaves it as it is (re-marking on every skip kept a node that was back out of use for as long as requests kept
    /// coming: bench/chaos.py's stale reads). A node that was up and fails a whole batch is asked once more, on a new
    /// connection, before it is marked down: a node restarted at the same address fails the first request on the
    /// connection its predecessor left, and marking it down then kept it out of puts (copies acknowledged by one
    /// replica) and reads (the other replica's older copy) for the backoff. A node that lets a whole batch time out is
    /// marked down at once.
    /// </summary>
    private async Task<KvStatus[]> RunAsync(NodeSlot slot, int count, Func<KvStore, Task<KvStatus[]>> call, bool force = false)
    {
        bool up = !slot.IsDown;
        var store = await slot.GetStoreAsync(_options, CancellationToken.None, force).ConfigureAwait(false);
        if (store is null)
        {
            if (slot.TakeError() is { } reason) _log.LogWarning("node {Id} ({Address}) cannot be reached: {Reason}", slot.Id, slot.Address, reason);
            if (up || force) _watcher?.Wake();   // not skipped: it could not be reached (the slot marked itself down)
            return Enumerable.Repeat(KvStatus.Unavailable, count).ToArray();
        }
        var statuses = await call(store).ConfigureAwait(false);
        bool failed = count > 0 && statuses.All(s => s == KvStatus.Unavailable);
        if (failed && up) statuses = await call(store).ConfigureAwait(false);
        // A node that let the whole batch time out (silent: partitioned, stopped) is down too, without a second try:
        // otherwise each request to its keys waited the timeout again until its registration expired (chaos.py).
        failed = count > 0 && statuses.All(s => s is KvStatus.Unavailable or KvStatus.Timeout);
        if (failed)
        {
            if (slot.MarkDown()) _log.LogWarning("node {Id} ({Address}) is unreachable; using replicas", slot.Id, slot.Address);
            _watcher?.Wake();
        }
        else slot.MarkUp();
        return statuses;
    }

    /// <summary>Answers that send a key on to its next replica; a copy that failed the CRC check (ChecksumMismatch) is one.</summary>
    private static bool Retry(KvStatus status)
        => status is KvStatus.NotFound or KvStatus.Unavailable or KvStatus.Timeout or KvStatus.ProtocolError or KvStatus.ChecksumMismatch;

    /// <summary>Ok when any replica succeeded; else the first answer that is not about reachability; else the first.</summary>
    private static KvStatus Combine(KvStatus[] answers, KvStatus ok)
    {
        if (answers.Length == 0) return KvStatus.Unavailable;
        if (answers.Contains(ok)) return ok;
        foreach (var a in answers) if (a is not (KvStatus.Unavailable or KvStatus.Timeout)) return a;
        return answers[0];
    }

    public async ValueTask DisposeAsync()
    {
        if (_watcher is not null) await _watcher.DisposeAsync().ConfigureAwait(false);
        foreach (var slot in _slots.Values) await slot.DisposeAsync().ConfigureAwait(false);
        _slots.Clear();
    }

    /// <summary>One membership view: nodes sorted by id, with their hashes precomputed.</summary>
    private sealed class View
    {
        public View(IReadOnlyList<NodeRecord> nodes)
        {
            Nodes = nodes.OrderBy(n => n.Id, StringComparer.Ordinal).DistinctBy(n => n.Id).ToArray();
            Ids = Nodes.Select(n => n.Id).ToArray();
            Hashes = Ids.Select(Rendezvous.NodeHash).ToArray();
        }

        public IReadOnlyList<NodeRecord> Nodes { get; }
        public string[] Ids { get; }
        public ulong[] Hashes { get; }
    }
}

/// <summary>A batch's placement: for each key the indexes (into <see cref="Slots"/>) of its replicas, best first.</summary>
internal sealed record Plan(NodeSlot[] Slots, int[]?[] Ranks)
{
    /// <summary>Every (key, rank) pair grouped by node, keys in caller order within a node.</summary>
    public IEnumerable<(NodeSlot Slot, List<(int Index, int Rank)> Entries)> ByNode()
    {
        var groups = new Dictionary<int, List<(int, int)>>();
        for (int i = 0; i < Ranks.Length; i++)
        {
            if (Ranks[i] is not { } ranks) continue;
            for (int r = 0; r < ranks.Length; r++)
            {
                if (!groups.TryGetValue(ranks[r], out var list)) groups[ranks[r]] = list = [];
                list.Add((i, r));
            }
        }
        return groups.Select(g => (Slots[g.Key], g.Value));
    }
}
