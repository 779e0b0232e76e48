using System.Runtime.InteropServices;
using Kvasir.Net;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// A frame queued for a lane: header and metadata in <see cref="Head"/>, then <see cref="PayloadLength"/>
/// bytes sent straight from <see cref="Payload"/> (registered memory). <see cref="OnSent"/> runs once the
/// sender is done with the payload memory, sent or not. A frame with <see cref="CloseAfter"/> (a
/// frame-level error reply) closes its session, for that reason, once sent.
/// </summary>
internal readonly record struct OutFrame(byte[] Head, nint Payload = 0, int PayloadLength = 0, Action? OnSent = null, string? CloseAfter = null);

/// <summary>
/// A lane's sender thread: it writes the lane's frames in queue order (so replies keep their requests' order),
/// up to <see cref="MaxBatch"/> queued frames in one blocking sendmsg, and sleeps in the kernel while the
/// socket buffer is full. A blocking send waits on one socket only, so every lane has its own sender (a thread
/// serving several lanes would hold all of them behind the one whose peer reads slowest). The lane's receiver
/// never waits for it, so two engines sending large slices at each other on one lane cannot deadlock. A failed
/// send closes the session; the sender keeps draining (dropping) frames until stopped.
/// A small frame (no payload: a WRITE acknowledgement, a READ request, a control request) queued while the sender
/// is idle is sent by the queuing thread itself with one non-blocking sendmsg, which saves waking the sender; what
/// the socket does not take at once is left to the sender, ahead of anything queued meanwhile.
/// </summary>
internal sealed class LaneSender
{
    private const int MaxBatch = 64;

    private readonly Lane _lane;
    private readonly Queue<OutFrame> _queue = new();
    private readonly OutFrame[] _batch = new OutFrame[MaxBatch];
    private readonly NativeSend.Iovec[] _segments = new NativeSend.Iovec[2 * MaxBatch];
    private readonly GCHandle[] _pins = new GCHandle[MaxBatch];
    private OutFrame? _rest;   // the unsent tail of an inline frame: goes out before the queue
    private bool _busy;        // a thread is writing to the socket (the sender or an inline sender); guarded by _queue
    private bool _stopping;
    private bool _woken;       // the session queued a write (Wake); guarded by _queue
    private int _queuedPayloads;   // frames with a payload in _queue; guarded by _queue, read unlocked by the sender

    public LaneSender(Lane lane) => _lane = lane;

    public void Enqueue(in OutFrame frame)
    {
        bool inline = false;
        lock (_queue)
        {
            if (_stopping)
            {
                frame.OnSent?.Invoke();
                return;
            }
            if (!_busy && _queue.Count == 0 && _rest is null && frame.PayloadLength == 0 && frame.OnSent is null && frame.CloseAfter is null)
            {
                _busy = inline = true;
            }
            else
            {
                _queue.Enqueue(frame);
                if (frame.PayloadLength > 0) _queuedPayloads++;
                if (_queue.Count == 1 && !_busy) Monitor.Pulse(_queue);
            }
        }
        if (inline) SendInline(frame.Head);
    }

    /// <summary>The session queued a write: look for its slices (<see cref="Session.TryPullWrite"/>).</summary>
    public void Wake()
    {
        lock (_queue)
        {
            _woken = true;
            if (!_busy) Monitor.Pulse(_queue);
        }
    }

    /// <summary>Stops after the queued frames (whose lane is closed by now, so they are dropped).</summary>
    public void Stop()
    {
        lock (_queue)
        {
            _stopping = true;
            Monitor.Pulse(_queue);
        }
    }

    /// <summary>
    /// The thread's body: until stopped and drained. Whenever no payload waits in its own queue, it first takes the
    /// next slice of the session's queued writes (<see cref="Session.TryPullWrite"/>), so a lane takes a slice only
    /// once its socket took the last one.
    /// </summary>
    public void Run()
    {
        var session = _lane.Session;
        while (true)
        {
            if (session.HasQueuedWrites && Volatile.Read(ref _queuedPayloads) == 0 && !_lane.IsClosed)
            {
                try { session.TryPullWrite(_lane); }
                catch (Exception e)   // a defect must end this lane's session, never the thread (and so the process)
                {
                    session.Close($"lane {_lane.Index}: taking a queued slice failed ({e.GetType().Name}: {e.Message})");
                }
            }
            int count = 0;
            lock (_queue)
            {
                while ((_busy || (_queue.Count == 0 && _rest is null && !_woken)) && !(_stopping && !_busy)) Monitor.Wait(_queue);
                if (_woken && !_stopping && _queue.Count == 0 && _rest is null)
                {
                    _woken = false;
                    continue;   // to the session's queue
                }
                _woken = false;
                if (_rest is { } rest)
                {
                    _batch[count++] = rest;
                    _rest = null;
                }
                if (_queue.Count == 0 && count == 0) return;   // stopping, nothing left
                while (_queue.Count > 0 && count < MaxBatch)
                {
                    var f = _batch[count++] = _queue.Dequeue();
                    if (f.PayloadLength > 0) _queuedPayloads--;
                }
                _busy = true;
            }
            Send(count);
            lock (_queue) _busy = false;
        }
    }

    /// <summary>Sends a small frame from the queuing thread without blocking; the sender gets what the socket did not take.</summary>
    private void SendInline(byte[] head)
    {
        int sent = 0;
        try
        {
            if (!_lane.IsClosed) sent = _lane.Socket.TrySend(head);
            else sent = head.Length;   // dropped, as the sender drops frames of a closed lane
        }
        catch (Exception e)
        {
            sent = head.Length;
            _lane.Session.Close($"lane {_lane.Index}: send failed ({e.Message})");
        }
        lock (_queue)
        {
            if (sent < head.Length) _rest = new OutFrame(head[sent..]);
            _busy = false;
            if (_rest is not null || _queue.Count > 0 || _woken || _stopping) Monitor.Pulse(_queue);
        }
    }

    /// <summary>Sends the first <paramref name="count"/> frames of the batch with one gather list.</summary>
    private void Send(int count)
    {
        int segments = 0;
        try
        {
            if (_lane.IsClosed) return;
            for (int i = 0; i < count; i++)
            {
                ref readonly var f = ref _batch[i];
                _pins[i] = GCHandle.Alloc(f.Head, GCHandleType.Pinned);
                _segments[segments++] = new NativeSend.Iovec { Base = _pins[i].AddrOfPinnedObject(), Length = (nuint)f.Head.Length };
                if (f.PayloadLength > 0) _segments[segments++] = new NativeSend.Iovec { Base = f.Payload, Length = (nuint)f.PayloadLength };
            }
            _lane.Socket.SendAll(_segments.AsSpan(0, segments));
        }
        catch (Exception e)   // anything a send throws ends the lane's session, never the thread (and so the process)
        {
            _lane.Session.Close($"lane {_lane.Index}: send failed ({e.Message})");
        }
        finally
        {
            for (int i = 0; i < count; i++)
            {
                if (_pins[i].IsAllocated) _pins[i].Free();
                _batch[i].OnSent?.Invoke();
                if (_batch[i].CloseAfter is { } reason) _lane.Session.Close(reason);
                _batch[i] = default;
            }
        }
    }
}
