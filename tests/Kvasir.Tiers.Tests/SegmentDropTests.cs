using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>Dropping the oldest segment costs what it drops: the keys of that segment, never a walk of the whole index.</summary>
public sealed class SegmentDropTests
{
    [Fact]
    public async Task With_a_million_keys_indexed_a_segment_drop_visits_only_the_keys_of_that_segment()
    {
        using var dir = new TempDir();
        // Records of empty values with 16-byte keys: 64 bytes of data and 64 of index each. Segments of 4 MiB of data
        // hold 65,536 records (8 MiB with their index); 16 segments take 128 MiB of the 132 MiB, so half-way through
        // the 17th segment the first one is dropped, with 1,048,576 keys left indexed.
        const int PerSegment = 65_536, Segments = 17;
        using var disk = new DiskTier(new FileDeviceFactory(dir.Path), 132L << 20, 4L << 20, DiskSyncMode.None, new VersionClock());
        var pending = new List<Task<DiskWrite>>(PerSegment);
        for (int i = 0; i < PerSegment * Segments; i++)
        {
            pending.Add(disk.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"key-{i:D12}"), 0, 0, 0));
            if (pending.Count == PerSegment)
            {
                Assert.All(await Task.WhenAll(pending).WaitAsync(TimeSpan.FromSeconds(120)), w => Assert.True(w.Ok, w.Error));
                pending.Clear();
            }
        }
        var stats = disk.Stats().ToDictionary(p => p.Key, p => p.Value);
        Assert.True(stats["disk_keys"] >= 1_000_000, $"only {stats["disk_keys"]} keys indexed");
        long deleted = stats["disk_deleted_segments"];
        Assert.InRange(deleted, 1, 2);
        // Every drop visited exactly the records of the segment it dropped: O(keys dropped), not O(keys indexed).
        Assert.Equal(deleted * PerSegment, disk.DropVisits);
        Assert.Equal(deleted * PerSegment, stats["disk_dropped_keys"]);
        Assert.Equal((long)PerSegment * Segments - deleted * PerSegment, stats["disk_keys"]);
        Assert.False(disk.Contains(System.Text.Encoding.ASCII.GetBytes($"key-{0:D12}")));
        Assert.True(disk.Contains(System.Text.Encoding.ASCII.GetBytes($"key-{PerSegment * Segments - 1:D12}")));
    }
}
