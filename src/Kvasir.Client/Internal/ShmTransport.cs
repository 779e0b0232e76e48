using Kvasir.Net;
using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// A node on this host reached through its shared-memory arena (docs/protocol.md § Shared memory).
/// Control messages go over the wrapped <see cref="TcpTransport"/>'s authenticated connections;
/// value bytes are one copy between the caller's memory and the mapped arena. GET: LEASE, copy out,
/// RELEASE (its reply awaited only after a slow copy, below); a key the node answers OUT_OF_MEMORY (every lease slot
/// of the node held, or no arena space to stage a cold value in) is read over TCP. PUT: ALLOC, copy in, COMMIT (a chained put's COMMITs
/// carry the chain where the node grants feature 0x20; against an older node chained puts go over TCP). Everything
/// else goes over TCP unchanged. Leases and reservations belong to the connection
/// that took them, so each call keeps to one connection; a connection that breaks hands all of its
/// back on the node.
/// </summary>
/// <remarks>
/// <para>
/// Hazard: the node frees a lease or a reservation when its connection ends, and the space may then be
/// reused. Copies are skipped once the connection is known broken, and a GET whose connection broke
/// by the end of its copies reports Unavailable rather than bytes that may have changed under it; the
/// residual window is a break the reader has not noticed yet. A LEASE, ALLOC or COMMIT whose reply
/// this side gives up on (timeout, cancellation) cuts the connection, so that what it held on the
/// node is freed at once rather than after the node's lease timeout.
/// </para>
/// <para>
/// The node also expires leases and reservations after its lease timeout (SHM_INFO reports it; 30 s
/// by default, never under 1 s), counted from granting them (docs/protocol.md § Ownership and
/// timeouts). Copies that end within <see cref="TrustedCopyWindow"/> of sending LEASE or ALLOC are
/// trusted without asking. A GET whose
/// copies end later awaits RELEASE's reply and reports <see cref="KvStatus.Timeout"/> (its bytes
/// dropped) for each key whose lease the node no longer held. A PUT copies no value once the window has
/// passed: those keys report Timeout and are left out of COMMIT (the node aborts their reservations
/// when they expire); a key whose reservation expired before COMMIT reports Timeout too. Residual
/// window: one value's copy-in that starts inside the window and runs past the lease timeout (a thread
/// paused mid-copy for a tenth of it) may land in space the node already gave to another key.
/// </para>
/// </remarks>
internal sealed class ShmTransport(TcpTransport tcp, ShmMapping mapping) : IKvTransport
{
    /// <summary>
    /// The arena each pooled connection's node was seen to serve (SHM_INFO on the connection's first use), and the
    /// connection's arena proof when the node granted <see cref="ProtocolFeatures.ArenaProof"/> and the file has a secret.
    /// </summary>
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<ClientConnection, ArenaGrant> _arenaOf = new();

    private sealed record ArenaGrant(ShmMapping Mapping, byte[]? Proof);

    /// <summary>
    /// The bytes each connection may hold reserved (see <see cref="ReservationBudget"/>): one budget per connection, made
    /// atomically on its first put (two puts starting on a fresh connection at once must not each get their own).
    /// </summary>
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<ClientConnection, ReservationBudget> _budgets = new();

    /// <summary>The leases each connection may have in flight (<see cref="LeasesInFlight"/>), counted in keys.</summary>
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<ClientConnection, ReservationBudget> _leaseSlots = new();
    private ShmMapping _mapping = mapping;

    /// <summary>
    /// How long after sending LEASE or ALLOC a finished copy is trusted without the node's word: 90% of
    /// the node's lease timeout, the rest a margin for clock granularity and for the time between
    /// reading the clock and the last byte copied.
    /// </summary>
    internal TimeSpan TrustedCopyWindow => Volatile.Read(ref _mapping).LeaseTimeout * 0.9;

    /// <summary>Timestamps for <see cref="TrustedCopyWindow"/>. Tests substitute a clock that makes a copy look slow.</summary>
    internal TimeProvider Clock { get; init; } = TimeProvider.System;

    public NodeLimits Limits => tcp.Limits;

    public KvTransportKind Kind => KvTransportKind.Shm;

    public async Task GetAsync(GetBatch batch, int start, int end, CancellationToken ct)
    {
        // LEASE carries no version: a reader comparing replicas' versions reads over TCP.
        if (batch.WantVersions && tcp.SupportsVersions)
        {
            await tcp.GetAsync(batch, start, end, ct).ConfigureAwait(false);
            return;
        }
        int count = end - start;
        var connection = await tcp.GetConnectionAsync(ct).ConfigureAwait(false);
        if (connection is null)
        {
            LetGoIfNodeGone();
            FailGet(batch, start, count, KvStatus.Unavailable);
            return;
        }
        var arena = (await ArenaForAsync(connection, ct).ConfigureAwait(false))?.Mapping;
        if (arena is null)
        {
            await tcp.GetAsync(batch, start, end, ct).ConfigureAwait(false);
            return;
        }
        // Leases in flight on the connection stay within its bound: requests of one batch (or of threads sharing the
        // connection) that would hold more wait until earlier ones have sent their RELEASE.
        var slots = _leaseSlots.GetValue(connection, _ => new ReservationBudget(LeasesInFlight(tcp.Limits.MaxBatchKeys)));
        await slots.AcquireAsync(count, () => connection.IsBroken, ct).ConfigureAwait(false);
        List<int>? overTcp;
        try
        {
            overTcp = await LeaseAndCopyAsync(connection, arena, batch, start, end, ct).ConfigureAwait(false);
        }
        finally
        {
            slots.Release(count);
        }
        if (overTcp is not null) await GetOverTcpAsync(batch, overTcp, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Leases a connection keeps in flight at once (LEASE sent, RELEASE not yet): two requests of the node's largest batch,
    /// at most 32,768. A node closes a connection whose LEASE would take it past <c>--max-leases-per-connection</c>
    /// (65,536 by default); before, a batch of more keys than that (split into requests sent at once) lost the connection
    /// and every key of it. A node whose bound is below this number can still close a connection of big batches.
    /// </summary>
    internal static long LeasesInFlight(int maxBatchKeys) => Math.Clamp(2L * maxBatchKeys, 1, 32_768);

    /// <summary>LEASE for keys [start, end), the copies, RELEASE; returns the keys to read over TCP instead (or null).</summary>
    private async Task<List<int>?> LeaseAndCopyAsync(ClientConnection connection, ShmMapping arena, GetBatch batch, int start, int end, CancellationToken ct)
    {
        int count = end - start;
        var leaseMeta = TcpTransport.KeyBatchMeta(batch.Keys, start, end);
        long leaseSent = Clock.GetTimestamp();
        var (reply, failure) = await ControlAsync(connection, Opcode.Lease, leaseMeta, ct).ConfigureAwait(false);
        LeaseEntry[]? entries = null;
        if (reply is not null && !TryRead(connection, () => ShmMessages.ReadLeaseReply(reply), count, out entries)) failure = KvStatus.ProtocolError;
        if (entries is null)
        {
            FailGet(batch, start, count, failure);
            return null;
        }
        var ids = new List<ulong>(count);
        var owners = new List<int>(count);
        List<int>? overTcp = null;
        bool entered = arena.TryEnter();
        try
        {
            for (int i = 0; i < count; i++)
            {
                var e = entries[i];
                if (e.Status != WireStatus.Ok)
                {
                    batch.Results[start + i] = new KvGetResult(KvStatuses.FromWire(e.Status), 0);
                    // Every lease slot of the node is held (or a cold value found no arena space): read it over TCP.
                    if (e.Status == WireStatus.OutOfMemory) (overTcp ??= []).Add(start + i);
                    continue;
                }
                ids.Add(e.LeaseId);
                owners.Add(start + i);
                batch.Results[start + i] = entered && !connection.IsBroken ? CopyOut(arena, batch, start + i, e) : new KvGetResult(KvStatus.Unavailable, 0);
            }
        }
        finally
        {
            if (entered) arena.Exit();
        }
        await ReleaseLeasesAsync(connection, batch, start, end, ids, owners, leaseSent, ct).ConfigureAwait(false);
        return overTcp;
    }

    /// <summary>Reads the keys <paramref name="indexes"/> of <paramref name="batch"/> over TCP, into their own destinations.</summary>
    private async Task GetOverTcpAsync(GetBatch batch, List<int> indexes, CancellationToken ct)
    {
        var sub = new GetBatch(indexes.Select(k => batch.Keys[k]).ToArray(), indexes.Select(k => batch.Destinations[k]).ToArray());
        await tcp.GetAsync(sub, 0, indexes.Count, ct).ConfigureAwait(false);
        for (int j = 0; j < indexes.Count; j++)
        {
            batch.Results[indexes[j]] = sub.Results[j];
            batch.Allocated[indexes[j]] = sub.Allocated[j];
            batch.Versions[indexes[j]] = sub.Versions[j];
        }
    }

    /// <summary>
    /// After the copies of a GET: drops them if the connection broke, else sends RELEASE for the leases (<paramref name="ids"/>,
    /// of the keys <paramref name="owners"/>), and after a slow copy awaits its reply and drops keys whose lease had ended.
    /// </summary>
    private async Task ReleaseLeasesAsync(ClientConnection connection, GetBatch batch, int start, int end, List<ulong> ids, List<int> owners,
        long leaseSent, CancellationToken ct)
    {
        if (connection.IsBroken)
        {
            // The node may have dropped the leases while we copied: those bytes cannot be trusted.
            for (int k = start; k < end; k++)
                if (batch.Results[k].Status == KvStatus.Ok) { batch.Results[k] = new KvGetResult(KvStatus.Unavailable, 0); batch.Allocated[k] = null; }
            return;
        }
        if (ids.Count == 0) return;
        if (Clock.GetElapsedTime(leaseSent) < TrustedCopyWindow)
        {
            await SendIdsAsync(connection, Opcode.Release, ids, new MetaRequest(), CancellationToken.None).ConfigureAwait(false);
            return;
        }
        // A slow copy: only a lease the node still held at RELEASE guarantees the bytes did not change under it.
        var (statuses, releaseFailure) = await IdsCallAsync(connection, Opcode.Release, ids, ct).ConfigureAwait(false);
        for (int j = 0; j < owners.Count; j++)
        {
            int k = owners[j];
            if (batch.Results[k].Status != KvStatus.Ok || statuses?[j] == WireStatus.Ok) continue;
            batch.Results[k] = new KvGetResult(statuses is null ? releaseFailure : KvStatus.Timeout, 0);
            batch.Allocated[k] = null;
        }
    }

    /// <summary>
    /// Bytes copied out of the arena between two CRC updates when verifying: small enough that the CRC reads the chunk
    /// from L2 right after the copy wrote it, large enough that the per-call overhead vanishes.
    /// </summary>
    internal const int VerifyChunk = 256 * 1024;

    /// <summary>
    /// One leased value into its destination; the caller holds <paramref name="arena"/>. With <see cref="TcpTransport.Check"/>
    /// enabled each chunk is checksummed right after its copy (the caller's bytes, not the arena's, are what is checked) and
    /// a mismatch with the node's CRC is <see cref="KvStatus.ChecksumMismatch"/>.
    /// </summary>
    private KvGetResult CopyOut(ShmMapping arena, GetBatch batch, int k, LeaseEntry e)
    {
        if (!arena.Contains(e.Offset, e.Length)) return new KvGetResult(KvStatus.ProtocolError, 0);
        long length = (long)e.Length;
        var dest = batch.Destinations[k];
        if (length > dest.Capacity) return new KvGetResult(KvStatus.BufferTooSmall, length);
        var check = tcp.Check;
        uint crc = Crc32C.InitialState;
        if (dest.Allocate)
        {
            if (length > Array.MaxLength) return new KvGetResult(KvStatus.BufferTooSmall, length);
            var value = GC.AllocateUninitializedArray<byte>((int)length);
            if (check.Enabled) crc = CopyOutChecked(arena, e.Offset, value, crc);
            else arena.CopyOut(e.Offset, value);
            batch.Allocated[k] = value;
        }
        else
        {
            ulong at = e.Offset;
            long left = length;
            for (int p = 0; p < dest.PieceCount && left > 0; p++)
            {
                var piece = dest.Piece(p).Span;
                int n = (int)Math.Min(piece.Length, left);
                if (check.Enabled) crc = CopyOutChecked(arena, at, piece[..n], crc);
                else arena.CopyOut(at, piece[..n]);
                at += (ulong)n;
                left -= n;
            }
        }
        if (check.Enabled && !check.Matches(crc, e.Crc32C, batch.Keys[k].Span, length, tcp.Address, KvTransportKind.Shm))
        {
            batch.Allocated[k] = null;
            return new KvGetResult(KvStatus.ChecksumMismatch, 0);
        }
        return new KvGetResult(KvStatus.Ok, length);
    }

    /// <summary>Copies <paramref name="destination"/>'s length from the arena in <see cref="VerifyChunk"/> pieces, each checksummed right after its copy.</summary>
    private static uint CopyOutChecked(ShmMapping arena, ulong offset, Span<byte> destination, uint crc)
    {
        for (int done = 0; done < destination.Length; done += VerifyChunk)
        {
            var chunk = destination.Slice(done, Math.Min(VerifyChunk, destination.Length - done));
            arena.CopyOut(offset + (ulong)done, chunk);
            crc = Crc32C.Append(crc, chunk);
        }
        return crc;
    }

    public async Task PutAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, CancellationToken ct)
    {
        // A versioned value needs PUT's VERSION flag, which ALLOC does not carry; ALLOC carries a TTL only on a node that grants
        // the arena proof feature too (an older node refuses TTL on ALLOC); a chain goes with the COMMITs on a node granting 0x20.
        if (batch.Versions is not null && tcp.SupportsVersions)
        {
            await tcp.PutAsync(batch, start, end, chain, parent, hasParent, ct).ConfigureAwait(false);
            return;
        }
        int count = end - start;
        var connection = await tcp.GetConnectionAsync(ct).ConfigureAwait(false);
        if (connection is null)
        {
            LetGoIfNodeGone();
            Array.Fill(batch.Results, KvStatus.Unavailable, start, count);
            return;
        }
        var grant = await ArenaForAsync(connection, ct).ConfigureAwait(false);
        bool arenaProof = (connection.Features & ProtocolFeatures.ArenaProof) != 0;
        if (grant is null || (batch.TtlSeconds is not null && !(arenaProof && tcp.SupportsTtl))
            || (chain && (connection.Features & ProtocolFeatures.CommitChain) == 0))
        {
            await tcp.PutAsync(batch, start, end, chain, parent, hasParent, ct).ConfigureAwait(false);
            return;
        }
        // With the arena proof: the node skips zeroing (MAPPED) and takes the writer's CRCs on COMMIT when this store sends them.
        bool commitCrcs = arenaProof && (connection.Features & ProtocolFeatures.ValueCrc) != 0;
        if (commitCrcs) batch.ComputeCrcs(start, end);
        // Pieces of keys within the connection's reservation budget, one ALLOC → copies → COMMIT each; keys the node refused
        // for the connection's share are asked for again once the piece that held the space is committed.
        var budget = _budgets.GetValue(connection, _ => new ReservationBudget(grant.Mapping.Length / 4, Clock));
        // Ranges of keys still to store, the next one on top: the batch's keys are stored in order, so a chain's piece
        // always continues a key stored (or failed) before it. (Before, a queue: the rest of a split range went behind the
        // ranges after it, and the keys after the refused ones were stored before the keys they continue.)
        var todo = new Stack<(int Start, int End)>();
        todo.Push((start, end));
        while (todo.Count > 0)
        {
            var (from, to) = todo.Pop();
            int stop = from + 1;
            long bytes = batch.Values[from].Length;
            while (stop < to && bytes + batch.Values[stop].Length <= budget.Limit) bytes += batch.Values[stop++].Length;
            if (stop < to) todo.Push((stop, to));
            long others = await budget.AcquireAsync(bytes, () => connection.IsBroken, ct).ConfigureAwait(false);
            List<int> again;
            try
            {
                // A piece of a chain continues the key before it (the caller's parent for the batch's first key).
                var link = !chain ? null : from > start ? new ChainLink(batch.Keys[from - 1]) : new ChainLink(hasParent ? parent : null);
                again = await PutPieceAsync(connection, grant, budget, batch, from, stop, others, commitCrcs, link, ct).ConfigureAwait(false);
            }
            finally
            {
                budget.Release(bytes);
            }
            // The refused keys go before the rest of the batch, the first run on top: a chain's next piece continues the
            // key before it, which must be stored first (asked for after the rest, the refused keys left the chain broken
            // at both ends).
            for (int i = again.Count; i > 0;)
            {
                int run = i - 1;
                while (run > 0 && again[run - 1] == again[run] - 1) run--;
                todo.Push((again[run], again[i - 1] + 1));
                i = run;
            }
        }
    }

    /// <summary>
    /// ALLOC for keys [start, end), the copies into the arena, COMMIT; results into the batch. Returns the keys refused for
    /// the connection's reservation share (OUT_OF_MEMORY while <paramref name="others"/> or earlier keys of this piece held
    /// space), whose results are left for the caller's next try.
    /// </summary>
    private async Task<List<int>> PutPieceAsync(ClientConnection connection, ArenaGrant grant, ReservationBudget budget, PutBatch batch, int start, int end, long others,
        bool commitCrcs, ChainLink? link, CancellationToken ct)
    {
        int count = end - start;
        var arena = grant.Mapping;
        bool mapped = grant.Proof is not null;
        var meta = new byte[ShmMessages.AllocRequestSize(batch.Keys, start, count) + ShmMessages.AllocSuffixSize(batch.TtlSeconds is not null, mapped)];
        var w = new MetaWriter(meta);
        w.U32((uint)count);
        for (int i = start; i < end; i++) ShmMessages.WriteAllocEntry(ref w, batch.Keys[i].Span, batch.Values[i].Length);
        ShmMessages.WriteAllocSuffix(ref w, batch.TtlSeconds, grant.Proof);
        var allocFlags = (batch.TtlSeconds is not null ? FrameFlags.Ttl : 0) | (mapped ? FrameFlags.Mapped : 0);
        long allocSent = Clock.GetTimestamp();
        var (reply, failure) = await ControlAsync(connection, Opcode.Alloc, meta, ct, allocFlags).ConfigureAwait(false);
        AllocEntry[]? entries = null;
        if (reply is not null && !TryRead(connection, () => ShmMessages.ReadAllocReply(reply), count, out entries)) failure = KvStatus.ProtocolError;
        var again = new List<int>();
        if (entries is null)
        {
            Array.Fill(batch.Results, failure, start, count);
            return again;
        }
        long held = others;
        long accepted = -1;
        var ids = new List<ulong>(count);
        var owners = new List<int>(count);
        bool late = false;
        bool entered = arena.TryEnter();
        try
        {
            for (int i = 0; i < count; i++)
            {
                var e = entries[i];
                int k = start + i;
                var value = batch.Values[k];
                if (e.Status == WireStatus.Ok) held += value.Length;
                // A reservation left uncommitted here is aborted by the node when this connection ends or its lease timeout passes.
                if (e.Status == WireStatus.OutOfMemory && held > 0)
                {
                    if (accepted < 0) accepted = held;
                    again.Add(k);
                }
                else if (e.Status != WireStatus.Ok) batch.Results[k] = KvStatuses.FromWire(e.Status);
                else if (!entered || connection.IsBroken) batch.Results[k] = KvStatus.Unavailable;
                else if (!arena.Contains(e.Offset, (ulong)value.Length)) batch.Results[k] = KvStatus.ProtocolError;
                else if (late || (late = Clock.GetElapsedTime(allocSent) >= TrustedCopyWindow)) batch.Results[k] = KvStatus.Timeout;   // the node may have given this space away
                else
                {
                    ulong at = e.Offset;
                    for (int p = 0; p < value.PieceCount; p++)
                    {
                        var piece = value.Piece(p).Span;
                        arena.CopyIn(at, piece);
                        at += (ulong)piece.Length;
                    }
                    ids.Add(e.ReservationId);
                    owners.Add(k);
                }
            }
        }
        finally
        {
            if (entered) arena.Exit();
        }
        if (accepted >= 0) budget.Learn(accepted);
        if (ids.Count == 0) return again;
        var crcs = commitCrcs ? owners.Select(k => batch.Crcs![k]).ToList() : null;
        // A chain: each run of consecutive keys is one COMMIT continuing the key before it (the link's parent for the
        // piece's first key), so a key that failed or was not copied ends a run as a refused entry does in a chained PUT;
        // the usual piece, every key copied, is one COMMIT. Without a chain every id goes in one COMMIT. A key refused for
        // the share with copied keys after it (a smaller value fitted where it did not) is stored before them: as a
        // chained PUT over the socket, in its place between the COMMITs (asked for again after them, it left the key after
        // it continuing a key not yet stored, a root in the middle of the chain). Refused keys past the last copied one
        // are asked for again by the caller, before the rest of the batch.
        for (int j = 0; j < owners.Count;)
        {
            // again is in key order, and holds no key before the previous run's first one by now.
            while (link is not null && again.Count > 0 && again[0] < owners[j])
            {
                int from = again[0], to = from + 1;
                again.RemoveAt(0);
                while (again.Count > 0 && again[0] == to) { again.RemoveAt(0); to++; }
                var before = from == start ? link.Parent : batch.Keys[from - 1];
                await tcp.PutAsync(batch, from, to, true, before ?? default, before is not null, ct).ConfigureAwait(false);
            }
            int n = 1;
            if (link is null) n = owners.Count;
            else while (j + n < owners.Count && owners[j + n] == owners[j + n - 1] + 1) n++;
            var runLink = link is null ? null : owners[j] == start ? link : new ChainLink(batch.Keys[owners[j] - 1]);
            var runIds = n == ids.Count ? ids : ids.GetRange(j, n);
            var runCrcs = crcs is null || n == crcs.Count ? crcs : crcs.GetRange(j, n);
            var (statuses, commitFailure) = await IdsCallAsync(connection, Opcode.Commit, runIds, ct, runCrcs, runLink).ConfigureAwait(false);
            // NOT_FOUND: the node no longer held the reservation (this side sends only ids it got), so it expired.
            for (int r = 0; r < n; r++)
                batch.Results[owners[j + r]] = statuses is null ? commitFailure : statuses[r] == WireStatus.NotFound ? KvStatus.Timeout : KvStatuses.FromWire(statuses[r]);
            j += n;
        }
        return again;
    }

    public Task KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end, KvStatus[] results, CancellationToken ct)
        => tcp.KeyOpAsync(op, keys, start, end, results, ct);

    public Task<List<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct) => tcp.StatsAsync(ct);

    public bool SupportsTtl => tcp.SupportsTtl;

    public long ChecksumMismatches => tcp.ChecksumMismatches;

    public Task<byte[]> KeyRequestAsync(Opcode op, byte[] meta, CancellationToken ct) => tcp.KeyRequestAsync(op, meta, ct);

    public Task PingAsync(CancellationToken ct) => tcp.PingAsync(ct);

    /// <summary>
    /// The mapping of the arena the node behind <paramref name="connection"/> serves, or null when it cannot be mapped
    /// now (the caller then uses TCP). A pooled connection opened after the node restarted at the same address talks
    /// to a new arena (a new file and token): LEASE and ALLOC offsets name that arena, so copies through the old
    /// mapping would read another value's bytes and write where the node never looks. Each connection therefore asks
    /// SHM_INFO on its first use here; a new token maps the new arena and retires the old mapping (unmapped once its
    /// copies in flight are over). Found by FailoverTests.A_value_on_one_live_replica_is_read_although_that_node_just_restarted_and_the_other_replica_misses.
    /// </summary>
    private async Task<ArenaGrant?> ArenaForAsync(ClientConnection connection, CancellationToken ct)
    {
        var current = Volatile.Read(ref _mapping);
        if (_arenaOf.TryGetValue(connection, out var known) && ReferenceEquals(known.Mapping, current) && !current.IsDisposed) return known;
        var (reply, _) = await ControlAsync(connection, Opcode.ShmInfo, [], ct).ConfigureAwait(false);
        if (reply is null || !TryRead<ShmInfoReply>(connection, () => [ShmInfoReply.Read(reply)], 1, out var infos)) return null;
        var info = infos![0];
        // A mapping let go of (LetGoIfNodeGone) whose node answers again, still at that arena (an older node without a
        // lock file, which the rule cannot tell from a dead one), is mapped again.
        if (!current.Serves(info) || current.IsDisposed)
        {
            ShmMapping fresh;
            try { fresh = ShmMapping.Open(info); }
            catch (KvasirException) { return null; }
            var seen = Interlocked.CompareExchange(ref _mapping, fresh, current);
            if (ReferenceEquals(seen, current)) LetGo(current);
            else fresh.Dispose();
            current = Volatile.Read(ref _mapping);
            if (!current.Serves(info)) return null;
        }
        byte[]? proof = info.Challenge is { } challenge && current.Secret is { } secret ? ArenaProof.Compute(secret, challenge) : null;
        var grant = new ArenaGrant(current, proof);
        _arenaOf.AddOrUpdate(connection, grant);
        return grant;
    }

    /// <summary>
    /// The node cannot be reached (no connection could be opened): unless its arena's lock is held (a live node, slow
    /// or stopped, keeps the mapping), unmaps the arena, and removes its files if the node is dead
    /// (<see cref="ArenaFiles.TryRemoveIfDead"/>). Its tmpfs memory is freed only when no process maps it any more,
    /// so a client that kept the mapping of a killed node's arena kept gigabytes of /dev/shm in use. A node that answers
    /// again is mapped again by <see cref="ArenaForAsync"/>. Found by ShmDeadNodeTests.
    /// </summary>
    private void LetGoIfNodeGone()
    {
        var current = Volatile.Read(ref _mapping);
        if (current.IsDisposed || !OperatingSystem.IsLinux()) return;
        if (ArenaFiles.TryRemoveIfDead(current.Path) != ArenaOwner.Live) current.Dispose();
    }

    /// <summary>Unmaps a mapping this transport no longer uses and removes its arena's files if their node is dead.</summary>
    private static void LetGo(ShmMapping mapping)
    {
        bool wasMapped = !mapping.IsDisposed;
        mapping.Dispose();
        if (wasMapped && OperatingSystem.IsLinux()) ArenaFiles.TryRemoveIfDead(mapping.Path);
    }

    /// <summary>Sends a LEASE or ALLOC and waits for its reply metadata, or the status its keys report instead.</summary>
    private async Task<(byte[]? Meta, KvStatus Failure)> ControlAsync(ClientConnection connection, Opcode op, byte[] meta, CancellationToken ct,
        FrameFlags flags = FrameFlags.None)
    {
        var request = new MetaRequest();
        await connection.SendAsync(request, op, flags, meta, meta.Length, null, 0, 0, ct).ConfigureAwait(false);
        return await WaitControlAsync(connection, request, ct).ConfigureAwait(false);
    }

    private async Task<(byte[]? Meta, KvStatus Failure)> WaitControlAsync(ClientConnection connection, MetaRequest request, CancellationToken ct)
    {
        bool inTime;
        try
        {
            inTime = await connection.WaitAsync(request, tcp.RequestTimeout, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            connection.Abort();   // its late reply would hold arena space until the node's lease timeout
            throw;
        }
        if (!inTime)
        {
            connection.Abort();
            return (null, KvStatus.Timeout);
        }
        return request.Status == KvStatus.Ok ? (request.Meta, KvStatus.Ok) : (null, request.Status);
    }

    /// <summary>
    /// RELEASE or COMMIT with its reply awaited: a status per id, or why there is none. COMMIT may carry the writer's
    /// <paramref name="crcs"/> and a <paramref name="chain"/> (its ids one chain, continuing the link's parent if it has one).
    /// </summary>
    private async Task<(WireStatus[]? Statuses, KvStatus Failure)> IdsCallAsync(ClientConnection connection, Opcode op, List<ulong> ids, CancellationToken ct,
        List<uint>? crcs = null, ChainLink? chain = null)
    {
        var request = new MetaRequest();
        var parent = chain?.Parent is { } p ? p.Span : default;
        bool hasParent = chain?.Parent is not null;
        int size = (crcs is null ? ShmMessages.IdListSize(ids.Count) : ShmMessages.CommitCrcRequestSize(ids.Count))
            + (hasParent ? ShmMessages.CommitParentSize(parent) : 0);
        var meta = new byte[size];
        var w = new MetaWriter(meta);
        var idSpan = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids);
        if (crcs is null) ShmMessages.WriteIdList(ref w, idSpan);
        else ShmMessages.WriteCommitCrcs(ref w, idSpan, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(crcs));
        if (hasParent) ShmMessages.WriteCommitParent(ref w, parent);
        var flags = (crcs is null ? FrameFlags.None : FrameFlags.CommitCrc)
            | (chain is null ? FrameFlags.None : FrameFlags.Chain | (hasParent ? FrameFlags.ChainParent : FrameFlags.None));
        await connection.SendAsync(request, op, flags, meta, meta.Length, null, 0, 0, ct).ConfigureAwait(false);
        var (reply, failure) = await WaitControlAsync(connection, request, ct).ConfigureAwait(false);
        WireStatus[]? statuses = null;
        if (reply is not null && !TryRead(connection, () => StatusListReply.Read(reply, ids.Count), ids.Count, out statuses)) failure = KvStatus.ProtocolError;
        return (statuses, failure);
    }

    /// <summary>RELEASE or COMMIT: u32 count and the ids. The caller decides whether to wait for <paramref name="request"/>.</summary>
    private static Task SendIdsAsync(ClientConnection connection, Opcode op, List<ulong> ids, MetaRequest request, CancellationToken ct)
    {
        var meta = new byte[ShmMessages.IdListSize(ids.Count)];
        var w = new MetaWriter(meta);
        ShmMessages.WriteIdList(ref w, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids));
        return connection.SendAsync(request, op, FrameFlags.None, meta, meta.Length, null, 0, 0, ct);
    }

    /// <summary>
    /// Parses a reply and checks it has one entry per key. A malformed reply means the stream cannot be
    /// trusted: the connection is cut, which also frees whatever the reply granted on the node.
    /// </summary>
    private static bool TryRead<T>(ClientConnection connection, Func<T[]> read, int count, out T[]? entries)
    {
        try
        {
            entries = read();
            if (entries.Length == count) return true;
        }
        catch (ProtocolException)
        {
        }
        entries = null;
        connection.Abort();
        return false;
    }

    private static void FailGet(GetBatch batch, int start, int count, KvStatus status)
    {
        for (int k = start; k < start + count; k++) batch.Results[k] = new KvGetResult(status, 0);
    }

    public async ValueTask DisposeAsync()
    {
        await tcp.DisposeAsync().ConfigureAwait(false);
        LetGo(Volatile.Read(ref _mapping));
    }
}

/// <summary>A chained put's piece: its COMMIT carries flag CHAIN, and CHAIN_PARENT with <see cref="Parent"/> when there is one.</summary>
internal sealed record ChainLink(ReadOnlyMemory<byte>? Parent);
