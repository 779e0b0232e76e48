using System.Net.Sockets;
using Kvasir.Net;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// One of this engine's requests on a lane, waiting for its reply. It holds the region it reads or
/// writes until it is released by both the worker (done with the payload, when it has one) and the
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
/// One TCP connection of a session. Its reader (an async loop) takes frames off the socket: replies
/// are matched to the oldest outstanding request (replies come back in request order), requests go to
/// <see cref="RequestHandler"/>; payloads are received straight into registered memory. Everything it
/// sends, it queues to the lane's <see cref="LaneWorker"/>, never waiting for it.
/// </summary>
internal sealed class Lane(Session session, int index, Socket socket, BufferedReceiver receiver, LaneWorker worker)
{
    private readonly Queue<PendingSlice> _outstanding = new();
    private readonly byte[] _header = new byte[TransferLimits.HeaderSize];
    private readonly byte[] _meta = new byte[TransferLimits.MaxMetaBytes];
    private bool _drained;

    public Session Session { get; } = session;

    public int Index { get; } = index;

    public Socket Socket { get; } = socket;

    public BufferedReceiver Receiver { get; } = receiver;

    public GatherSender Sender { get; } = new(socket);

    public bool IsClosed => Session.IsClosed;

    /// <summary>Queues a request and its pending reply, in one step so replies match in order. False when the lane is gone.</summary>
    public bool SendRequest(in OutFrame frame, PendingSlice pending)
    {
        lock (_outstanding)
        {
            if (_drained) return false;
            _outstanding.Enqueue(pending);
            worker.Enqueue(frame);
            return true;
        }
    }

    public void SendReply(in OutFrame frame) => worker.Enqueue(frame);

    /// <summary>A reply with no metadata and no payload (OK or a refusal); a frame-level status closes the session once it is sent.</summary>
    public void Answer(TransferOpcode opcode, ulong requestId, TransferStatus status, string reason)
    {
        var head = Frames.Build(TransferFrameHeader.Reply(opcode, requestId, status), []);
        SendReply(new OutFrame(this, head, CloseAfter: status.IsFrameLevel() ? $"lane {Index}: refused a frame with {status.WireName()} ({reason})" : null));
    }

    public async Task RunAsync()
    {
        string reason = $"lane {Index} closed";
        bool closeNow = true;
        try
        {
            while (true)
            {
                if (!await Receiver.ReadExactAsync(_header, CancellationToken.None).ConfigureAwait(false))
                {
                    reason = $"the peer closed lane {Index}";
                    break;
                }
                var (opcode, requestId) = TransferFrameHeader.Peek(_header);
                try
                {
                    var h = TransferFrameHeader.Read(_header, Session.AcceptSlice);
                    var meta = _meta.AsMemory(0, h.MetaLength);
                    await Receiver.ReadRequiredAsync(meta, CancellationToken.None).ConfigureAwait(false);
                    if (h.IsReply) await HandleReplyAsync(h, meta).ConfigureAwait(false);
                    else await RequestHandler.HandleAsync(this, h, meta).ConfigureAwait(false);
                }
                catch (TransferProtocolException e)
                {
                    reason = $"lane {Index}: bad frame from the peer ({e.Message})";
                    Answer(opcode, requestId, e.Status, e.Message);
                    closeNow = false;   // the worker closes the session once the error reply is out
                    break;
                }
            }
        }
        catch (PeerClosedLaneException e)
        {
            reason = e.Message;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException or OperationCanceledException)
        {
            reason = Session.ClosedReason ?? $"lane {Index}: {e.Message}";
        }
        finally
        {
            Drain(Session.ClosedReason ?? reason);
            if (closeNow) Session.Close(reason);
        }
    }

    private async Task HandleReplyAsync(TransferFrameHeader h, ReadOnlyMemory<byte> meta)
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
                if (WriteSlice.ParseReplyMeta(meta.Span) != p.SliceOffset)
                    throw new TransferProtocolException(TransferStatus.BadFrame, $"WRITE reply names slice offset {WriteSlice.ParseReplyMeta(meta.Span)}, expected {p.SliceOffset}");
            }
            else if (h.MetaLength != 0)
            {
                throw new TransferProtocolException(TransferStatus.BadFrame, $"{h.Opcode} reply carries {h.MetaLength} metadata bytes");
            }
            if (payloadExpected)
                await Receiver.ReadRequiredAsync(new NativeMemoryManager(p.Destination, p.Length).Memory, CancellationToken.None).ConfigureAwait(false);
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
