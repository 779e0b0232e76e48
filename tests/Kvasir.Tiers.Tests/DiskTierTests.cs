using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>The disk tier alone, on real files, with and without injected faults.</summary>
public sealed class DiskTierTests
{
    private static byte[]? Read(DiskTier disk, string key)
    {
        if (!disk.TryLocate(TestValues.Key(key), out var e)) return null;
        var buffer = new byte[e!.Length];
        return disk.TryRead(TestValues.Key(key), e, buffer) ? buffer : null;
    }

    private static long Stat(DiskTier disk, string name) => disk.Stats().Single(s => s.Key == name).Value;

    [Fact]
    public void Values_read_back_exact_and_survive_reopening_including_overwrites_and_removals()
    {
        using var dir = new TempDir();
        using (var disk = new DiskTier(new FileDeviceFactory(dir.Path), 64L << 20))
        {
            foreach (var size in new[] { 0, 1, 7, 8, 4095, 4096, 4097, 1 << 20 })
                Assert.True(disk.Append(TestValues.Key($"s{size}"), TestValues.For($"s{size}", size), Crc32C.Compute(TestValues.For($"s{size}", size))));
            disk.Append(TestValues.Key("over"), TestValues.For("over", 100, 1), Crc32C.Compute(TestValues.For("over", 100, 1)));
            disk.Append(TestValues.Key("over"), TestValues.For("over", 200, 2), Crc32C.Compute(TestValues.For("over", 200, 2)));
            disk.Append(TestValues.Key("gone"), TestValues.For("gone", 10), Crc32C.Compute(TestValues.For("gone", 10)));
            disk.Remove(TestValues.Key("gone"));
            Assert.Equal(TestValues.For("over", 200, 2), Read(disk, "over"));
        }
        using var again = new DiskTier(new FileDeviceFactory(dir.Path), 64L << 20);
        foreach (var size in new[] { 0, 1, 7, 8, 4095, 4096, 4097, 1 << 20 })
            Assert.Equal(TestValues.For($"s{size}", size), Read(again, $"s{size}"));
        Assert.Equal(TestValues.For("over", 200, 2), Read(again, "over"));   // the later record wins
        Assert.Null(Read(again, "gone"));                                 // the tombstone holds
        Assert.Equal(9, Stat(again, "disk_recovered_keys"));
        Assert.Null(again.Degraded);
    }

    [Fact]
    public void A_torn_write_is_dropped_at_recovery_and_the_records_around_it_survive()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        using (var disk = new DiskTier(factory, 64L << 20))
        {
            disk.Append(TestValues.Key("before"), TestValues.For("before", 5000), Crc32C.Compute(TestValues.For("before", 5000)));
            disk.Append(TestValues.Key("torn"), TestValues.For("torn", 3000, 1), Crc32C.Compute(TestValues.For("torn", 3000, 1)));
            factory.Faults.TearNextWrite = true;   // the header lands, half the value does not
            Assert.False(disk.Append(TestValues.Key("torn"), TestValues.For("torn", 9000, 2), Crc32C.Compute(TestValues.For("torn", 9000, 2))));
            Assert.NotNull(disk.Degraded);
            Assert.Null(Read(disk, "torn"));   // the older copy is not served in place of the newer value
            disk.Append(TestValues.Key("after"), TestValues.For("after", 6000), Crc32C.Compute(TestValues.For("after", 6000)));
        }
        using var again = new DiskTier(new FileDeviceFactory(dir.Path), 64L << 20);
        Assert.Equal(TestValues.For("before", 5000), Read(again, "before"));
        Assert.Equal(TestValues.For("after", 6000), Read(again, "after"));
        // The torn record's header is intact, so recovery indexes it; its value fails the CRC on read: a miss, never bytes.
        Assert.Null(Read(again, "torn"));
        Assert.True(Stat(again, "disk_corrupt") + Stat(again, "disk_torn_records") >= 1);
    }

    [Fact]
    public void A_torn_tail_from_a_crash_is_skipped_by_recovery()
    {
        using var dir = new TempDir();
        using (var disk = new DiskTier(new FileDeviceFactory(dir.Path), 64L << 20))
        {
            disk.Append(TestValues.Key("whole"), TestValues.For("whole", 4000), Crc32C.Compute(TestValues.For("whole", 4000)));
            disk.Append(TestValues.Key("tail"), TestValues.For("tail", 4000), Crc32C.Compute(TestValues.For("tail", 4000)));
        }
        var segment = Directory.GetFiles(dir.Path).Single();
        using (var f = File.OpenWrite(segment)) f.SetLength(f.Length - 1000);   // the crash cut the last record
        using var again = new DiskTier(new FileDeviceFactory(dir.Path), 64L << 20);
        Assert.Equal(TestValues.For("whole", 4000), Read(again, "whole"));
        Assert.False(again.Contains(TestValues.Key("tail")));
        Assert.Equal(1, Stat(again, "disk_torn_records"));
    }

    [Fact]
    public void Flipped_bytes_on_disk_are_a_miss_and_an_error_count_never_data()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        using var disk = new DiskTier(factory, 64L << 20);
        disk.Append(TestValues.Key("k"), TestValues.For("k", 10_000), Crc32C.Compute(TestValues.For("k", 10_000)));
        factory.Faults.CorruptReads = true;
        Assert.Null(Read(disk, "k"));
        Assert.Equal(1, Stat(disk, "disk_corrupt"));
        Assert.False(disk.Contains(TestValues.Key("k")));   // dropped, not retried
        Assert.NotNull(disk.Degraded);
    }

    [Fact]
    public void Io_errors_are_misses_and_a_degraded_state_and_the_tier_recovers_when_they_stop()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        using var disk = new DiskTier(factory, 64L << 20);
        disk.Append(TestValues.Key("a"), TestValues.For("a", 100), Crc32C.Compute(TestValues.For("a", 100)));
        factory.Faults.FailWrites = true;
        Assert.False(disk.Append(TestValues.Key("b"), TestValues.For("b", 100), Crc32C.Compute(TestValues.For("b", 100))));
        Assert.Contains("injected write error", disk.Degraded);
        factory.Faults.FailWrites = false;
        factory.Faults.FailReads = true;
        Assert.Null(Read(disk, "a"));
        Assert.Equal(1, Stat(disk, "disk_read_errors"));
        factory.Faults.FailReads = false;
        Assert.True(disk.Append(TestValues.Key("c"), TestValues.For("c", 100), Crc32C.Compute(TestValues.For("c", 100))));
        Assert.Equal(TestValues.For("c", 100), Read(disk, "c"));
    }

    [Fact]
    public void A_full_disk_refuses_writes_cleanly_and_reports_it()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        factory.Faults.DiskBytes = 300_000;
        using var disk = new DiskTier(factory, 64L << 20);
        int stored = 0;
        for (int i = 0; i < 10; i++)
            if (disk.Append(TestValues.Key($"f{i}"), TestValues.For($"f{i}", 50_000), Crc32C.Compute(TestValues.For($"f{i}", 50_000)))) stored++;
        Assert.InRange(stored, 1, 6);
        Assert.Equal(1, Stat(disk, "disk_full"));
        Assert.Contains("disk full", disk.Degraded);
        for (int i = 0; i < stored; i++) Assert.Equal(TestValues.For($"f{i}", 50_000), Read(disk, $"f{i}"));
    }

    [Fact]
    public void Beyond_capacity_the_oldest_segment_goes_and_recent_values_stay()
    {
        using var dir = new TempDir();
        using var disk = new DiskTier(new FileDeviceFactory(dir.Path), 8L << 20, segmentBytes: 1L << 20);
        for (int i = 0; i < 40; i++) disk.Append(TestValues.Key($"c{i}"), TestValues.For($"c{i}", 500_000), Crc32C.Compute(TestValues.For($"c{i}", 500_000)));
        Assert.True(Stat(disk, "disk_bytes") <= 8L << 20);
        Assert.True(Stat(disk, "disk_deleted_segments") > 0);
        Assert.Null(Read(disk, "c0"));
        for (int i = 30; i < 40; i++) Assert.Equal(TestValues.For($"c{i}", 500_000), Read(disk, $"c{i}"));
        Assert.True(Directory.GetFiles(dir.Path).Length <= 9);
    }
}
