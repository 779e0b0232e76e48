namespace Kvasir.Storage;

/// <summary>
/// Owner of a <see cref="ValueLease"/> that wants to hear when the lease has outlived
/// <see cref="StoreOptions.LeaseTimeout"/> (for example a connection whose peer stopped reading).
/// </summary>
public interface ILeaseHolder
{
    /// <summary>
    /// Called at most once per lease, from the store's reaper (a thread-pool thread, never under the store's lock),
    /// when the lease passes its deadline. The holder must stop touching the lease's memory and then call
    /// <see cref="KvArenaStore.Release"/>. The memory is never freed before that Release: a holder that never
    /// releases keeps the value's space allocated for the life of the store.
    /// Must not throw; exceptions thrown here are swallowed when the call comes from the background timer.
    /// </summary>
    void OnLeaseExpired();
}
