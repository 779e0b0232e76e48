using System.Net.Sockets;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// One of this engine's requests on a lane, waiting for its reply. It holds the region it reads or
/// writes until it is released by both the lane's sender (done with the payload, when it has one) and the
/// reader (the reply landed, or the lane died).
/// </summary>
internal sealed class PendingSlice(TransferOp op, TransferOpcode opcode, ulong sliceOffset, nint destination, int length, Region? region, Session session, bool hasPayload)
{
    private int _refs = hasPayload ? 2 : 1;

    public TransferOp Op { get; } = op;

    public TransferOpcode Opcode { get; } = opcode;

    public ulong SliceOffset { get; } = sliceOffset;

    /// <summary>Where a READ reply's payload lands (registered memory).</summary>
    public nint Destination { get; } = destination;

    public int Length { get; } = length;

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) region?.Release(session);
    }
}

/// <summary>
/// One TCP connection of a session, with two threads of its own (docs/transfer.md § Threads): its receiver
/// (<see cref="Run"/>) takes frames off the socket with blocking calls: replies are matched to the oldest
/// outstanding request (replies come back in request order), requests go to <see cref="RequestHandler"/>;
/// payloads are received straight into registered memory. Everything it sends, it queues to the lane's
/// <see cref="LaneSender"/>, never waiting for it.
/// </summary>
internal sealed class Lane
{
    private readonly Queue<PendingSlice> _outstanding = new();
    private readonly byte[] _header = new byte[TransferLimits.HeaderSize];
    private readonly byte[] _meta = new byte[TransferLimits.MaxMetaBytes];
    private readonly LaneSender _sender;
    private bool _drained;
    private byte[] _held = new byte[8 * WriteAck];   // WRITE acknowledgements held back by the receiver (HoldWriteAck)
    private int _heldCount;
    private ulong _heldTransfer;

    /// <summary>The size of a WRITE acknowledgement: the header and the 8-byte slice offset.</summary>
    private const int WriteAck = TransferLimits.HeaderSize + 8;

    /// <summary>At most this many acknowledgements are held back at once.</summary>
    internal const int MaxHeldAcks = 64;

    public Lane(Session session, int index, LaneReader reader)
    {
        Session = session;
        Index = index;
        Reader = reader;
        _sender = new LaneSender(this);
    }

    public Session Session { get; }

    public int Index { get; }

    public LaneReader Reader { get; }

    public LaneSocket Socket => Reader.Socket;

    public bool IsClosed => Session.IsClosed;

    /// <summary>Starts the lane's receiver and sender threads.</summary>
    public void Start(ThreadRegistry threads)
    {
        threads.Start($"kvx c{Session.ConnId} L{Index} tx", _sender.Run);
        threads.Start($"kvx c{Session.ConnId} L{Index} rx", Run);
    }

    /// <summary>Wakes the lane's sender to look at the session's queued writes.</summary>
    public void WakeSender() => _sender.Wake();

    /// <summary>Ends the sender once its queue is drained (called when the session closes).</summary>
    public void StopSender() => _sender.Stop();

    /// <summary>Queues a request and its pending reply, in one step so replies match in order. False when the lane is gone.</summary>
    public bool SendRequest(in OutFrame frame, PendingSlice pending)
    {
        lock (_outstanding)
        {
            if (_drained) return false;
            _outstanding.Enqueue(pending);
            _sender.Enqueue(frame);
            return true;
        }
    }

    /// <summary>Queues a reply (receiver thread only), after the acknowledgements held back, which it must not overtake.</summary>
    public void SendReply(in OutFrame frame)
    {
        if (_heldCount > 0) FlushHeldAcks();
        _sender.Enqueue(frame);
    }

    /// <summary>
    /// Answers a landed WRITE slice with OK (receiver thread only), holding the acknowledgement back while the peer goes
    /// on sending this transfer's slices on this lane: the receiver sends the held ones, in order and in one frame
    /// batch, before it would wait for bytes, when the next frame is anything but a WRITE of the same transfer, before
    /// any other reply, and once <see cref="MaxHeldAcks"/> are held. So the transfer completes no later (its last slice
    /// on this lane is always answered at once), while the peer's receiver is woken about once per transfer and lane
    /// instead of once per slice (docs/transfer.md § Threads). No wire change: the same replies, in the same order.
    /// </summary>
    public void HoldWriteAck(ulong requestId, ulong sliceOffset)
    {
        if (_heldCount > 0 && _heldTransfer != requestId) FlushHeldAcks();
        int at = _heldCount * WriteAck;
        if (at + WriteAck > _held.Length) Array.Resize(ref _held, Math.Min(2 * _held.Length, MaxHeldAcks * WriteAck));
        var ack = _held.AsSpan(at, WriteAck);
        TransferFrameHeader.Reply(TransferOpcode.Write, requestId, TransferStatus.Ok, 8).Write(ack);
        WriteSlice.WriteReplyMeta(ack[TransferLimits.HeaderSize..], sliceOffset);
        _heldCount++;
        _heldTransfer = requestId;
        if (_heldCount == MaxHeldAcks) FlushHeldAcks();
    }

    private void FlushHeldAcks()
    {
        var acks = _held.AsSpan(0, _heldCount * WriteAck).ToArray();
        _heldCount = 0;
        _sender.Enqueue(new OutFrame(acks));
    }

    /// <summary>Whether the held acknowledgements may stay held: the next frame's header is here and is a WRITE request of the same transfer.</summary>
    private bool NextIsWriteOfHeldTransfer()
    {
        if (!Reader.TryPeek(_header)) return false;
        var (opcode, requestId) = TransferFrameHeader.Peek(_header);
        ushort flags = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(_header.AsSpan(6));
        return opcode == TransferOpcode.Write && flags == 0 && requestId == _heldTransfer;
    }

    /// <summary>A reply with no metadata and no payload (OK or a refusal); a frame-level status closes the session once it is sent.</summary>
    public void Answer(TransferOpcode opcode, ulong requestId, TransferStatus status, string reason)
    {
        var head = Frames.Build(TransferFrameHeader.Reply(opcode, requestId, status), []);
        SendReply(new OutFrame(head, CloseAfter: status.IsFrameLevel() ? $"lane {Index}: refused a frame with {status.WireName()} ({reason})" : null));
    }

    /// <summary>The receiver thread's body: frames until the lane ends, then the session closes.</summary>
    public void Run()
    {
        string reason = $"lane {Index} closed";
        bool closeNow = true;
        try
        {
            while (true)
            {
                if (_heldCount > 0 && !NextIsWriteOfHeldTransfer()) FlushHeldAcks();
                if (!Reader.ReadExact(_header))
                {
                    reason = $"the peer closed lane {Index}";
                    break;
                }
                var (opcode, requestId) = TransferFrameHeader.Peek(_header);
                try
                {
                    var h = TransferFrameHeader.Read(_header, Session.AcceptSlice);
                    var meta = _meta.AsSpan(0, h.MetaLength);
                    Reader.ReadRequired(meta);
                    if (h.IsReply) HandleReply(h, meta);
                    else RequestHandler.Handle(this, h, meta);
                }
                catch (TransferProtocolException e)
                {
                    reason = $"lane {Index}: bad frame from the peer ({e.Message})";
                    Answer(opcode, requestId, e.Status, e.Message);
                    closeNow = false;   // the sender closes the session once the error reply is out
                    break;
                }
            }
        }
        catch (PeerClosedLaneException e)
        {
            reason = e.Message;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException)
        {
            reason = Session.ClosedReason ?? $"lane {Index}: {e.Message}";
        }
        catch (Exception e)   // a defect must end this lane's session, never the process
        {
            reason = Session.ClosedReason ?? $"lane {Index}: {e.GetType().Name}: {e.Message}";
        }
        finally
        {
            Drain(Session.ClosedReason ?? reason);
            if (closeNow) Session.Close(reason);
        }
    }

    private void HandleReply(TransferFrameHeader h, ReadOnlySpan<byte> meta)
    {
        PendingSlice? p;
        lock (_outstanding) _outstanding.TryDequeue(out p);
        if (p is null)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"{h.Opcode} reply for request {h.RequestId} with no request outstanding");
        try
        {
            if (p.Opcode != h.Opcode || p.Op.Id != h.RequestId)
                throw new TransferProtocolException(TransferStatus.BadFrame, $"{h.Opcode} reply for request {h.RequestId} does not answer the oldest request ({p.Opcode} {p.Op.Id})");
            if (h.Status.IsFrameLevel())
            {
                p.Op.Fail(TransferException.FromStatus(h.Status, p.Op.What));
                throw new PeerClosedLaneException($"the peer refused a frame on lane {Index} with {h.Status.WireName()} and closed it");
            }
            bool payloadExpected = h.Opcode == TransferOpcode.Read && h.Status == TransferStatus.Ok;
            if (h.PayloadLength != (payloadExpected ? p.Length : 0))
                throw new TransferProtocolException(TransferStatus.BadFrame, $"{h.Opcode} reply carries {h.PayloadLength} payload bytes");
            if (h.Opcode == TransferOpcode.Write)
            {
                if (WriteSlice.ParseReplyMeta(meta) != p.SliceOffset)
                    throw new TransferProtocolException(TransferStatus.BadFrame, $"WRITE reply names slice offset {WriteSlice.ParseReplyMeta(meta)}, expected {p.SliceOffset}");
            }
            else if (h.MetaLength != 0)
            {
                throw new TransferProtocolException(TransferStatus.BadFrame, $"{h.Opcode} reply carries {h.MetaLength} metadata bytes");
            }
            if (payloadExpected) Reader.ReadRequired(p.Destination, p.Length);
            if (h.Status == TransferStatus.Ok) p.Op.SliceAcked();
            else p.Op.Fail(TransferException.FromStatus(h.Status, p.Op.What));
        }
        catch (TransferProtocolException e)
        {
            p.Op.Fail(TransferError.ConnectionLost, $"bad reply from the peer ({e.Message})");
            throw;
        }
        finally
        {
            p.Release();
        }
    }

    /// <summary>Fails every request still waiting for a reply on this lane; later requests are refused.</summary>
    private void Drain(string reason)
    {
        PendingSlice[] left;
        lock (_outstanding)
        {
            _drained = true;
            left = [.. _outstanding];
            _outstanding.Clear();
        }
        foreach (var p in left)
        {
            p.Op.Fail(TransferError.ConnectionLost, $"connection {Session.ConnId} lost before it completed: {reason}");
            p.Release();
        }
    }
}

/// <summary>The peer answered with a frame-level status, so it closed the lane.</summary>
internal sealed class PeerClosedLaneException(string message) : Exception(message);
