using System.Collections.Concurrent;

namespace Kvasir.Storage.Tiers;

/// <summary>
/// Dedicated threads for the blocking calls of the lower tiers (pread of a disk record, open/read/stat/
/// unlink of a shared-filesystem file), so a slow disk or a hung NFS mount never holds a socket thread or a
/// thread-pool thread. Work is queued FIFO; each item completes its task with RunContinuationsAsynchronously,
/// so what follows the I/O runs on the thread pool, never on these threads.
/// </summary>
/// <remarks>
/// Bounded concurrency is the point: with <c>threads</c> workers at most that many tier reads are in progress,
/// and the rest wait in the queue without holding a thread. Disposal lets queued work finish (callers await
/// it), then joins the threads.
/// </remarks>
internal sealed class TierIo : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new(new ConcurrentQueue<Action>());
    private readonly Thread[] _threads;

    public TierIo(int threads, string name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"{name} {i}" };
            _threads[i].Start();
        }
    }

    /// <summary>Runs <paramref name="work"/> on a tier thread; its exception (if any) faults the task.</summary>
    public Task<T> Run<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Action item = () =>
        {
            try { done.TrySetResult(work()); }
            catch (Exception ex) { done.TrySetException(ex); }
        };
        try
        {
            _queue.Add(item);
        }
        catch (InvalidOperationException)
        {
            done.TrySetException(new ObjectDisposedException(nameof(TierIo)));
        }
        return done.Task;
    }

    private void Run()
    {
        foreach (var item in _queue.GetConsumingEnumerable()) item();
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        foreach (var t in _threads) t.Join(TimeSpan.FromSeconds(30));
        _queue.Dispose();
    }
}
