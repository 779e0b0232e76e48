using System.Net.Sockets;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// A connection: <c>L</c> lanes to one peer engine, each with a receiver thread and a sender thread of its own
/// (docs/transfer.md § Threads). It is closed as a whole: a lane lost (peer died, reset, frame-level error)
/// closes every lane, fails every request waiting on them, withdraws the advertisements made for it and wakes
/// two-sided waits. The engine goes on.
/// </summary>
internal sealed class Session
{
    private readonly Queue<SlicedWrite> _writes = new();
    private bool _writesClosed;   // guarded by _writes
    private int _queuedWrites;    // _writes.Count, for the senders' unlocked look
    private string? _closedReason;
    private int _nextLane = -1;

    public Session(EngineCore core, int connId, UInt128 peerEngineId, UInt128 peerHostId, int sendSlice, int acceptSlice, IReadOnlyList<LaneReader> lanes)
    {
        Core = core;
        ConnId = connId;
        PeerEngineId = peerEngineId;
        PeerHostId = peerHostId;
        SendSlice = sendSlice;
        AcceptSlice = acceptSlice;
        Kv = new KvState(this);
        Lanes = new Lane[lanes.Count];
        for (int i = 0; i < lanes.Count; i++) Lanes[i] = new Lane(this, i, lanes[i]);
    }

    public EngineCore Core { get; }

    public int ConnId { get; }

    public UInt128 PeerEngineId { get; }

    public UInt128 PeerHostId { get; }

    /// <summary>
    /// The largest slice this side sends: min(own slice size, the target's <c>max_slice</c>) on a session it
    /// initiated, its own <c>max_slice</c> on a session it accepted (docs/transfer.md § HELLO, slice sizes).
    /// </summary>
    public int SendSlice { get; }

    /// <summary>The largest payload or READ length this side accepts: max(own, the target's) when it initiated, its own when it accepted.</summary>
    public int AcceptSlice { get; }

    public Lane[] Lanes { get; }

    public InboundTransfers Inbound { get; } = new();

    public KvState Kv { get; }

    public string? ClosedReason => Volatile.Read(ref _closedReason);

    public bool IsClosed => ClosedReason is not null;

    /// <summary>Starts every lane's threads; called once the session is in the engine's table.</summary>
    public void Start()
    {
        foreach (var lane in Lanes) lane.Start(Core.Threads);
    }

    /// <summary>Single slices and reads are dealt round-robin over the lanes.</summary>
    public Lane NextLane() => Lanes[NextLaneIndex()];

    private int NextLaneIndex() => (int)((uint)Interlocked.Increment(ref _nextLane) % (uint)Lanes.Length);

    /// <summary>Whether a queued write has slices left to take (an unlocked look, for the lanes' senders).</summary>
    public bool HasQueuedWrites => Volatile.Read(ref _queuedWrites) > 0;

    /// <summary>
    /// Queues a write of <paramref name="slices"/> slices for the lanes' senders to take (<see cref="SlicedWrite"/>) and
    /// wakes as many senders as it has slices (at most every lane), starting at the round-robin cursor. False when the
    /// session is closed.
    /// </summary>
    public bool QueueWrite(SlicedWrite write, int slices)
    {
        lock (_writes)
        {
            if (_writesClosed) return false;
            _writes.Enqueue(write);
            _queuedWrites = _writes.Count;
        }
        int first = NextLaneIndex();
        for (int k = 0; k < Math.Min(slices, Lanes.Length); k++) Lanes[(first + k) % Lanes.Length].WakeSender();
        return true;
    }

    /// <summary>
    /// Called by <paramref name="lane"/>'s sender when it has no payload waiting: takes the next slice of the oldest
    /// queued write and queues it on that lane. Writes that already failed are dropped. False when nothing is queued.
    /// </summary>
    public bool TryPullWrite(Lane lane)
    {
        SlicedWrite? write = null;
        (long, int) slice = default;
        bool last = false;
        List<SlicedWrite>? dropped = null;
        lock (_writes)
        {
            while (_writes.TryPeek(out var w))
            {
                if (w.Op.IsFinished)
                {
                    (dropped ??= []).Add(_writes.Dequeue());
                    continue;
                }
                slice = w.Take();
                if (last = w.AllTaken) _writes.Dequeue();
                write = w;
                break;
            }
            _queuedWrites = _writes.Count;
        }
        dropped?.ForEach(w => w.LeaveQueue(this));
        if (write is null) return false;
        if (last) write.LeaveQueue(this);   // the taken slice's own share keeps the hold until it is handed over
        write.Send(this, lane, slice);
        return true;
    }

    public void Close(string reason)
    {
        if (Interlocked.CompareExchange(ref _closedReason, reason, null) is not null) return;
        foreach (var lane in Lanes)
        {
            // Shutdown wakes the lane's threads blocked in recv or sendmsg; Dispose then waits for their calls to return.
            try { lane.Socket.Socket.Shutdown(SocketShutdown.Both); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            lane.Socket.Socket.Dispose();
            lane.StopSender();
        }
        List<SlicedWrite> queued;
        lock (_writes)
        {
            _writesClosed = true;
            queued = [.. _writes];
            _writes.Clear();
            _queuedWrites = 0;
        }
        foreach (var w in queued)
        {
            Initiator.Lost(this, w.Op);
            w.LeaveQueue(this);
        }
        Core.OnSessionClosed(this);
        Kv.Wake();
    }
}

/// <summary>
/// The target side's record of writes in progress on a session, by transfer id: a write is complete
/// (its notification delivered, its two-sided message handed to <c>RecvKv</c>) when all of its bytes
/// landed. A write that never completes leaves no trace but its bytes in the region.
/// </summary>
internal sealed class InboundTransfers
{
    private readonly Dictionary<ulong, Inbound> _open = [];

    internal sealed class Inbound(ulong length, ulong kvTag, uint kvGeneration)
    {
        public ulong Length { get; } = length;
        public ulong Landed { get; set; }
        public byte[]? Notification { get; set; }
        public ulong KvTag { get; } = kvTag;
        public uint KvGeneration { get; } = kvGeneration;
    }

    /// <summary>Counts a landed slice; returns the write when this slice completed it.</summary>
    public Inbound? Landed(ulong transferId, in WriteSlice w, long bytes)
    {
        lock (_open)
        {
            if (!_open.TryGetValue(transferId, out var t))
                _open[transferId] = t = new Inbound(w.TransferLength, w.KvTag, w.KvGeneration);
            if (w.SliceOffset == 0 && !w.Notification.IsEmpty) t.Notification = w.Notification.ToArray();
            t.Landed += (ulong)bytes;
            if (t.Landed < t.Length) return null;
            _open.Remove(transferId);
            return t;
        }
    }
}
