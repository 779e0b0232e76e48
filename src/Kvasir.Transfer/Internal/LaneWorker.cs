namespace Kvasir.Transfer.Internal;

/// <summary>
/// A frame queued for a lane: header and metadata in <see cref="Head"/>, then <see cref="PayloadLength"/>
/// bytes sent straight from <see cref="Payload"/> (registered memory). <see cref="OnSent"/> runs once the
/// worker is done with the payload memory, sent or not. A frame with <see cref="CloseAfter"/> (a
/// frame-level error reply) closes its session, for that reason, once sent.
/// </summary>
internal readonly record struct OutFrame(Lane Lane, byte[] Head, nint Payload = 0, int PayloadLength = 0, Action? OnSent = null, string? CloseAfter = null);

/// <summary>
/// One of a session's <c>ncpus</c> worker threads: it writes the frames of its lanes in queue order
/// (every frame of one lane in the order queued, so replies keep their requests' order), gathering
/// consecutive frames of a lane into one sendmsg. Lane readers only enqueue here and never wait for
/// it, so two engines sending large slices at each other on one lane cannot deadlock. A lane whose
/// send fails closes its session; the worker keeps draining (dropping) that lane's frames.
/// </summary>
internal sealed class LaneWorker
{
    private const int MaxBatch = 64;

    private readonly Queue<OutFrame> _queue = new();
    private readonly Thread _thread;
    private bool _stopping;

    public LaneWorker(string name)
    {
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public void Enqueue(in OutFrame frame)
    {
        lock (_queue)
        {
            if (!_stopping)
            {
                _queue.Enqueue(frame);
                if (_queue.Count == 1) Monitor.Pulse(_queue);
                return;
            }
        }
        frame.OnSent?.Invoke();
    }

    /// <summary>Stops after the queued frames (whose lanes are closed by now, so they are dropped).</summary>
    public void Stop()
    {
        lock (_queue)
        {
            _stopping = true;
            Monitor.Pulse(_queue);
        }
    }

    private void Run()
    {
        var batch = new List<OutFrame>(MaxBatch);
        while (true)
        {
            lock (_queue)
            {
                while (_queue.Count == 0 && !_stopping) Monitor.Wait(_queue);
                if (_queue.Count == 0) return;
                while (_queue.Count > 0 && batch.Count < MaxBatch) batch.Add(_queue.Dequeue());
            }
            int start = 0;
            while (start < batch.Count)
            {
                int end = start + 1;
                while (end < batch.Count && batch[end].Lane == batch[start].Lane) end++;
                Send(batch, start, end);
                start = end;
            }
            batch.Clear();
        }
    }

    /// <summary>Sends frames [start, end) of one lane with as few syscalls as the gather list allows.</summary>
    private static void Send(List<OutFrame> batch, int start, int end)
    {
        var lane = batch[start].Lane;
        try
        {
            if (lane.IsClosed) return;
            var sender = lane.Sender;
            for (int i = start; i < end; i++)
            {
                if (sender.Count + 2 > Kvasir.Net.GatherSender.MaxSegments) sender.Flush();
                sender.Add(batch[i].Head);
                sender.Add(batch[i].Payload, batch[i].PayloadLength);
            }
            sender.Flush();
        }
        catch (Exception e)   // anything a send throws ends the lane, never the worker thread (and so the process)
        {
            lane.Session.Close($"lane {lane.Index}: send failed ({e.Message})");
        }
        finally
        {
            for (int i = start; i < end; i++)
            {
                batch[i].OnSent?.Invoke();
                if (batch[i].CloseAfter is { } reason) lane.Session.Close(reason);
            }
        }
    }
}
