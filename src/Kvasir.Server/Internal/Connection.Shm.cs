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
/// trust its copy.
/// </summary>
internal sealed partial class Connection
{
    private readonly Lock _shmLock = new();
    private readonly Dictionary<ulong, ValueLease> _shmLeases = [];
    private readonly Dictionary<ulong, (Reservation Reservation, long Deadline)> _shmReservations = [];
    private ulong _nextShmId;
    private Timer? _reservationReaper;

    private long ArenaOffset(nint address) => address - _store.ArenaBase;

    private void RequireShm()
    {
        if (_node.ShmToken is null)
            throw new ProtocolException(WireStatus.BadState, "this node has no shared-memory arena (started with --shm off)");
    }

    /// <summary>SHM_INFO never fails: a node without a shared-memory arena answers an empty path (use TCP).</summary>
    private Reply ShmInfo(in FrameHeader h)
    {
        var info = _node.ShmToken is null
            ? new ShmInfoReply("", 0, new byte[ShmInfoReply.TokenBytes], 0)
            : new ShmInfoReply(_store.SharedMemoryPath!, (ulong)_store.Options.Capacity, _node.ShmToken,
                (uint)Math.Min(uint.MaxValue, _store.Options.LeaseTimeout.TotalMilliseconds));
        var r = NewReply(h, WireStatus.Ok, info.Size, 0, out var span);
        var w = new MetaWriter(span);
        info.Write(ref w);
        CountRequest(Opcode.ShmInfo, 0);
        return r;
    }

    private Reply Lease(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        RequireShm();
        var keys = new KeyBatchReader(meta, _node.Options.MaxBatchKeys);
        var r = NewReply(h, WireStatus.Ok, ShmMessages.LeaseReplySize(keys.Count), 0, out var span);
        var w = new MetaWriter(span);
        w.U32((uint)keys.Count);
        while (keys.Next(out var key))
        {
            _node.Heatmap.Record(key);
            ValueLease? lease = null;
            var status = ValidKey(key) ? _store.TryLease(key, null, out lease) : StoreStatus.InvalidKey;
            if (status == StoreStatus.NotFound && _node.Tiers is { } tiers) status = tiers.TryLoad(_store, key, null, out lease);
            if (lease is null)
            {
                ShmMessages.WriteLeaseEntry(ref w, new LeaseEntry(StatusMap.ToWire(status == StoreStatus.Ok ? StoreStatus.NotFound : status), 0, 0, 0, 0));
                continue;
            }
            ulong id;
            lock (_shmLock)
            {
                id = ++_nextShmId;
                _shmLeases[id] = lease;
            }
            ShmMessages.WriteLeaseEntry(ref w, new LeaseEntry(WireStatus.Ok, (ulong)ArenaOffset(lease.Address), (ulong)lease.Length, lease.Crc32C, id));
        }
        CountRequest(Opcode.Lease, keys.Count);
        return r;
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
        var reader = new MetaReader(meta);
        uint count = reader.U32();
        if (count > (uint)_node.Options.MaxBatchKeys)
            throw new ProtocolException(WireStatus.BatchTooLarge, $"{count} keys exceed the batch limit of {_node.Options.MaxBatchKeys}");
        var r = NewReply(h, WireStatus.Ok, ShmMessages.AllocReplySize((int)count), 0, out var span);
        var w = new MetaWriter(span);
        w.U32(count);
        long deadline = Environment.TickCount64 + (long)_store.Options.LeaseTimeout.TotalMilliseconds;
        for (int i = 0; i < count; i++)
        {
            var key = reader.Key();
            long length = (long)Math.Min(reader.U64(), long.MaxValue);
            var status = TryReserve(key, length, out var reservation);
            if (status != StoreStatus.Ok)
            {
                ShmMessages.WriteAllocEntry(ref w, new AllocEntry(StatusMap.ToWire(status), 0, 0));
                continue;
            }
            ulong id;
            lock (_shmLock)
            {
                id = ++_nextShmId;
                _shmReservations[id] = (reservation!, deadline);
                _reservationReaper ??= new Timer(_ => AbortExpiredReservations(), null, 1000, 1000);
            }
            ShmMessages.WriteAllocEntry(ref w, new AllocEntry(WireStatus.Ok, (ulong)ArenaOffset(reservation!.Address), id));
        }
        reader.End();
        CountRequest(Opcode.Alloc, (int)count);
        return r;
    }

    /// <summary>Below this many bytes in one COMMIT the CRCs are computed on the connection's own thread.</summary>
    private const long ParallelCrcBytes = 16L << 20;

    /// <summary>
    /// COMMIT: the node computes the CRC-32C over the bytes the client wrote, then publishes (disk
    /// tier first, as for PUT). A large batch has its CRCs computed on several cores (a GPU writes
    /// the arena at tens of GB/s; one core checksums at about a third of that).
    /// </summary>
    private Reply Commit(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        var ids = ShmMessages.ReadIdList(meta, _node.Options.MaxBatchKeys);
        var reservations = new Reservation?[ids.Length];
        long bytes = 0;
        lock (_shmLock)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                if (!_shmReservations.Remove(ids[i], out var entry)) continue;
                reservations[i] = entry.Reservation;
                bytes += entry.Reservation.Length;
            }
        }
        var crcs = new uint[ids.Length];
        if (bytes >= ParallelCrcBytes && ids.Length > 1)
        {
            var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(2, Environment.ProcessorCount / 2) };
            Parallel.For(0, ids.Length, options, i => { if (reservations[i] is { } res) crcs[i] = Crc32C.Compute(res.Span); });
        }
        else
        {
            for (int i = 0; i < ids.Length; i++)
                if (reservations[i] is { } res) crcs[i] = Crc32C.Compute(res.Span);
        }
        var r = NewReply(h, WireStatus.Ok, StatusListReply.Size(ids.Length), 0, out var span);
        var w = new MetaWriter(span);
        w.U32((uint)ids.Length);
        for (int i = 0; i < ids.Length; i++)
        {
            if (reservations[i] is not { } reservation) { w.U8((byte)WireStatus.NotFound); continue; }
            _node.Counters.In(Opcode.Commit, reservation.Length);
            _node.Tiers?.OnStored(reservation.KeySpan, reservation.Span, crcs[i]);
            w.U8((byte)StatusMap.ToWire(_store.Commit(reservation, crcs[i])));
        }
        CountRequest(Opcode.Commit, ids.Length);
        return r;
    }

    /// <summary>False for an id this connection does not hold, or whose lease expired (the client must not trust its copy).</summary>
    internal bool ReleaseShmLease(ulong id)
    {
        ValueLease? lease;
        lock (_shmLock)
            if (!_shmLeases.Remove(id, out lease)) return false;
        return _store.Release(lease);
    }

    private void AbortExpiredReservations()
    {
        List<Reservation> expired = [];
        lock (_shmLock)
        {
            long now = Environment.TickCount64;
            foreach (var (id, (res, deadline)) in _shmReservations.ToList())
                if (deadline <= now) { _shmReservations.Remove(id); expired.Add(res); }
        }
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
            _reservationReaper?.Dispose();
            _reservationReaper = null;
        }
        try
        {
            foreach (var l in leases) _store.Release(l);
            foreach (var res in reservations) _store.Abort(res);
        }
        catch (ObjectDisposedException) { }
    }
}
