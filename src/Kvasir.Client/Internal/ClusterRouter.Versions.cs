using Kvasir.Cluster;
using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// Versioned replicas (docs/cluster.md § Versions): puts stamp each value with this client's hybrid logical clock;
/// gets ask every replica, keep the newest copy, and write it back to replicas that had none or an older one.
/// </summary>
internal sealed partial class ClusterRouter
{
    private readonly HybridClock _clock = new();
    private long _repairs;

    /// <summary>Values written back to replicas that had none or an older version, since the router started.</summary>
    public long ReadRepairs => Interlocked.Read(ref _repairs);

    private bool Versioned(int replicas) => _options.ReplicaVersions && replicas >= 2;

    /// <summary>The cluster's settings in the registry (its replication factor). Disposes the watcher (and its registry) when it fails.</summary>
    private static async Task<ClusterSettings> ClusterSettingsAsync(IClusterRegistry registry, MembershipWatcher watcher, KvStoreOptions options, string url)
    {
        try
        {
            return await registry.ReadSettingsAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is ClusterRegistryException or FormatException)
        {
            await watcher.DisposeAsync().ConfigureAwait(false);
            throw new KvasirException($"cannot read the settings of cluster '{options.Cluster}' from {RedisUrl.Redact(url)}: {ex.Message}", ex);
        }
    }

    private long[] Stamp(int count)
    {
        var versions = new long[count];
        for (int i = 0; i < count; i++) versions[i] = _clock.Next();
        return versions;
    }

    private static long[]? Pick(long[]? versions, List<(int Index, int Rank)> entries)
        => versions is null ? null : entries.Select(e => versions[e.Index]).ToArray();

    /// <summary>One replica's answer for one key: the bytes are null for rank 0 (they went to the caller's destination).</summary>
    private readonly record struct Answer(KvStatus Status, long Length, long Version, byte[]? Bytes);

    /// <summary>
    /// Every replica of every key at once (one request per node, in parallel): rank 0 reads into the caller's
    /// destination, the others into buffers. Per key the newest version wins (ties: the better rank); replicas that
    /// answered "not found" or an older version get the winner back, with its version. Keys no replica had while one
    /// could not answer go through the rank-order path, whose last try reaches a replica in its backoff.
    /// </summary>
    private async Task GetNewestAsync(GetBatch batch, CancellationToken ct)
    {
        int count = batch.Keys.Count;
        var plan = Plan(batch.Keys, _replicas);
        var answers = new Answer[count][];
        for (int i = 0; i < count; i++) answers[i] = plan.Ranks[i] is { } r ? new Answer[r.Length] : [];
        await Task.WhenAll(plan.ByNode().Select(async group =>
        {
            var (slot, entries) = group;
            var sub = new GetBatch(entries.Select(e => batch.Keys[e.Index]).ToArray(),
                entries.Select(e => e.Rank == 0 ? batch.Destinations[e.Index] : ValueDestination.Allocating).ToArray())
            { WantVersions = true };
            var statuses = await RunAsync(slot, entries.Count, async s =>
            {
                await s.GetCoreAsync(sub, ct).ConfigureAwait(false);
                return sub.Results.Select(r => r.Status).ToArray();
            }).ConfigureAwait(false);
            for (int j = 0; j < entries.Count; j++)
            {
                var (i, rank) = entries[j];
                if (rank == 0) batch.Allocated[i] = sub.Allocated[j];
                answers[i][rank] = new Answer(statuses[j], statuses[j] == sub.Results[j].Status ? sub.Results[j].Length : 0, sub.Versions[j],
                    rank == 0 ? null : sub.Allocated[j]);
            }
        })).ConfigureAwait(false);
        await RereadMismatchesAsync(batch, plan, answers, ct).ConfigureAwait(false);

        var repairs = new List<(int Index, int Rank, int Winner)>();
        var retry = new List<int>();
        for (int i = 0; i < count; i++)
        {
            if (plan.Ranks[i] is not { } ranks) { batch.Results[i] = new KvGetResult(KvStatus.InvalidKey, 0); continue; }
            var a = answers[i];
            int winner = -1;
            for (int r = 0; r < a.Length; r++)
                if (a[r].Status is KvStatus.Ok or KvStatus.BufferTooSmall && (winner < 0 || a[r].Version > a[winner].Version)) winner = r;
            if (winner < 0)
            {
                batch.Results[i] = new KvGetResult(ranks.Length == 0 ? KvStatus.Unavailable : a.Any(x => x.Status == KvStatus.NotFound) ? KvStatus.NotFound : a[0].Status, 0);
                if (a.Any(x => x.Status is KvStatus.Unavailable or KvStatus.Timeout or KvStatus.ProtocolError or KvStatus.ChecksumMismatch)) retry.Add(i);
                continue;
            }
            var w = a[winner];
            batch.Versions[i] = w.Version;
            _clock.AtLeast(w.Version);
            batch.Results[i] = w.Bytes is null ? new KvGetResult(w.Status, w.Length) : Deliver(batch, i, w.Bytes);
            if (w.Status != KvStatus.Ok || w.Version <= 0) continue;
            for (int r = 0; r < a.Length; r++)
                if (a[r].Status == KvStatus.NotFound || (a[r].Status == KvStatus.Ok && a[r].Version > 0 && a[r].Version < w.Version)) repairs.Add((i, r, winner));
        }
        if (repairs.Count > 0) await RepairAsync(batch, plan, answers, repairs, ct).ConfigureAwait(false);
        if (retry.Count > 0) await RetryInRankOrderAsync(batch, retry, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads once more, into buffers of their own, the copies that failed the client's CRC check
    /// (<see cref="KvStatus.ChecksumMismatch"/>): passed over, a newest copy corrupted on its way lost to an older
    /// version on another replica, and the get returned the value as it was before its last write. A copy that fails
    /// again stays a mismatch.
    /// </summary>
    private async Task RereadMismatchesAsync(GetBatch batch, Plan plan, Answer[][] answers, CancellationToken ct)
    {
        var again = new List<(int Index, int Rank)>();
        for (int i = 0; i < answers.Length; i++)
            for (int r = 0; r < answers[i].Length; r++)
                if (answers[i][r].Status == KvStatus.ChecksumMismatch) again.Add((i, r));
        if (again.Count == 0) return;
        await Task.WhenAll(again.GroupBy(x => plan.Ranks[x.Index]![x.Rank]).Select(async group =>
        {
            var entries = group.ToArray();
            var sub = new GetBatch(entries.Select(e => batch.Keys[e.Index]).ToArray(), entries.Select(_ => ValueDestination.Allocating).ToArray())
            { WantVersions = true };
            var statuses = await RunAsync(plan.Slots[group.Key], entries.Length, async s =>
            {
                await s.GetCoreAsync(sub, ct).ConfigureAwait(false);
                return sub.Results.Select(r => r.Status).ToArray();
            }).ConfigureAwait(false);
            for (int j = 0; j < entries.Length; j++)
            {
                var (i, rank) = entries[j];
                if (statuses[j] != KvStatus.Ok || sub.Results[j].Status != KvStatus.Ok) continue;
                answers[i][rank] = new Answer(KvStatus.Ok, sub.Results[j].Length, sub.Versions[j], sub.Allocated[j]);
            }
        })).ConfigureAwait(false);
    }

    /// <summary>Copies a winner read by a lower-ranked replica (or read again) into the caller's destination.</summary>
    private static KvGetResult Deliver(GetBatch batch, int i, byte[] bytes)
    {
        var dest = batch.Destinations[i];
        if (dest.Allocate) { batch.Allocated[i] = bytes; return new KvGetResult(KvStatus.Ok, bytes.Length); }
        if (bytes.Length > dest.Capacity) return new KvGetResult(KvStatus.BufferTooSmall, bytes.Length);
        int at = 0;
        for (int p = 0; p < dest.PieceCount && at < bytes.Length; p++)
        {
            var piece = dest.Piece(p);
            int n = Math.Min(piece.Length, bytes.Length - at);
            bytes.AsSpan(at, n).CopyTo(piece.Span);
            at += n;
        }
        return new KvGetResult(KvStatus.Ok, bytes.Length);
    }

    /// <summary>The winner's bytes as a put source: its buffer, or the caller's destination (rank 0), trimmed to its length.</summary>
    private static ValueSource Source(GetBatch batch, int i, Answer winner)
    {
        if (winner.Bytes is { } bytes) return new ValueSource(bytes);
        if (batch.Allocated[i] is { } allocated) return new ValueSource(allocated);
        var dest = batch.Destinations[i];
        var pieces = new List<ReadOnlyMemory<byte>>();
        long left = winner.Length;
        for (int p = 0; p < dest.PieceCount && left > 0; p++)
        {
            var piece = dest.Piece(p);
            int n = (int)Math.Min(piece.Length, left);
            pieces.Add(piece[..n]);
            left -= n;
        }
        return new ValueSource(pieces);
    }

    /// <summary>
    /// Writes each winner back, with its version and its remaining time to live, to the replicas that missed it (one
    /// put per node and TTL, in parallel). GET carries no TTL: the winner's node is asked by INFO (a copy written back
    /// without one outlived the value); keys whose winner's TTL cannot be learnt (its node gone, the value expired since)
    /// are not repaired now.
    /// </summary>
    private async Task RepairAsync(GetBatch batch, Plan plan, Answer[][] answers, List<(int Index, int Rank, int Winner)> repairs, CancellationToken ct)
    {
        var ttls = new Dictionary<int, uint>();   // key index -> the winner's remaining TTL in whole seconds, 0: never expires
        await Task.WhenAll(repairs.Select(x => (x.Index, Node: plan.Ranks[x.Index]![x.Winner])).Distinct().GroupBy(x => x.Node).Select(async group =>
        {
            var keys = group.Select(x => x.Index).ToArray();
            var store = await plan.Slots[group.Key].GetStoreAsync(_options, ct).ConfigureAwait(false);
            if (store is null) return;
            KvKeyInfo[] infos;
            try { infos = await store.InfoAsync(keys.Select(i => batch.Keys[i]).ToArray(), ct).ConfigureAwait(false); }
            catch (KvasirException) { return; }
            lock (ttls)
                for (int j = 0; j < keys.Length; j++)
                    if (infos[j].Status == KvStatus.Ok) ttls[keys[j]] = infos[j].Ttl is { } ttl ? PutOptions.TtlSeconds(ttl) : 0;
        })).ConfigureAwait(false);
        await Task.WhenAll(repairs.Where(x => ttls.ContainsKey(x.Index)).GroupBy(x => (Node: plan.Ranks[x.Index]![x.Rank], Ttl: ttls[x.Index])).Select(async group =>
        {
            var items = group.ToArray();
            var put = new PutBatch(items.Select(x => batch.Keys[x.Index]).ToArray(),
                items.Select(x => Source(batch, x.Index, answers[x.Index][x.Winner])).ToArray())
            { Versions = items.Select(x => answers[x.Index][x.Winner].Version).ToArray() };
            var options = new PutOptions { Ttl = TimeSpan.FromSeconds(group.Key.Ttl) };
            var statuses = await RunAsync(plan.Slots[group.Key.Node], items.Length, s => s.PutCoreAsync(put, options, ct)).ConfigureAwait(false);
            Interlocked.Add(ref _repairs, statuses.Count(s => s == KvStatus.Ok));
        })).ConfigureAwait(false);
    }

    /// <summary>Keys that no replica had while some replica could not answer: asked again in rank order (with its last try).</summary>
    private async Task RetryInRankOrderAsync(GetBatch batch, List<int> keys, CancellationToken ct)
    {
        var sub = new GetBatch(keys.Select(i => batch.Keys[i]).ToArray(), keys.Select(i => batch.Destinations[i]).ToArray());
        await GetInRankOrderAsync(sub, ct).ConfigureAwait(false);
        for (int j = 0; j < keys.Count; j++)
        {
            batch.Results[keys[j]] = sub.Results[j];
            batch.Allocated[keys[j]] = sub.Allocated[j];
        }
    }
}
