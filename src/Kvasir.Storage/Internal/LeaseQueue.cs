namespace Kvasir.Storage.Internal;

/// <summary>
/// Unexpired, unreleased leases in deadline order. Every lease gets the same timeout from a monotonic clock, so
/// issue order is deadline order and appending keeps the queue sorted; release unlinks in O(1), and the reaper only
/// looks at the expired front. Not thread-safe: used under the store's lock.
/// </summary>
internal sealed class LeaseQueue
{
    private ValueLease? _oldest;
    private ValueLease? _newest;

    public ValueLease? Oldest => _oldest;

    public void Append(ValueLease lease)
    {
        lease.QueuePrev = _newest;
        lease.QueueNext = null;
        if (_newest is not null)
        {
            _newest.QueueNext = lease;
        }
        else
        {
            _oldest = lease;
        }

        _newest = lease;
        lease.InQueue = true;
    }

    public void Remove(ValueLease lease)
    {
        if (!lease.InQueue)
        {
            return;
        }

        if (lease.QueuePrev is not null)
        {
            lease.QueuePrev.QueueNext = lease.QueueNext;
        }
        else
        {
            _oldest = lease.QueueNext;
        }

        if (lease.QueueNext is not null)
        {
            lease.QueueNext.QueuePrev = lease.QueuePrev;
        }
        else
        {
            _newest = lease.QueuePrev;
        }

        lease.QueuePrev = null;
        lease.QueueNext = null;
        lease.InQueue = false;
    }
}
