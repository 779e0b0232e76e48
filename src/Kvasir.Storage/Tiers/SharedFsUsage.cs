namespace Kvasir.Storage.Tiers;

/// <summary>
/// What the shared tier holds, for metrics: files and bytes under its root (every node's, not only this one's:
/// the tier is shared), counted by a walk of the tree in the background every <c>interval</c> (the first at
/// start), and the capacity of the filesystem it is on. A walk visits every file, so on a very large tree it takes a
/// while: its numbers are those of the last finished walk, never a partial one, and the walk runs on its own task,
/// never on a socket or tier thread. A walk that fails keeps the last numbers and counts the failure.
/// </summary>
internal sealed class SharedFsUsage : IDisposable
{
    private static readonly EnumerationOptions s_walk = new() { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = 0 };

    private readonly string _root;
    private readonly TimeSpan _interval;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _bytes, _files, _capacity, _walks, _walkErrors;

    public SharedFsUsage(string root, TimeSpan interval)
    {
        _root = root;
        _interval = interval;
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Walks finished since start (a test waits for one after its writes).</summary>
    public long Walks => Interlocked.Read(ref _walks);

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Walk();
            try
            {
                await Task.Delay(_interval, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void Walk()
    {
        try
        {
            long bytes = 0, files = 0;
            foreach (var file in new DirectoryInfo(_root).EnumerateFiles("*.kv", s_walk))
            {
                if (_stop.IsCancellationRequested) return;
                bytes += file.Length;
                files++;
            }
            Interlocked.Exchange(ref _bytes, bytes);
            Interlocked.Exchange(ref _files, files);
            Interlocked.Exchange(ref _capacity, new DriveInfo(_root).TotalSize);
            Interlocked.Increment(ref _walks);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            Interlocked.Increment(ref _walkErrors);
        }
    }

    public IEnumerable<KeyValuePair<string, long>> Stats() =>
    [
        new("shared_bytes", Interlocked.Read(ref _bytes)), new("shared_keys", Interlocked.Read(ref _files)),
        new("shared_capacity_bytes", Interlocked.Read(ref _capacity)), new("shared_usage_walks", Walks),
        new("shared_usage_walk_errors", Interlocked.Read(ref _walkErrors)),
    ];

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(10));
        }
        catch (AggregateException)
        {
            // The loop only ends by cancellation; nothing to report at close.
        }
        _stop.Dispose();
    }
}
