using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// The initiator's side of transfers: cuts a write or read into slices of at most the session's
/// <c>max_slice</c>, deals them over the lanes (a write of several slices through the session's queue, from which
/// the lanes' senders take them as they go, <see cref="SlicedWrite"/>; reads round-robin) and ties every slice to one
/// <see cref="TransferOp"/>. Write payloads are sent straight from the local region and read replies
/// land straight in it; the region is held (<see cref="Region.TryAcquire"/>) per slice until its reply.
/// </summary>
internal static class Initiator
{
    public static AdvertisementBlob ParseAdvertisement(Session session, ReadOnlySpan<byte> blob)
    {
        AdvertisementBlob advert;
        try { advert = AdvertisementBlob.Parse(blob); }
        catch (FormatException e) { throw new TransferException(TransferError.BadBlob, e.Message); }
        if (advert.EngineId != session.PeerEngineId)
            throw new TransferException(TransferError.BadBlob, $"the advertisement was made by another engine than the peer of connection {session.ConnId}");
        return advert;
    }

    public static void CheckLocalRange(Region region, long offset, long length)
    {
        if (length < 1) throw new TransferException(TransferError.InvalidArgument, $"a transfer moves at least 1 byte, not {length}");
        if (!region.Contains(offset, length))
            throw new TransferException(TransferError.InvalidArgument, $"[{offset}, {offset}+{length}) is outside region {region.Id} of {region.Length} bytes");
    }

    public static TransferOp StartWrite(EngineCore core, Session session, Region region, long offset, long length, AdvertisementBlob advert,
        ReadOnlySpan<byte> notification, ulong kvTag = 0, uint kvGeneration = 0)
    {
        if (notification.Length > TransferLimits.MaxNotificationBytes)
            throw new TransferException(TransferError.TooLarge, $"a notification is at most {TransferLimits.MaxNotificationBytes} bytes, not {notification.Length}");
        byte[] notif = notification.ToArray();
        if (TryShared(core, session, region, offset, length, advert, toFile: true))
        {
            var op = core.Transfers.Start($"shared-memory write of {length} bytes on connection {session.ConnId}", 1, core.Options.TransferTimeout, session);
            var w = new WriteSlice(advert.AdvertId, advert.Token, 0, (ulong)length, 0, kvTag, kvGeneration, notif);
            SendSlice(session, session.NextLane(), region, op, Frames.Build(TransferFrameHeader.Request(TransferOpcode.Write, op.Id, w.Size, 0), w.Size, w.Write),
                TransferOpcode.Write, 0, 0, 0, hasPayload: false);
            return op;
        }
        return StartSliced(core, session, region, offset, length, advert, TransferOpcode.Write, 0, (id, at, n) =>
        {
            var w = new WriteSlice(advert.AdvertId, advert.Token, 0, (ulong)length, (ulong)at, kvTag, kvGeneration, at == 0 ? notif : default);
            return Frames.Build(TransferFrameHeader.Request(TransferOpcode.Write, id, w.Size, n), w.Size, w.Write);
        });
    }

    /// <summary>A read of <paramref name="length"/> bytes from <paramref name="remoteOffset"/> of the advertised window.</summary>
    public static TransferOp StartRead(EngineCore core, Session session, Region region, long offset, long length, AdvertisementBlob advert, long remoteOffset = 0)
    {
        if (TryShared(core, session, region, offset, length, advert, toFile: false, remoteOffset))
        {
            var op = core.Transfers.Start($"shared-memory read of {length} bytes on connection {session.ConnId}", 1, core.Options.TransferTimeout, session);
            op.SliceAcked();   // nothing goes over the lanes: the bytes are in place
            return op;
        }
        return StartSliced(core, session, region, offset, length, advert, TransferOpcode.Read, remoteOffset, (id, at, n) =>
        {
            var r = new ReadSlice(advert.AdvertId, advert.Token, (ulong)(remoteOffset + at), (ulong)n);
            return Frames.Build(TransferFrameHeader.Request(TransferOpcode.Read, id, ReadSlice.Size), ReadSlice.Size, r.Write);
        });
    }

    /// <summary>
    /// Same-host shared memory (docs/transfer.md § Same host shared memory): when the advertisement has the
    /// extension and the peer's host is this one, or unknown (this side connected), one memcpy between the local
    /// region and the target's mapped file. False when the path does not apply or the file does not map (the
    /// caller uses the lanes).
    /// </summary>
    private static bool TryShared(EngineCore core, Session session, Region region, long offset, long length, AdvertisementBlob advert, bool toFile,
        long remoteOffset = 0)
    {
        if (advert.Shm is null || (session.PeerHostId != UInt128.Zero && session.PeerHostId != core.HostId)) return false;
        CheckLocalRange(region, offset, length);
        CheckWindow(advert, remoteOffset, length, toFile ? "write" : "read");
        if (!region.TryAcquire(session))
            throw new TransferException(TransferError.InvalidArgument, $"region {region.Id} was deregistered");
        try
        {
            if (!core.SharedWindows.TryCopy(advert.Shm.Path, advert.Shm.FileOffset + (ulong)remoteOffset, length, region.Address + (nint)offset, toFile)) return false;
        }
        finally { region.Release(session); }
        core.CountSharedTransfer();
        return true;
    }

    /// <summary>[remoteOffset, remoteOffset + length) must lie inside the advertised window.</summary>
    public static void CheckWindow(AdvertisementBlob advert, long remoteOffset, long length, string what)
    {
        if (remoteOffset == 0 && (ulong)length > advert.Size)
            throw new TransferException(TransferError.OutOfBounds, $"a {what} of {length} bytes does not fit the advertised window of {advert.Size} bytes");
        if (remoteOffset < 0 || (ulong)remoteOffset > advert.Size || (ulong)length > advert.Size - (ulong)remoteOffset)
            throw new TransferException(TransferError.OutOfBounds, $"a {what} of [{remoteOffset}, +{length}) is outside the advertised window of {advert.Size} bytes");
    }

    /// <summary>
    /// Cuts a write or read into slices of the session's send size: a write of several slices on several lanes is queued
    /// for the lanes to take (its slices shrinking towards its end, <see cref="SliceSchedule"/>), anything else is dealt
    /// round-robin; <paramref name="head"/> builds a slice's frame head.
    /// </summary>
    private static TransferOp StartSliced(EngineCore core, Session session, Region region, long offset, long length, AdvertisementBlob advert,
        TransferOpcode opcode, long remoteOffset, Func<ulong, long, int, byte[]> head)
    {
        CheckLocalRange(region, offset, length);
        string what = opcode == TransferOpcode.Write ? "write" : "read";
        CheckWindow(advert, remoteOffset, length, what);
        int slice = session.SendSlice;
        bool hasPayload = opcode == TransferOpcode.Write;
        bool queued = hasPayload && length > slice && session.Lanes.Length > 1;
        // A queued write's slices shrink towards its end (SliceSchedule); reads and 1-lane writes are cut in fixed slices.
        var schedule = SliceSchedule.For(slice, queued ? core.Options.MinSliceBytes : slice, session.Lanes.Length);
        int count = schedule.Count(length);
        var op = core.Transfers.Start($"{what} of {length} bytes on connection {session.ConnId}", count, core.Options.TransferTimeout, session);
        if (queued)
        {
            // The lanes' senders take its slices as their sockets take bytes (SlicedWrite).
            if (!region.TryAcquire(session))
            {
                op.Fail(TransferError.InvalidArgument, $"region {region.Id} was deregistered");
                return op;
            }
            var write = new SlicedWrite(op, region, offset, length, schedule, head);
            if (!session.QueueWrite(write, count))
            {
                write.LeaveQueue(session);
                Lost(session, op);
            }
            return op;
        }
        for (int i = 0; i < count; i++)
        {
            long at = (long)i * slice;
            int n = (int)Math.Min(slice, length - at);
            if (!SendSlice(session, session.NextLane(), region, op, head(op.Id, at, n), opcode, (ulong)at, region.Address + (nint)(offset + at), n, hasPayload)) break;
        }
        return op;
    }

    /// <summary>A request of one frame without payload (NOTIFY, KV_READY), acknowledged by its reply.</summary>
    public static TransferOp StartControl(EngineCore core, Session session, TransferOpcode opcode, string what, ReadOnlySpan<byte> meta)
    {
        var op = core.Transfers.Start($"{what} on connection {session.ConnId}", 1, core.Options.TransferTimeout, session);
        var lane = session.NextLane();
        var head = Frames.Build(TransferFrameHeader.Request(opcode, op.Id, meta.Length), meta);
        var pending = new PendingSlice(op, opcode, 0, 0, 0, null, session, hasPayload: false);
        if (!lane.SendRequest(new OutFrame(head), pending)) Lost(session, op);
        return op;
    }

    /// <summary>
    /// Queues one slice's request on <paramref name="lane"/>, holding the region for it (an extra hold of the caller's
    /// when <paramref name="regionHeld"/>, which a deregistration does not refuse); false (and the operation failed)
    /// when the region or the lane is gone.
    /// </summary>
    public static bool SendSlice(Session session, Lane lane, Region region, TransferOp op, byte[] head, TransferOpcode opcode, ulong sliceOffset, nint local, int length, bool hasPayload,
        bool regionHeld = false)
    {
        if (regionHeld) region.AddHold(session);
        else if (!region.TryAcquire(session))
        {
            op.Fail(TransferError.InvalidArgument, $"region {region.Id} was deregistered");
            return false;
        }
        var pending = new PendingSlice(op, opcode, sliceOffset, hasPayload ? 0 : local, length, region, session, hasPayload);
        var frame = hasPayload ? new OutFrame(head, local, length, pending.Release) : new OutFrame(head);
        if (lane.SendRequest(frame, pending)) return true;
        pending.Release();
        if (hasPayload) pending.Release();
        Lost(session, op);
        return false;
    }

    public static void Lost(Session session, TransferOp op) =>
        op.Fail(TransferError.ConnectionLost, $"connection {session.ConnId} is closed: {session.ClosedReason}");
}
