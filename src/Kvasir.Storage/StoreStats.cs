using Kvasir.Protocol;
namespace Kvasir.Storage;

/// <summary>A consistent snapshot of a store's counters, taken under its lock by <see cref="KvArenaStore.GetStats"/>.</summary>
/// <param name="Capacity">Configured arena size in bytes.</param>
/// <param name="AllocatedBytes">Arena bytes held by published values, reservations and overwritten or removed versions still leased, in whole allocation units.</param>
/// <param name="LiveBytes">Sum of the lengths of published (visible) values.</param>
/// <param name="Keys">Number of visible keys.</param>
/// <param name="Reservations">Reservations neither committed nor aborted.</param>
/// <param name="ActiveLeases">Leases not yet released (including expired ones whose holder has not released them).</param>
/// <param name="PinnedKeys">Visible keys with a pin count above zero.</param>
/// <param name="Hits">TryLease calls that found the key.</param>
/// <param name="Misses">TryLease calls that did not.</param>
/// <param name="Puts">Successful commits.</param>
/// <param name="Removes">Remove calls that found the key.</param>
/// <param name="Evictions">Values evicted to make room.</param>
/// <param name="EvictedBytes">Sum of the lengths of evicted values.</param>
/// <param name="OutOfMemory">TryReserve calls answered <see cref="WireStatus.OutOfMemory"/>.</param>
/// <param name="Utilisation">LiveBytes / Capacity.</param>
/// <param name="LargestFreeExtentBytes">Largest contiguous free extent: the longest value that fits without evicting.</param>
/// <param name="LateParentLinks">Chain blocks stored before their parent (<c>PARENT_FOLLOWS</c>) and linked to it when it came.</param>
/// <param name="LateParentWaits">Chain blocks waiting for their parent now.</param>
public sealed record StoreStats(
    long Capacity,
    long AllocatedBytes,
    long LiveBytes,
    long Keys,
    long Reservations,
    long ActiveLeases,
    long PinnedKeys,
    long Hits,
    long Misses,
    long Puts,
    long Removes,
    long Evictions,
    long EvictedBytes,
    long OutOfMemory,
    double Utilisation,
    long LargestFreeExtentBytes,
    long LateParentLinks = 0,
    long LateParentWaits = 0);
