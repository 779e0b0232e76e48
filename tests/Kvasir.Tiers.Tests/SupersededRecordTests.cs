using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// A write whose version (chosen by the writer, a PUT's VERSION) is older than the key's newest record is superseded:
/// it must never come back, not even after the segment of the newer record is dropped for capacity and the node
/// restarts on the same directory (recovery reads every record that is on disk).
/// </summary>
public sealed class SupersededRecordTests
{
    private const int Ki = 1024;
    private static readonly StoreOptions Dram = new() { Capacity = 32L << 20, MaxValueBytes = 1L << 20 };

    private static TierOptions Disk(TempDir dir) => new() { DiskPath = dir.Path, DiskCapacity = 4L << 20, SegmentBytes = 1L << 20 };

    private static async Task PutVersionAsync(TieredStore store, string key, byte[] value, long version)
    {
        Assert.Equal(WireStatus.Ok, store.TryReserve(TestValues.Key(key), value.Length, out var reservation));
        value.CopyTo(reservation!.Span);
        Assert.Equal(WireStatus.Ok, await store.CommitAsync(reservation, Crc32C.Compute(value), version: version).WaitAsync(StoreHelpers.Deadline));
    }

    [Fact]
    public async Task A_superseded_older_version_never_comes_back_after_the_newer_ones_segment_is_dropped_and_the_node_restarts()
    {
        using var dir = new TempDir();
        var newer = TestValues.For("k", 64 * Ki, version: 2000);
        var older = TestValues.For("k", 64 * Ki, version: 1000);
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            await PutVersionAsync(store, "k", newer, 2000);
            for (int i = 0; i < 20; i++) Assert.Equal(WireStatus.Ok, await store.PutAsync($"a/{i}", TestValues.For($"a/{i}", 64 * Ki)));
            // Lands in the second segment; superseded (Ok, not published: DRAM keeps version 2000).
            await PutVersionAsync(store, "k", older, 1000);
            Assert.Equal(newer, await store.GetAsync("k"));
            for (int i = 0; store.Stat("disk_deleted_segments") == 0; i++)
            {
                Assert.True(i < 200, "the first segment was never dropped");
                Assert.Equal(WireStatus.Ok, await store.PutAsync($"b/{i}", TestValues.For($"b/{i}", 64 * Ki)));
            }
        }
        using var again = new TieredStore(Dram, Disk(dir));
        var read = await again.GetAsync("k");
        Assert.False(read is not null && read.AsSpan().SequenceEqual(older), "the superseded version 1000 came back after a restart");
        Assert.Null(read);   // version 2000 left the disk with its segment: a miss
    }

    [Theory]
    [InlineData(DiskSyncMode.Always)]
    [InlineData(DiskSyncMode.Batch)]
    public async Task A_put_refused_because_its_sync_failed_does_not_come_back_after_a_restart(DiskSyncMode sync)
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        var tiers = new TierOptions { DiskPath = dir.Path, DiskCapacity = 4L << 20, SegmentBytes = 1L << 20, DiskSync = sync, DeviceFactory = factory };
        var first = TestValues.For("k", 4 * Ki, version: 1);
        var refused = TestValues.For("k", 4 * Ki, version: 2);
        using (var store = new TieredStore(Dram, tiers))
        {
            Assert.Equal(WireStatus.Ok, await store.PutAsync("k", first));
            factory.Faults.FailFlushes = true;
            Assert.Equal(WireStatus.TierFailed, await store.PutAsync("k", refused));
            Assert.Equal(first, await store.GetAsync("k"));
            factory.Faults.FailFlushes = false;
        }
        using var again = new TieredStore(Dram, new TierOptions { DiskPath = dir.Path, DiskCapacity = 4L << 20, SegmentBytes = 1L << 20 });
        Assert.Equal(first, await again.GetAsync("k"));   // the key keeps the value it had, as TIER_FAILED promised
    }
}
