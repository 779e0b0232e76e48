namespace Kvasir.Client.Internal;

/// <summary>
/// The bytes this client lets one connection hold reserved (ALLOC'd, not yet committed) at once. A node lets one
/// connection hold at most <c>--max-reserved-per-connection</c> bytes of uncommitted reservations (a quarter of the
/// arena unless its operator set otherwise) and answers an ALLOC past that share with OUT_OF_MEMORY for the key; it
/// does not say its share. So the budget starts at the default, every ALLOC takes its bytes from it first (puts that
/// share the connection wait their turn instead of being refused), and it learns a smaller share from a key refused
/// while other reservations of the connection were held (<see cref="Learn"/>); such a key is asked for again once
/// they are committed. A key refused while nothing else was held is a real OUT_OF_MEMORY. A refusal because the arena
/// itself was full (pinned or leased values, other clients' reservations) looks the same, so what was learnt is
/// forgotten <see cref="ForgetAfter"/> later: a real share is learnt again at the cost of one refused piece, while a
/// full arena no longer cuts every later put of the connection into pieces of what it took then. The shared-memory
/// transport also counts each connection's leases in flight with one (in keys, a fixed limit: nothing is learnt).
/// </summary>
internal sealed class ReservationBudget(long limit, TimeProvider? clock = null)
{
    private static readonly TimeSpan RecheckEvery = TimeSpan.FromMilliseconds(500);

    /// <summary>How long a learnt share holds before the budget is back at its start.</summary>
    internal static readonly TimeSpan ForgetAfter = TimeSpan.FromSeconds(10);

    private readonly Lock _gate = new();
    private readonly long _initial = Math.Max(1, limit);
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private long _limit = Math.Max(1, limit);
    private long _learntAt;
    private long _used;
    private TaskCompletionSource _freed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public long Limit
    {
        get { lock (_gate) return CurrentLimit(); }
    }

    /// <summary>The limit, back at its start once what was learnt is <see cref="ForgetAfter"/> old. Called under <see cref="_gate"/>.</summary>
    private long CurrentLimit()
    {
        if (_limit < _initial && _clock.GetElapsedTime(_learntAt) >= ForgetAfter) _limit = _initial;
        return _limit;
    }

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
                if (_used == 0 || _used + bytes <= CurrentLimit() || broken())
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
        lock (_gate)
        {
            _limit = Math.Max(1, Math.Min(CurrentLimit(), accepted));
            _learntAt = _clock.GetTimestamp();
        }
    }
}
