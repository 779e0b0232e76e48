using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// The initiator's side of transfers: cuts a write or read into slices of at most the session's
/// <c>max_slice</c>, deals them round-robin over the lanes and ties every slice to one
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
        CheckLocalRange(region, offset, length);
        if ((ulong)length > advert.Size)
            throw new TransferException(TransferError.OutOfBounds, $"a write of {length} bytes does not fit the advertised window of {advert.Size} bytes");
        if (notification.Length > TransferLimits.MaxNotificationBytes)
            throw new TransferException(TransferError.TooLarge, $"a notification is at most {TransferLimits.MaxNotificationBytes} bytes, not {notification.Length}");
        byte[] notif = notification.ToArray();
        int slice = session.SendSlice;
        int count = checked((int)((length + slice - 1) / slice));
        var op = core.Transfers.Start($"write of {length} bytes on connection {session.ConnId}", count, core.Options.TransferTimeout, session);
        for (int i = 0; i < count; i++)
        {
            long at = (long)i * slice;
            int n = (int)Math.Min(slice, length - at);
            var w = new WriteSlice(advert.AdvertId, advert.Token, 0, (ulong)length, (ulong)at, kvTag, kvGeneration, i == 0 ? notif : default);
            var head = Frames.Build(TransferFrameHeader.Request(TransferOpcode.Write, op.Id, w.Size, n), w.Size, w.Write);
            if (!Send(session, region, op, head, TransferOpcode.Write, (ulong)at, region.Address + (nint)(offset + at), n, hasPayload: true)) break;
        }
        return op;
    }

    public static TransferOp StartRead(EngineCore core, Session session, Region region, long offset, long length, AdvertisementBlob advert)
    {
        CheckLocalRange(region, offset, length);
        if ((ulong)length > advert.Size)
            throw new TransferException(TransferError.OutOfBounds, $"a read of {length} bytes does not fit the advertised window of {advert.Size} bytes");
        int slice = session.SendSlice;
        int count = checked((int)((length + slice - 1) / slice));
        var op = core.Transfers.Start($"read of {length} bytes on connection {session.ConnId}", count, core.Options.TransferTimeout, session);
        for (int i = 0; i < count; i++)
        {
            long at = (long)i * slice;
            int n = (int)Math.Min(slice, length - at);
            var r = new ReadSlice(advert.AdvertId, advert.Token, (ulong)at, (ulong)n);
            var head = Frames.Build(TransferFrameHeader.Request(TransferOpcode.Read, op.Id, ReadSlice.Size), ReadSlice.Size, r.Write);
            if (!Send(session, region, op, head, TransferOpcode.Read, (ulong)at, region.Address + (nint)(offset + at), n, hasPayload: false)) break;
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
        if (!lane.SendRequest(new OutFrame(lane, head), pending)) Lost(session, op);
        return op;
    }

    private static bool Send(Session session, Region region, TransferOp op, byte[] head, TransferOpcode opcode, ulong sliceOffset, nint local, int length, bool hasPayload)
    {
        if (!region.TryAcquire(session))
        {
            op.Fail(TransferError.InvalidArgument, $"region {region.Id} was deregistered");
            return false;
        }
        var lane = session.NextLane();
        var pending = new PendingSlice(op, opcode, sliceOffset, hasPayload ? 0 : local, length, region, session, hasPayload);
        var frame = hasPayload ? new OutFrame(lane, head, local, length, pending.Release) : new OutFrame(lane, head);
        if (lane.SendRequest(frame, pending)) return true;
        pending.Release();
        if (hasPayload) pending.Release();
        Lost(session, op);
        return false;
    }

    private static void Lost(Session session, TransferOp op) =>
        op.Fail(TransferError.ConnectionLost, $"connection {session.ConnId} is closed: {session.ClosedReason}");
}
