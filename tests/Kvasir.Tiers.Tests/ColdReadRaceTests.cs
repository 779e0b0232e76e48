using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>A cold read that a write of its key overtakes serves a value of the key, never a miss, while the key is stored throughout.</summary>
public sealed class ColdReadRaceTests
{
    [Fact]
    public async Task A_cold_read_overtaken_by_an_overwrite_whose_old_segment_is_dropped_serves_the_newer_value()
    {
        // The read of "k" finds its disk record, then waits for the only tier read thread (held by a read of "blocker" on a
        // stalled device). Meanwhile "k" is overwritten and fillers push the disk tier over its capacity, so the segment
        // holding the record the read found is dropped. The key was stored all along. (Before: the read found its segment
        // gone and answered a miss.)
        const int Block = 64 * 1024;
        using var dir = new TempDir();
        var devices = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        using var store = new TieredStore(new StoreOptions { Capacity = 512 * 1024, MaxValueBytes = 128 * 1024 },
            new TierOptions { DiskPath = dir.Path, DiskCapacity = 2L << 20, SegmentBytes = 256 * 1024, ReadThreads = 1, PromoteAfter = 100, DeviceFactory = devices });
        Assert.Equal(WireStatus.Ok, await store.PutAsync("blocker", TestValues.For("blocker", Block)));
        Assert.Equal(WireStatus.Ok, await store.PutAsync("k", TestValues.For("k", Block, version: 1)));
        int filler = 0;
        for (; filler < 12; filler++) Assert.Equal(WireStatus.Ok, await store.PutAsync($"f/{filler}", TestValues.For($"f/{filler}", Block)));
        Assert.False(store.GetStats().Keys > 8, "the fillers did not push the first values out of DRAM");

        using var gate = new ManualResetEventSlim(false);
        devices.Faults.ReadGate = gate;
        var blocked = store.GetAsync("blocker");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (Interlocked.Read(ref devices.Faults.ReadsWaiting) == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the read of blocker never reached the device");
            await Task.Delay(5);
        }
        var read = store.GetAsync("k");   // located on disk; its read waits for the tier thread
        Assert.False(read.IsCompleted, "the read of k did not wait for the tier thread");
        Assert.Equal(WireStatus.Ok, await store.PutAsync("k", TestValues.For("k", Block, version: 2)));
        for (long dropped = store.Stat("disk_deleted_segments"); dropped == 0 && filler < 200; filler++, dropped = store.Stat("disk_deleted_segments"))
            Assert.Equal(WireStatus.Ok, await store.PutAsync($"f/{filler}", TestValues.For($"f/{filler}", Block)));
        Assert.True(store.Stat("disk_deleted_segments") > 0, "200 fillers did not make the disk tier drop a segment");
        gate.Set();
        await blocked;
        var value = await read;
        Assert.NotNull(value);
        Assert.Equal(TestValues.For("k", Block, version: 2), value);
    }
}
