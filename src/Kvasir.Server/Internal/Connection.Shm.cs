using System.Buffers;
using System.Security.Cryptography;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server.Internal;

/// <summary>
/// The shared-memory transport's handlers (docs/protocol.md § Shared memory): control over this
/// socket, payload bytes through the mapped arena. Leases and reservations taken here belong to the
/// connection: its end (the client closed or died) releases and aborts them all; a lease the client
/// holds past the lease timeout (30 s by default — a copy takes milliseconds) is released by the
/// store's reaper, and a reservation older than that is aborted by a timer, so a stuck client leaks
/// nothing either; RELEASE and COMMIT then answer NOT_FOUND for them, so that client knows not to
/// trust its copy. Expired leases also leave the connection's table (a sweep each second), a connection may hold at
/// most <see cref="NodeOptions.MaxLeasesPerConnection"/> leases and <see cref="NodeOptions.MaxReservedBytesPerConnection"/>
/// reserved bytes, and every reservation is zeroed before the client gets it: a client that commits bytes it did
/// not write (it may not be able to open the arena file) publishes zeros, never a removed value's bytes. A client that
/// proves it read the arena file (ALLOC flag MAPPED, <see cref="ArenaProof"/>) could read those bytes anyway: its
/// reservations are not zeroed, and a COMMIT of them without the writer's CRCs leaves the CRC to the first read.
/// </summary>
internal sealed partial class Connection
{
    private readonly Lock _shmLock = new();
    private readonly Dictionary<ulong, ValueLease> _shmLeases = [];
    private readonly Dictionary<ulong, (Reservation Reservation, long Deadline, bool Mapped)> _shmReservations = [];
    private byte[]? _arenaChallenge;
    private ulong _nextShmId;
    private long _reservedBytes;
    private Timer? _shmReaper;

    private long ArenaOffset(nint address) => address - _store.ArenaBase;

    private void RequireShm()
    {
        if (_node.ShmToken is null)
            throw new ProtocolException(WireStatus.BadState, "this node has no shared-memory arena (started with --shm off)");
    }

    /// <summary>
    /// SHM_INFO never fails: a node without a shared-memory arena answers an empty path (use TCP). With
    /// <see cref="ProtocolFeatures.ArenaProof"/> granted the reply ends with this connection's challenge (the same every
    /// time it asks; zeros without an arena).
    /// </summary>
    private Reply ShmInfo(in FrameHeader h)
    {
        byte[]? challenge = null;
        if ((_features & ProtocolFeatures.ArenaProof) != 0)
            challenge = _node.ArenaSecret is null ? new byte[ArenaProof.ChallengeBytes] : _arenaChallenge ??= RandomNumberGenerator.GetBytes(ArenaProof.ChallengeBytes);
        var info = _node.ShmToken is null
            ? new ShmInfoReply("", 0, new byte[ShmInfoReply.TokenBytes], 0, challenge)
            : new ShmInfoReply(_store.SharedMemoryPath!, (ulong)_store.Options.Capacity, _node.ShmToken,
                (uint)Math.Min(uint.MaxValue, _store.Options.LeaseTimeout.TotalMilliseconds), challenge);
        var r = NewReply(h, WireStatus.Ok, info.Size, 0, out var span);
        var w = new MetaWriter(span);
        info.Write(ref w);
        CountRequest(Opcode.ShmInfo, 0);
        return r;
    }

    private async ValueTask LeaseAsync(FrameHeader h, byte[] meta)
    {
        RequireShm();
        var ranges = KeyRanges(meta, h.MetaLength, out int count);
        int held;
        lock (_shmLock) held = _shmLeases.Count;
        if (held + count > _node.Options.MaxLeasesPerConnection)
        {
            ArrayPool<(int, int)>.Shared.Return(ranges);
            throw new ProtocolException(WireStatus.LimitExceeded,
                $"this connection holds {held} leases (limit {_node.Options.MaxLeasesPerConnection}) and asked for {count} more: RELEASE the leases it has copied");
        }
        var entries = ArrayPool<LeaseEntry>.Shared.Rent(Math.Max(1, count));
        try
        {
            for (int i = 0; i < count; i++)
            {
                var key = meta.AsMemory(ranges[i].Offset, ranges[i].Length);
                _node.Heatmap.Record(key.Span);
                var found = ValidKey(key.Span) ? await _store.LeaseAsync(key, null, arenaOnly: true).ConfigureAwait(false) : new LeaseResult(WireStatus.InvalidKey, null);
                var (status, lease) = found;
                if (status != WireStatus.InvalidKey) _node.AccessStats.Record(key.Span, lease is not null, found.Tier, lease?.Length ?? 0);
                if (lease is null)
                {
                    entries[i] = new LeaseEntry(status == WireStatus.Ok ? WireStatus.NotFound : status, 0, 0, 0, 0);
                    continue;
                }
                if (!_node.TryTakeLeaseSlot())
                {
                    // Every node-wide lease slot is held (by many clients): this key is answered as TCP-only for now.
                    _store.Release(lease);
                    entries[i] = new LeaseEntry(WireStatus.OutOfMemory, 0, 0, 0, 0);
                    continue;
                }
                ulong id;
                lock (_shmLock)
                {
                    id = ++_nextShmId;
                    _shmLeases[id] = lease;
                    StartShmReaper();
                }
                entries[i] = new LeaseEntry(WireStatus.Ok, (ulong)ArenaOffset(lease.Address), (ulong)lease.Length, lease.Crc32C, id);
                _node.Counters.ValueOut(NodeTransport.Shm, Opcode.Lease, lease.Length);
            }
            var r = NewReply(h, WireStatus.Ok, ShmMessages.LeaseReplySize(count), 0, out var span);
            WriteLeaseEntries(span, entries, count);
            CountRequest(Opcode.Lease, count);
            await QueueAsync(r).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<(int, int)>.Shared.Return(ranges);
            ArrayPool<LeaseEntry>.Shared.Return(entries);
        }
    }

    private static void WriteLeaseEntries(Span<byte> span, LeaseEntry[] entries, int count)
    {
        var w = new MetaWriter(span);
        w.U32((uint)count);
        for (int i = 0; i < count; i++) ShmMessages.WriteLeaseEntry(ref w, entries[i]);
    }

    private Reply Release(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        var ids = ShmMessages.ReadIdList(meta, _node.Options.MaxBatchKeys);
        var r = NewReply(h, WireStatus.Ok, StatusListReply.Size(ids.Length), 0, out var span);
        var w = new MetaWriter(span);
        w.U32((uint)ids.Length);
        foreach (var id in ids) w.U8((byte)(ReleaseShmLease(id) ? WireStatus.Ok : WireStatus.NotFound));
        CountRequest(Opcode.Release, ids.Length);
        return r;
    }

    private Reply Alloc(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        RequireShm();
        var (ttl, mapped) = AllocSuffix(h.Flags, ref meta);
        var reader = new MetaReader(meta);
        uint count = reader.U32();
        if (count > (uint)_node.Options.MaxBatchKeys)
            throw new ProtocolException(WireStatus.BatchTooLarge, $"{count} keys exceed the batch limit of {_node.Options.MaxBatchKeys}");
        var r = NewReply(h, WireStatus.Ok, ShmMessages.AllocReplySize((int)count), 0, out var span);
        var w = new MetaWriter(span);
        w.U32(count);
        var statuses = new WireStatus[count];
        var reservations = new Reservation?[count];
        long zeroBytes = 0;
        try
        {
            for (int i = 0; i < count; i++)
            {
                var key = reader.Key();
                long length = (long)Math.Min(reader.U64(), long.MaxValue);
                // A connection's reservations may evict at most its share of the arena, never all of it.
                Reservation? reservation = null;
                long reserved;
                lock (_shmLock) reserved = _reservedBytes;
                var status = reserved + length > _node.Options.ReservedBytesPerConnection && length <= _store.Options.MaxValueBytes
                    ? WireStatus.OutOfMemory
                    : TryReserve(key, length, out reservation);
                statuses[i] = status;
                if (status != WireStatus.Ok) continue;
                reservations[i] = reservation;
                reservation!.Ttl = ttl;
                zeroBytes += reservation.Length;
                lock (_shmLock) _reservedBytes += reservation.Length;   // counted at once: the per-connection bound sees it
            }
            reader.End();
            if (mapped) zeroBytes = 0;   // the client can read these bytes already: zeroing them protects nothing
            // Zeroed before the reservations are registered (the reaper cannot abort one mid-zero); a large batch on
            // several cores, as COMMIT's CRCs (a GPU store reserves gigabytes in a few ALLOCs).
            if (zeroBytes >= ParallelCrcBytes && count > 1)
                Parallel.For(0, (int)count, ShmParallelism, i => reservations[i]?.Clear());
            else if (!mapped)
                foreach (var res in reservations) res?.Clear();
        }
        catch
        {
            AbortUnregistered(reservations);
            throw;
        }
        long deadline = Environment.TickCount64 + (long)_store.Options.LeaseTimeout.TotalMilliseconds;
        for (int i = 0; i < count; i++)
        {
            if (reservations[i] is not { } reservation)
            {
                ShmMessages.WriteAllocEntry(ref w, new AllocEntry(statuses[i], 0, 0));
                continue;
            }
            ulong id;
            lock (_shmLock)
            {
                id = ++_nextShmId;
                _shmReservations[id] = (reservation, deadline, mapped);
                StartShmReaper();
            }
            ShmMessages.WriteAllocEntry(ref w, new AllocEntry(WireStatus.Ok, (ulong)ArenaOffset(reservation.Address), id));
        }
        CountRequest(Opcode.Alloc, (int)count);
        return r;
    }

    /// <summary>
    /// Takes an ALLOC's suffix off <paramref name="meta"/> (it follows the variable-length entries, so it is read from the
    /// end, before anything is reserved): the time to live with TTL, the arena proof with MAPPED, checked here.
    /// </summary>
    private (TimeSpan? Ttl, bool Mapped) AllocSuffix(FrameFlags flags, ref ReadOnlySpan<byte> meta)
    {
        bool hasTtl = (flags & FrameFlags.Ttl) != 0, mapped = (flags & FrameFlags.Mapped) != 0;
        int size = ShmMessages.AllocSuffixSize(hasTtl, mapped);
        if (meta.Length < 4 + size)
            throw new ProtocolException(WireStatus.BadFrame, $"ALLOC metadata of {meta.Length} bytes is too short for its count and {size} bytes of TTL/proof");
        var suffix = new MetaReader(meta[^size..]);
        meta = meta[..^size];
        TimeSpan? ttl = hasTtl ? TimeSpan.FromSeconds(suffix.U32()) : null;
        if (mapped && (_arenaChallenge is null || !ArenaProof.Verify(_node.ArenaSecret!, _arenaChallenge, suffix.Bytes(ArenaProof.ProofBytes))))
            throw new ProtocolException(WireStatus.BadFrame, _arenaChallenge is null
                ? "ALLOC with MAPPED before SHM_INFO gave this connection its challenge: send SHM_INFO first"
                : "ALLOC's arena proof is wrong: HMAC-SHA256 of this connection's challenge keyed by the 32 bytes at offset arena_length of the arena file");
        return (ttl, mapped);
    }

    /// <summary>Gives back an ALLOC's reservations that were never registered (its metadata turned out bad).</summary>
    private void AbortUnregistered(Reservation?[] reservations)
    {
        foreach (var res in reservations)
        {
            if (res is null) continue;
            lock (_shmLock) _reservedBytes -= res.Length;
            _store.Abort(res);
        }
    }

    /// <summary>Below this many bytes in one COMMIT (or ALLOC) the CRCs (or zeroing) run on the connection's own thread.</summary>
    private const long ParallelCrcBytes = 16L << 20;

    /// <summary>Cores for a large COMMIT's CRCs or ALLOC's zeroing: all but one, at least two.</summary>
    private static readonly ParallelOptions ShmParallelism = new() { MaxDegreeOfParallelism = Math.Max(2, Environment.ProcessorCount - 1) };

    /// <summary>
    /// COMMIT publishes each reservation (disk tier first, as for PUT) with its CRC-32C from one of three places: the
    /// writer's, sent with the ids (flag COMMIT_CRC), stored unchecked and checked lazily as a PUT's VALUE_CRC; owed, for
    /// a reservation of a client that proved it maps the arena (computed at the first read or tier write); else
    /// computed here over the bytes the client wrote — a large batch on several cores (a GPU writes the arena at tens
    /// of GB/s; one core checksums at about a third of that).
    /// </summary>
    private async ValueTask CommitAsync(FrameHeader h, byte[] meta)
    {
        var (ids, writerCrcs, chainParent) = ShmMessages.ReadCommitRequest(meta.AsSpan(0, h.MetaLength), _node.Options.MaxBatchKeys,
            (h.Flags & FrameFlags.CommitCrc) != 0, (h.Flags & FrameFlags.ChainParent) != 0);
        bool chain = (h.Flags & FrameFlags.Chain) != 0;
        var reservations = new Reservation?[ids.Length];
        var owed = new bool[ids.Length];
        long bytes = 0;
        lock (_shmLock)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                if (!_shmReservations.Remove(ids[i], out var entry)) continue;
                reservations[i] = entry.Reservation;
                owed[i] = entry.Mapped && writerCrcs is null;
                if (writerCrcs is null && !entry.Mapped) bytes += entry.Reservation.Length;
                _reservedBytes -= entry.Reservation.Length;
            }
        }
        var crcs = writerCrcs ?? new uint[ids.Length];
        bool compute(int i) => writerCrcs is null && !owed[i] && reservations[i] is not null;
        if (bytes >= ParallelCrcBytes && ids.Length > 1)
        {
            Parallel.For(0, ids.Length, ShmParallelism, i => { if (compute(i)) crcs[i] = Crc32C.Compute(reservations[i]!.Span); });
        }
        else
        {
            for (int i = 0; i < ids.Length; i++)
                if (compute(i)) crcs[i] = Crc32C.Compute(reservations[i]!.Span);
        }
        // Every value goes to the store at once (their disk writes queue back to back), then the reply waits for all.
        // A chain (flag CHAIN) is published in id order, each value after the one it continues, as a chained PUT's; a
        // value whose predecessor's id was unknown starts without a parent (its place in the chain is not known).
        var commits = new Task<WireStatus>?[ids.Length];
        byte[]? parent = chainParent;
        Task? previous = null;
        for (int i = 0; i < ids.Length; i++)
        {
            if (reservations[i] is not { } reservation)
            {
                parent = null;
                continue;
            }
            _node.Counters.In(Opcode.Commit, reservation.Length);
            _node.Counters.ValueIn(NodeTransport.Shm, Opcode.Commit, reservation.Length);
            byte[]? linkTo = chain ? parent : null;
            Task? after = chain ? previous : null;
            commits[i] = owed[i] ? _store.CommitCrcOwedAsync(reservation, linkTo, after)
                : _store.CommitAsync(reservation, crcs[i], linkTo, after, writerCrc: writerCrcs is not null);
            if (chain) parent = reservation.KeySpan.ToArray();
            previous = commits[i];
        }
        var statuses = new WireStatus[ids.Length];
        for (int i = 0; i < ids.Length; i++)
            statuses[i] = commits[i] is { } commit ? await commit.ConfigureAwait(false) : WireStatus.NotFound;
        var r = NewReply(h, WireStatus.Ok, StatusListReply.Size(ids.Length), 0, out var span);
        var w = new MetaWriter(span);
        StatusListReply.Write(ref w, statuses);
        CountRequest(Opcode.Commit, ids.Length);
        await QueueAsync(r).ConfigureAwait(false);
    }

    /// <summary>False for an id this connection does not hold, or whose lease expired (the client must not trust its copy).</summary>
    internal bool ReleaseShmLease(ulong id)
    {
        ValueLease? lease;
        lock (_shmLock)
            if (!_shmLeases.Remove(id, out lease)) return false;
        _node.ReturnLeaseSlots(1);
        return _store.Release(lease);
    }

    /// <summary>Once a second while the connection holds anything in the arena. Called under <see cref="_shmLock"/>.</summary>
    private void StartShmReaper() => _shmReaper ??= new Timer(_ => SweepShm(), null, 1000, 1000);

    /// <summary>
    /// Aborts reservations past their deadline and drops leases the store's reaper released when they expired, so
    /// the connection's tables hold only what is live (an expired lease's RELEASE then answers NOT_FOUND).
    /// </summary>
    private void SweepShm()
    {
        List<Reservation> expired = [];
        int droppedLeases = 0;
        lock (_shmLock)
        {
            long now = Environment.TickCount64;
            foreach (var (id, (res, deadline, _)) in _shmReservations)
            {
                if (deadline > now) continue;
                _shmReservations.Remove(id);
                _reservedBytes -= res.Length;
                expired.Add(res);
            }
            foreach (var (id, lease) in _shmLeases)
            {
                if (!lease.IsReleased) continue;
                _shmLeases.Remove(id);
                droppedLeases++;
            }
        }
        _node.ReturnLeaseSlots(droppedLeases);
        foreach (var res in expired)
        {
            try { _store.Abort(res); } catch (ObjectDisposedException) { }
        }
    }

    /// <summary>The connection ended: everything it held in the arena goes back.</summary>
    private void ReleaseAllShm()
    {
        List<ValueLease> leases;
        List<Reservation> reservations;
        lock (_shmLock)
        {
            leases = [.. _shmLeases.Values];
            reservations = [.. _shmReservations.Values.Select(v => v.Reservation)];
            _shmLeases.Clear();
            _shmReservations.Clear();
            _reservedBytes = 0;
            _shmReaper?.Dispose();
            _shmReaper = null;
        }
        _node.ReturnLeaseSlots(leases.Count);
        try
        {
            foreach (var l in leases) _store.Release(l);
            foreach (var res in reservations) _store.Abort(res);
        }
        catch (ObjectDisposedException) { }
    }
}
