using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// A write of several slices, queued on its session (<see cref="Session.QueueWrite"/>) instead of dealt over the
/// lanes up front: each lane's sender takes the next slice when it has no payload of its own waiting
/// (<see cref="Session.TryPullWrite"/>), that is when its socket took the last one. A lane that moves slower (its
/// threads got less CPU, its peer reads later) so carries fewer slices, and the lanes finish a transfer together
/// instead of all waiting for the slowest (docs/transfer.md § Threads). The write holds one acquisition of its region
/// from its start until its last slice was taken and handed to a lane (every slice holds its own from then on), so
/// <see cref="TransferEngine.Deregister"/> waits for its slices not yet taken as for those in flight.
/// </summary>
internal sealed class SlicedWrite(TransferOp op, Region region, long offset, long length, int slice, Func<ulong, long, int, byte[]> head)
{
    private int _next;
    private int _refs = 1;   // the queue's share, plus one per slice being handed to a lane; the region hold goes at 0
    private int _queueShareDropped;

    public TransferOp Op { get; } = op;

    public int Count { get; } = checked((int)((length + slice - 1) / slice));

    /// <summary>Whether every slice was taken; read and changed under the session's queue lock.</summary>
    public bool AllTaken => _next == Count;

    /// <summary>The next slice's index, to pass to <see cref="Send"/>; call under the session's queue lock, and only while not <see cref="AllTaken"/>.</summary>
    public int Take()
    {
        Interlocked.Increment(ref _refs);
        return _next++;
    }

    /// <summary>Sends a taken slice on <paramref name="lane"/> (its request and pending reply queued there, with a hold of its own on the region).</summary>
    public void Send(Session session, Lane lane, int index)
    {
        try
        {
            long at = (long)index * slice;
            int n = (int)Math.Min(slice, length - at);
            Initiator.SendSlice(session, lane, region, Op, head(Op.Id, at, n), TransferOpcode.Write, (ulong)at, region.Address + (nint)(offset + at), n,
                hasPayload: true, regionHeld: true);
        }
        finally { Unref(session); }
    }

    /// <summary>The queue is done with the write (every slice taken, or dropped unfinished): once no taken slice is still being handed over, its hold on the region goes.</summary>
    public void LeaveQueue(Session session)
    {
        if (Interlocked.Exchange(ref _queueShareDropped, 1) == 0) Unref(session);
    }

    private void Unref(Session session)
    {
        if (Interlocked.Decrement(ref _refs) == 0) region.Release(session);
    }
}
