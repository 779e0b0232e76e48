using System.Diagnostics;
using Kvasir.Protocol;
using Kvasir.Storage.Internal;

namespace Kvasir.Storage;

/// <content>The read path: leases, their release and their expiry.</content>
public sealed partial class KvArenaStore
{
    /// <summary>
    /// Leases the current value of <paramref name="key"/> for reading; counts a hit or a miss and marks the key as
    /// recently used. The lease expires after <see cref="StoreOptions.LeaseTimeout"/> (see <see cref="ReapExpiredLeases"/>).
    /// </summary>
    /// <returns><see cref="WireStatus.Ok"/>, <see cref="WireStatus.NotFound"/> or <see cref="WireStatus.InvalidKey"/>.</returns>
    public WireStatus TryLease(ReadOnlySpan<byte> key, ILeaseHolder? holder, out ValueLease? lease)
        => TryLease(key, holder, out lease, countAsAccess: true);

    /// <summary>As the public overload; with <paramref name="countAsAccess"/> false the lease is the node's own (copying a value to a lower tier): no hit, miss or recency change.
    /// With <paramref name="countHit"/> false an access changes recency but is not a DRAM hit (a value just promoted from a lower tier
    /// for this very read, already counted as a DRAM miss).</summary>
    internal WireStatus TryLease(ReadOnlySpan<byte> key, ILeaseHolder? holder, out ValueLease? lease, bool countAsAccess, bool countHit = true)
    {
        lease = null;
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!IsValidKey(key))
            {
                return WireStatus.InvalidKey;
            }

            if (!TryGetLive(key, out Slot? slot))
            {
                if (countAsAccess) _misses++;
                return WireStatus.NotFound;
            }

            if (countAsAccess && countHit) _hits++;
            ValueVersion version = slot.Current;
            version.LeaseCount++;
            lease = new ValueLease(
                this, ++_lastLeaseId, version, _arena.BaseAddress + (nint)version.Offset, holder, Stopwatch.GetTimestamp() + _leaseTimeoutTicks);
            _leaseQueue.Append(lease);
            _activeLeases++;
            if (countAsAccess) _policy.OnAccess(slot);
            return WireStatus.Ok;
        }
    }

    /// <summary>
    /// Ends a lease; its memory may be reused as soon as this returns. Idempotent: true when this
    /// call ended the lease, false when it had ended already (released before, or expired — its
    /// bytes may have been reused since).
    /// </summary>
    public bool Release(ValueLease lease)
    {
        ArgumentNullException.ThrowIfNull(lease);
        if (lease.Store != this)
        {
            throw new ArgumentException("The lease belongs to another store.", nameof(lease));
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            return ReleaseLocked(lease);
        }
    }

    /// <summary>
    /// Handles leases past their deadline: a lease without holder is released here; a lease with a holder gets
    /// <see cref="ILeaseHolder.OnLeaseExpired"/> once (outside the lock) and stays until the holder releases it.
    /// A background timer calls this every LeaseTimeout/4 (clamped to 1..5 s); calling it directly is also fine.
    /// </summary>
    /// <returns>How many leases expired in this call.</returns>
    /// <exception cref="AggregateException">One or more holders threw; every holder was still notified.</exception>
    public int ReapExpiredLeases()
    {
        List<ValueLease>? notify = CollectExpired(out int expired, throwIfDisposed: true);
        if (notify is not null)
        {
            NotifyHolders(notify);
        }

        return expired;
    }

    private bool ReleaseLocked(ValueLease lease)
    {
        if (lease.Released)
        {
            return false;
        }

        lease.Released = true;
        _leaseQueue.Remove(lease);
        _activeLeases--;
        ValueVersion version = lease.Version;
        if (--version.LeaseCount == 0 && version.State == VersionState.Retired)
        {
            FreeSpace(version);
        }

        return true;
    }

    private List<ValueLease>? CollectExpired(out int expired, bool throwIfDisposed)
    {
        expired = 0;
        List<ValueLease>? notify = null;
        lock (_gate)
        {
            if (_disposed)
            {
                ObjectDisposedException.ThrowIf(throwIfDisposed, this);
                return null;
            }

            long now = Stopwatch.GetTimestamp();
            while (_leaseQueue.Oldest is ValueLease lease && lease.Deadline <= now)
            {
                _leaseQueue.Remove(lease);
                expired++;
                if (lease.Holder is null)
                {
                    ReleaseLocked(lease);
                }
                else
                {
                    (notify ??= []).Add(lease);
                }
            }
        }

        return notify;
    }

    private static void NotifyHolders(List<ValueLease> expired)
    {
        List<Exception>? errors = null;
        foreach (ValueLease lease in expired)
        {
            try
            {
                lease.Holder!.OnLeaseExpired();
            }
            catch (Exception ex)
            {
                (errors ??= []).Add(ex);
            }
        }

        if (errors is not null)
        {
            throw new AggregateException("One or more lease holders threw from OnLeaseExpired.", errors);
        }
    }

    private void ReapFromTimer()
    {
        try
        {
            SweepExpired(SweepBatch);
            List<ValueLease>? notify = CollectExpired(out _, throwIfDisposed: false);
            if (notify is not null)
            {
                NotifyHolders(notify);
            }
        }
        catch (AggregateException)
        {
            // A throwing holder must not take the process down from a timer thread; the others were notified.
        }
    }
}
