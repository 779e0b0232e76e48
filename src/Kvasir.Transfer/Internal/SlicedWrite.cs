using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// How a queued write is cut (docs/transfer.md § Threads, queued writes): slices of <see cref="Max"/> bytes while much
/// is left, then, once less than <see cref="TailShare"/> × lanes × <see cref="Max"/> bytes are left, each slice is
/// (bytes left) / (<see cref="TailShare"/> × lanes), rounded down to 4 KiB and at least <see cref="Min"/>, so the lanes
/// take ever smaller slices towards the end and finish the write together instead of waiting for the one that took
/// the last full slice. A slice never leaves less than <see cref="Min"/> bytes behind it (the rest joins it, up to
/// <see cref="Max"/>). The cut depends only on the write's length, so the slice count is known when it starts. The
/// target sees slices of any length up to its <c>max_slice</c> at any offset, as the wire always allowed.
/// </summary>
internal readonly record struct SliceSchedule(int Max, int Min, int Lanes)
{
    public const int TailShare = 2;

    /// <summary>The schedule of a session's writes: <paramref name="min"/> is capped at the slice size; 1 lane (no balancing) or min = max cuts fixed slices.</summary>
    public static SliceSchedule For(int max, int min, int lanes) => new(max, Math.Min(min, max), lanes);

    private long TailStart => (long)TailShare * Lanes * Max;

    /// <summary>The length of the next slice when <paramref name="left"/> (≥ 1) bytes of the write are left.</summary>
    public int Next(long left)
    {
        if (left <= Min) return (int)left;
        long n = left >= TailStart || Lanes <= 1 ? Max : Math.Max(Min, left / (TailShare * Lanes) & ~4095L);
        if (n > Max) n = Max;
        if (left - n < Min && left <= Max) n = left;   // no runt behind it
        return (int)Math.Min(n, left);
    }

    /// <summary>How many slices a write of <paramref name="length"/> (≥ 1) bytes is cut into.</summary>
    public int Count(long length)
    {
        if (Lanes <= 1 || Min >= Max) return checked((int)((length + Max - 1) / Max));
        long full = length >= TailStart ? (length - TailStart) / Max : 0;   // each leaves at least TailStart: all are Max
        long left = length - full * Max;
        long count = full;
        while (left > 0)
        {
            left -= Next(left);
            count++;
        }
        return checked((int)count);
    }
}

/// <summary>
/// A write of several slices, queued on its session (<see cref="Session.QueueWrite"/>) instead of dealt over the
/// lanes up front: each lane's sender takes the next slice when it has no payload of its own waiting
/// (<see cref="Session.TryPullWrite"/>), that is when its socket took the last one. A lane that moves slower (its
/// threads got less CPU, its peer reads later) so carries fewer slices, and the lanes finish a transfer together
/// instead of all waiting for the slowest (docs/transfer.md § Threads); the slices shrink towards the end of the write
/// (<see cref="SliceSchedule"/>) so the last ones taken are short. The write holds one acquisition of its region
/// from its start until its last slice was taken and handed to a lane (every slice holds its own from then on), so
/// <see cref="TransferEngine.Deregister"/> waits for its slices not yet taken as for those in flight.
/// </summary>
internal sealed class SlicedWrite(TransferOp op, Region region, long offset, long length, SliceSchedule schedule, Func<ulong, long, int, byte[]> head)
{
    private long _at;        // where the next slice starts; read and changed under the session's queue lock
    private int _refs = 1;   // the queue's share, plus one per slice being handed to a lane; the region hold goes at 0
    private int _queueShareDropped;

    public TransferOp Op { get; } = op;

    /// <summary>Whether every slice was taken; read and changed under the session's queue lock.</summary>
    public bool AllTaken => _at == length;

    /// <summary>The next slice (its offset in the write and length), to pass to <see cref="Send"/>; call under the session's queue lock, and only while not <see cref="AllTaken"/>.</summary>
    public (long At, int Length) Take()
    {
        Interlocked.Increment(ref _refs);
        long at = _at;
        int n = schedule.Next(length - at);
        _at = at + n;
        return (at, n);
    }

    /// <summary>Sends a taken slice on <paramref name="lane"/> (its request and pending reply queued there, with a hold of its own on the region).</summary>
    public void Send(Session session, Lane lane, (long At, int Length) slice)
    {
        try
        {
            var (at, n) = slice;
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
