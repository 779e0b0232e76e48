namespace Kvasir.Transfer.Internal;

/// <summary>
/// The threads an engine started (lane receivers and senders, handshakes), so that disposing the engine can wait
/// for every one of them to end (<see cref="JoinAll"/>). Their bodies must not throw.
/// </summary>
internal sealed class ThreadRegistry
{
    /// <summary>Stack of each thread: their code is shallow (no recursion), the default 1.5 MiB would be mostly unused.</summary>
    private const int StackBytes = 256 * 1024;

    private readonly HashSet<Thread> _started = [];

    /// <summary>Threads started and still running.</summary>
    public int LiveCount
    {
        get { lock (_started) return _started.Count(t => t.IsAlive); }
    }

    public Thread Start(string name, ThreadStart body)
    {
        var thread = new Thread(body, StackBytes) { IsBackground = true, Name = name };
        // Registered and started under the lock: JoinAll takes its list under it too, so it never meets a thread that
        // is registered but not started yet (joining one throws ThreadStateException).
        lock (_started)
        {
            _started.RemoveWhere(t => !t.IsAlive);
            _started.Add(thread);
            thread.Start();
        }
        return thread;
    }

    /// <summary>Runs <paramref name="body"/> on a thread of its own (blocking socket work) and completes with its result.</summary>
    public Task<T> Run<T>(string name, Func<T> body)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Start(name, () =>
        {
            try { done.TrySetResult(body()); }
            catch (Exception e) { done.TrySetException(e); }
        });
        return done.Task;
    }

    /// <summary>Joins every started thread but the calling one; false when one still runs at the deadline.</summary>
    public bool JoinAll(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        Thread[] threads;
        lock (_started) threads = [.. _started];
        bool all = true;
        foreach (var t in threads)
        {
            if (t == Thread.CurrentThread) continue;
            var left = deadline - DateTime.UtcNow;
            all &= t.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero);
        }
        return all;
    }
}
