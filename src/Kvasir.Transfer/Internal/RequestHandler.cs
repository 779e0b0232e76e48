using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// The target side of a joined lane: answers the peer's WRITE, READ, NOTIFY and KV_READY requests.
/// Slice results (NOT_ADVERTISED, OUT_OF_BOUNDS, TOO_LARGE) are answered and the lane goes on; a
/// protocol violation throws <see cref="TransferProtocolException"/>, which the lane answers and closes.
/// Nothing is written into a region unless the slice names an advertisement made for this connection,
/// with its token, and lies inside its window and its transfer.
/// </summary>
internal static class RequestHandler
{
    public static void Handle(Lane lane, TransferFrameHeader h, ReadOnlySpan<byte> meta)
    {
        if (h.Status != TransferStatus.Ok)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"a {h.Opcode} request carries status {(ushort)h.Status}");
        if (h.Opcode != TransferOpcode.Write && h.PayloadLength != 0)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"a {h.Opcode} request carries no payload, this one {h.PayloadLength} bytes");
        switch (h.Opcode)
        {
            case TransferOpcode.Write:
                Write(lane, h, WriteSlice.Parse(meta));
                return;
            case TransferOpcode.Read:
                Read(lane, h, ReadSlice.Parse(meta));
                return;
            case TransferOpcode.Notify:
                Notify(lane, h, meta);
                return;
            case TransferOpcode.KvReady:
                lane.Session.Kv.OnPeerReady(KvReady.Parse(meta));
                lane.Answer(h.Opcode, h.RequestId, TransferStatus.Ok, "");
                return;
            case TransferOpcode.Hello or TransferOpcode.Auth:
                throw new TransferProtocolException(TransferStatus.BadSession, $"{h.Opcode} on a lane that already joined its session");
            default:
                throw new TransferProtocolException(TransferStatus.UnknownOpcode, $"unknown opcode 0x{(byte)h.Opcode:x2}");
        }
    }

    private static void Write(Lane lane, TransferFrameHeader h, WriteSlice w)
    {
        var session = lane.Session;
        long length = h.PayloadLength;
        // A zero-length WRITE is a same-host shared-memory completion: the initiator copied the whole
        // transfer itself. Only the side that accepted knows its peer's host id (the HELLO request carries it).
        bool completion = length == 0;
        if (completion && (session.PeerHostId != session.Core.HostId || w.SliceOffset != 0))
            throw new TransferProtocolException(TransferStatus.BadFrame, "a zero-length WRITE (a shared-memory completion) from another host or not at slice offset 0");
        ulong covers = completion ? w.TransferLength : (ulong)length;
        var advert = session.Core.Adverts.Find(session.ConnId, w.AdvertId, w.Token);
        var status = advert is null ? TransferStatus.NotAdvertised
            : w.SliceOffset > w.TransferLength || covers > w.TransferLength - w.SliceOffset
              || w.WindowOffset > (ulong)advert.Size || w.TransferLength > (ulong)advert.Size - w.WindowOffset ? TransferStatus.OutOfBounds
            : !advert.Region.TryAcquire(session) ? TransferStatus.NotAdvertised
            : TransferStatus.Ok;
        if (status != TransferStatus.Ok)
        {
            lane.Reader.Skip(length);
            ReplyWrite(lane, h.RequestId, status, w.SliceOffset);
            return;
        }
        var region = advert!.Region;
        try
        {
            nint at = region.Address + (nint)(advert.Offset + (long)w.WindowOffset + (long)w.SliceOffset);
            lane.Reader.ReadRequired(at, (int)length);
        }
        finally
        {
            region.Release(session);
        }
        if (session.Inbound.Landed(h.RequestId, w, (long)covers) is { } done)
        {
            if (done.Notification is { Length: > 0 } notif) session.Core.AddNotification(session.ConnId, notif);
            if (done.KvTag != 0) session.Kv.Delivered(done.KvTag, done.KvGeneration, advert.Id, (long)done.Length);
        }
        lane.HoldWriteAck(h.RequestId, w.SliceOffset);
    }

    private static void ReplyWrite(Lane lane, ulong requestId, TransferStatus status, ulong sliceOffset)
    {
        var head = Frames.Build(TransferFrameHeader.Reply(TransferOpcode.Write, requestId, status), 8, d => { WriteSlice.WriteReplyMeta(d, sliceOffset); return 8; });
        lane.SendReply(new OutFrame(head));
    }

    private static void Read(Lane lane, TransferFrameHeader h, ReadSlice r)
    {
        var session = lane.Session;
        if (r.Length > (ulong)session.AcceptSlice)
            throw new TransferProtocolException(TransferStatus.FrameTooLarge, $"READ of {r.Length} bytes is above max_slice {session.AcceptSlice}");
        var advert = session.Core.Adverts.Find(session.ConnId, r.AdvertId, r.Token);
        var status = advert is null ? TransferStatus.NotAdvertised
            : r.Offset > (ulong)advert.Size || r.Length > (ulong)advert.Size - r.Offset ? TransferStatus.OutOfBounds
            : !advert.Region.TryAcquire(session) ? TransferStatus.NotAdvertised
            : TransferStatus.Ok;
        if (status != TransferStatus.Ok)
        {
            lane.Answer(TransferOpcode.Read, h.RequestId, status, "");
            return;
        }
        var region = advert!.Region;
        var head = Frames.Build(TransferFrameHeader.Reply(TransferOpcode.Read, h.RequestId, TransferStatus.Ok, 0, (long)r.Length), []);
        nint from = region.Address + (nint)(advert.Offset + (long)r.Offset);
        lane.SendReply(new OutFrame(head, from, (int)r.Length, () => region.Release(session)));
    }

    private static void Notify(Lane lane, TransferFrameHeader h, ReadOnlySpan<byte> notification)
    {
        if (notification.Length > TransferLimits.MaxNotificationBytes)
        {
            lane.Answer(h.Opcode, h.RequestId, TransferStatus.TooLarge, "");
            return;
        }
        lane.Session.Core.AddNotification(lane.Session.ConnId, notification.ToArray());
        lane.Answer(h.Opcode, h.RequestId, TransferStatus.Ok, "");
    }
}
