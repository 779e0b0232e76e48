using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// PARENT_FOLLOWS through a node with a disk tier: the values are written to disk before they are published in DRAM,
/// and a block stored before its parent still waits for it there and is linked when the parent is published.
/// </summary>
public sealed class LateParentTierTests
{
    private static async Task CommitAsync(TieredStore store, string key, byte[]? parent = null, bool parentFollows = false)
    {
        Assert.Equal(WireStatus.Ok, store.TryReserve(TestValues.Key(key), 4096, out var reservation));
        TestValues.Value(key.Length, 4096).CopyTo(reservation!.Span);
        Assert.Equal(WireStatus.Ok, await store.CommitAsync(reservation, Crc32C.Compute(reservation.Span), parent, parentFollows: parentFollows)
            .WaitAsync(StoreHelpers.Deadline));
    }

    [Fact]
    public async Task A_block_written_through_the_disk_before_its_parent_is_linked_when_the_parent_is_published()
    {
        using var dir = new TempDir();
        using var store = new TieredStore(new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 },
            new TierOptions { DiskPath = dir.Path, DiskCapacity = 64L << 20, SegmentBytes = 8L << 20 });
        await CommitAsync(store, "c/2", TestValues.Key("c/1"), parentFollows: true);
        Assert.Equal(1, store.GetStats().LateParentWaits);
        await CommitAsync(store, "c/0");
        await CommitAsync(store, "c/1", TestValues.Key("c/0"));
        Assert.Equal(1, store.GetStats().LateParentLinks);
        Assert.Equal(0, store.GetStats().LateParentWaits);
        Assert.Equal(3, store.Stat("disk_keys"));
    }
}
