namespace Kvasir.Storage.Internal;

/// <summary>
/// Unexpired, unreleased leases in deadline order. Every lease gets the same timeout from a monotonic clock, so
/// issue order is deadline order and appending keeps the queue sorted; release unlinks in O(1), and the reaper only
/// looks at the expired front. Not thread-safe: used under the store's lock.
/// </summary>
internal sealed class LeaseQueue
{
    private readonly IntrusiveList<ValueLease> _leases = new();

    public ValueLease? Oldest => _leases.First;

    public void Append(ValueLease lease) => _leases.AddLast(lease);

    public void Remove(ValueLease lease) => _leases.Remove(lease);
}
