using System.Net;

namespace Kvasir.Server.Internal;

/// <summary>
/// The node-wide budget for request metadata being received (docs/reliability.md). A request whose metadata is
/// larger than <see cref="PooledBytes"/> takes its size from the budget before the bytes are read and gives it back
/// when the request is served; one client address may hold at most a quarter of the budget, so connections from
/// other addresses always find room. A request that finds no room waits (its frame timeout running) until another
/// gives some back: many slow senders of large batches cannot make the node buffer unbounded memory.
/// </summary>
internal sealed class MetaBudget
{
    /// <summary>Metadata up to this size is not counted (every connection may hold that much; the connection limits bound it).</summary>
    public const int PooledBytes = 64 * 1024;

    private readonly Lock _lock = new();
    private readonly Dictionary<IPAddress, long> _byAddress = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _used;

    public MetaBudget(long total)
    {
        Total = total;
        PerAddress = total / 4;
    }

    public long Total { get; }

    public long PerAddress { get; }

    /// <summary>Bytes held now.</summary>
    public long Used { get { lock (_lock) return _used; } }

    /// <summary>Waits until <paramref name="bytes"/> fit the budget and the address's share, then takes them.</summary>
    public async ValueTask AcquireAsync(IPAddress address, long bytes, CancellationToken ct)
    {
        if (bytes > PerAddress) throw new ArgumentOutOfRangeException(nameof(bytes), $"{bytes} bytes exceed one address's share of {PerAddress}");
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                long mine = _byAddress.GetValueOrDefault(address);
                if (_used + bytes <= Total && mine + bytes <= PerAddress)
                {
                    _used += bytes;
                    _byAddress[address] = mine + bytes;
                    return;
                }
                changed = _changed.Task;
            }
            await changed.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Gives back what <see cref="AcquireAsync"/> took and wakes the waiters to try again.</summary>
    public void Release(IPAddress address, long bytes)
    {
        TaskCompletionSource woken;
        lock (_lock)
        {
            _used -= bytes;
            long mine = _byAddress[address] - bytes;
            if (mine == 0) _byAddress.Remove(address);
            else _byAddress[address] = mine;
            woken = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        woken.TrySetResult();
    }
}
