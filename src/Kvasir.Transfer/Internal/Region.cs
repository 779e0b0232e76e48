using System.Buffers;
using System.Collections.Concurrent;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// Memory an engine registered. Safety rule: every byte the engine reads from or writes into a region
/// happens between a successful <see cref="TryAcquire"/> and its <see cref="Release"/>, counted per
/// session. <see cref="Withdraw"/> makes every later acquire fail, so once <see cref="WaitIdle"/> saw
/// the count reach zero no byte moves in or out of the region again and its memory may be freed.
/// </summary>
internal sealed unsafe class Region(int id, nint address, long length, MemoryHandle pin)
{
    private readonly object _lock = new();
    private readonly Dictionary<Session, int> _inFlight = [];
    private MemoryHandle _pin = pin;
    private int _total;
    private bool _withdrawn;

    public int Id { get; } = id;

    public nint Address { get; } = address;

    public long Length { get; } = length;

    public bool Contains(long offset, long length) => offset >= 0 && length >= 0 && offset <= Length - length;

    public Span<byte> Span(long offset, int length) => new((byte*)Address + offset, length);

    public bool TryAcquire(Session session)
    {
        lock (_lock)
        {
            if (_withdrawn) return false;
            _inFlight[session] = _inFlight.GetValueOrDefault(session) + 1;
            _total++;
            return true;
        }
    }

    /// <summary>
    /// One more acquisition for a caller that already holds one (a queued write handing its hold on to each of its
    /// slices): it succeeds even after <see cref="Withdraw"/>, which only stops new holders.
    /// </summary>
    public void AddHold(Session session)
    {
        lock (_lock)
        {
            if (_inFlight.GetValueOrDefault(session) < 1) throw new InvalidOperationException($"region {Id}: AddHold without a hold");
            _inFlight[session]++;
            _total++;
        }
    }

    public void Release(Session session)
    {
        lock (_lock)
        {
            int left = _inFlight[session] - 1;
            if (left == 0) _inFlight.Remove(session);
            else _inFlight[session] = left;
            if (--_total == 0) Monitor.PulseAll(_lock);
        }
    }

    public void Withdraw()
    {
        lock (_lock) _withdrawn = true;
    }

    /// <summary>Waits until no slice is in flight; false at the deadline.</summary>
    public bool WaitIdle(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_lock)
        {
            while (_total > 0)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_lock, left)) return _total == 0;
            }
            return true;
        }
    }

    /// <summary>The sessions with slices in flight in this region now.</summary>
    public Session[] BusySessions()
    {
        lock (_lock) return [.. _inFlight.Keys];
    }

    /// <summary>Unpins managed memory; called once, after the region went idle.</summary>
    public void Unpin() => _pin.Dispose();
}

/// <summary>The engine's registered regions by id; ids are never reused.</summary>
internal sealed class RegionTable
{
    private readonly ConcurrentDictionary<int, Region> _regions = new();
    private int _nextId;

    public Region Add(nint address, long length, MemoryHandle pin)
    {
        var region = new Region(Interlocked.Increment(ref _nextId), address, length, pin);
        _regions[region.Id] = region;
        return region;
    }

    public Region Get(int id) => _regions.TryGetValue(id, out var r)
        ? r
        : throw new TransferException(TransferError.UnknownId, $"no registered region {id} in this engine");

    public bool TryRemove(int id, out Region region) => _regions.TryRemove(id, out region!);

    public ICollection<Region> All => _regions.Values;
}
