using System.Collections.Concurrent;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// One initiator-side operation (a write, a read, a NOTIFY or a KV_READY) of <see cref="Slices"/>
/// acknowledged pieces. It completes only when every slice was acknowledged and fails as a whole at the
/// first refused slice, lost lane or passed deadline; whichever comes first wins, later news is ignored.
/// </summary>
internal sealed class TransferOp(ulong id, string what, int slices, TimeSpan timeout, Session session)
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _acked;

    public ulong Id { get; } = id;

    /// <summary>"write of 4096 bytes on connection 2", for error messages.</summary>
    public string What { get; } = what;

    public int Slices { get; } = slices;

    public DateTime Deadline { get; } = DateTime.UtcNow + timeout;

    public TimeSpan Timeout { get; } = timeout;

    /// <summary>The connection the operation runs on; closed when the operation passes its deadline.</summary>
    public Session Session { get; } = session;

    public Task Task => _done.Task;

    public bool IsFinished => _done.Task.IsCompleted;

    public void SliceAcked()
    {
        if (Interlocked.Increment(ref _acked) == Slices) _done.TrySetResult();
    }

    public void Fail(TransferException error) => _done.TrySetException(error);

    public void Fail(TransferError code, string reason) => Fail(new TransferException(code, $"{What}: {reason}"));
}

/// <summary>
/// The engine's operations in flight (for deadlines) and the ones started with a transfer id (for
/// <see cref="TransferEngine.Poll"/>). A checker fails every operation whose deadline passed and closes
/// its connection: its lanes are in an unknown state (a stopped peer, a stalled link), and closing them
/// guarantees no late byte of a read lands in the caller's memory after the failure was reported.
/// </summary>
internal sealed class TransferTable : IDisposable
{
    private readonly ConcurrentDictionary<ulong, TransferOp> _inFlight = new();
    private readonly ConcurrentDictionary<ulong, TransferOp> _polled = new();
    private readonly Timer _timer;
    private long _nextId;

    public TransferTable() => _timer = new Timer(_ => FailExpired(), null, TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(50));

    public ulong NextId() => (ulong)Interlocked.Increment(ref _nextId);

    public TransferOp Start(string what, int slices, TimeSpan timeout, Session session)
    {
        var op = new TransferOp(NextId(), what, slices, timeout, session);
        _inFlight[op.Id] = op;
        op.Task.ContinueWith(_ => _inFlight.TryRemove(op.Id, out TransferOp? _), CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return op;
    }

    /// <summary>Keeps <paramref name="op"/> for <see cref="Poll"/> and <see cref="Take"/> until one of them reports its end.</summary>
    public void Track(TransferOp op) => _polled[op.Id] = op;

    /// <summary>True when done; throws the failure (and forgets the id) when failed; false while in flight.</summary>
    public bool Poll(ulong id)
    {
        var op = Get(id);
        if (!op.IsFinished) return false;
        _polled.TryRemove(id, out _);
        op.Task.GetAwaiter().GetResult();
        return true;
    }

    /// <summary>The operation of a tracked id, forgotten from the table.</summary>
    public TransferOp Take(ulong id)
    {
        var op = Get(id);
        _polled.TryRemove(id, out _);
        return op;
    }

    public void Dispose()
    {
        _timer.Dispose();
        foreach (var op in _inFlight.Values) op.Fail(TransferError.Disposed, "the engine was disposed");
    }

    private TransferOp Get(ulong id) => _polled.TryGetValue(id, out var op)
        ? op
        : throw new TransferException(TransferError.UnknownId, $"no transfer {id} in flight or unreported in this engine");

    private void FailExpired()
    {
        var now = DateTime.UtcNow;
        foreach (var op in _inFlight.Values)
        {
            if (op.Deadline > now) continue;
            op.Fail(TransferError.Timeout, $"not complete within the transfer timeout of {op.Timeout.TotalSeconds:0.###} s");
            op.Session.Close($"{op.What} passed the transfer timeout");
        }
    }
}
