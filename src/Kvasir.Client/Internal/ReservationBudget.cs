namespace Kvasir.Client.Internal;

/// <summary>
/// The bytes this client lets one connection hold reserved (ALLOC'd, not yet committed) at once. A node lets one
/// connection hold at most <c>--max-reserved-per-connection</c> bytes of uncommitted reservations (a quarter of the
/// arena unless its operator set otherwise) and answers an ALLOC past that share with OUT_OF_MEMORY for the key; it
/// does not say its share. So the budget starts at the default, every ALLOC takes its bytes from it first (puts that
/// share the connection wait their turn instead of being refused), and it learns a smaller share from a key refused
/// while other reservations of the connection were held (<see cref="Learn"/>); such a key is asked for again once
/// they are committed. A key refused while nothing else was held is a real OUT_OF_MEMORY.
/// </summary>
internal sealed class ReservationBudget(long limit)
{
    private static readonly TimeSpan RecheckEvery = TimeSpan.FromMilliseconds(500);
    private readonly Lock _gate = new();
    private long _used;
    private TaskCompletionSource _freed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public long Limit { get; private set; } = Math.Max(1, limit);

    /// <summary>
    /// Takes <paramref name="bytes"/>, waiting while other requests of the connection hold too much; returns the bytes
    /// they held then. A request larger than the whole budget goes alone; a broken connection ends the wait (the request
    /// then fails on the connection itself).
    /// </summary>
    public async Task<long> AcquireAsync(long bytes, Func<bool> broken, CancellationToken ct)
    {
        while (true)
        {
            Task freed;
            lock (_gate)
            {
                if (_used == 0 || _used + bytes <= Limit || broken())
                {
                    long others = _used;
                    _used += bytes;
                    return others;
                }
                freed = _freed.Task;
            }
            await Task.WhenAny(freed, Task.Delay(RecheckEvery, ct)).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
        }
    }

    public void Release(long bytes)
    {
        if (bytes == 0) return;
        TaskCompletionSource freed;
        lock (_gate)
        {
            _used -= bytes;
            freed = _freed;
            _freed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        freed.TrySetResult();
    }

    /// <summary>The node refused a key after <paramref name="accepted"/> bytes of this connection were reserved: its share is smaller.</summary>
    public void Learn(long accepted)
    {
        lock (_gate) Limit = Math.Max(1, Math.Min(Limit, accepted));
    }
}
