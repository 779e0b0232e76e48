using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>The disk tier alone, on real files, with and without injected faults.</summary>
public sealed class DiskTierTests
{
    private static DiskTier Open(IDeviceFactory factory, long capacity, long segmentBytes = 0)
        => new(factory, capacity, segmentBytes, DiskSyncMode.None, new VersionClock());

    private static unsafe bool Append(DiskTier disk, byte[] key, byte[] value)
    {
        fixed (byte* p = value)
            return disk.WriteAsync(key, (nint)p, value.Length, Crc32C.Compute(value)).WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult().Ok;
    }

    private static void Remove(DiskTier disk, byte[] key)
        => Assert.True(disk.RemoveAsync(key).WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult().Ok, "tombstone not written");

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
        using (var disk = Open(new FileDeviceFactory(dir.Path), 64L << 20))
        {
            foreach (var size in new[] { 0, 1, 7, 8, 4095, 4096, 4097, 1 << 20 })
                Assert.True(Append(disk, TestValues.Key($"s{size}"), TestValues.For($"s{size}", size)));
            Append(disk, TestValues.Key("over"), TestValues.For("over", 100, 1));
            Append(disk, TestValues.Key("over"), TestValues.For("over", 200, 2));
            Append(disk, TestValues.Key("gone"), TestValues.For("gone", 10));
            Remove(disk, TestValues.Key("gone"));
            Assert.Equal(TestValues.For("over", 200, 2), Read(disk, "over"));
        }
        using var again = Open(new FileDeviceFactory(dir.Path), 64L << 20);
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
        using (var disk = Open(factory, 64L << 20))
        {
            Append(disk, TestValues.Key("before"), TestValues.For("before", 5000));
            Append(disk, TestValues.Key("torn"), TestValues.For("torn", 3000, 1));
            factory.Faults.TearNextWrite = true;   // the header lands, half the value does not
            Assert.False(Append(disk, TestValues.Key("torn"), TestValues.For("torn", 9000, 2)));
            Assert.NotNull(disk.Degraded);
            // The failed write was not acknowledged (its PUT answers TIER_FAILED): the key keeps the value it had.
            Assert.Equal(TestValues.For("torn", 3000, 1), Read(disk, "torn"));
            Append(disk, TestValues.Key("after"), TestValues.For("after", 6000));
        }
        using var again = Open(new FileDeviceFactory(dir.Path), 64L << 20);
        Assert.Equal(TestValues.For("before", 5000), Read(again, "before"));
        Assert.Equal(TestValues.For("after", 6000), Read(again, "after"));
        // The torn record never got its index entry, so recovery never looks at it; the acknowledged value stays.
        Assert.Equal(TestValues.For("torn", 3000, 1), Read(again, "torn"));
    }

    [Fact]
    public void A_torn_tail_from_a_crash_is_skipped_by_recovery()
    {
        using var dir = new TempDir();
        using (var disk = Open(new FileDeviceFactory(dir.Path), 64L << 20))
        {
            Append(disk, TestValues.Key("whole"), TestValues.For("whole", 4000));
            Append(disk, TestValues.Key("tail"), TestValues.For("tail", 4000));
        }
        var segment = Directory.GetFiles(dir.Path, "*.dat").Single();
        using (var f = File.OpenWrite(segment)) f.SetLength(f.Length - 1000);   // the crash cut the last record
        using var again = Open(new FileDeviceFactory(dir.Path), 64L << 20);
        Assert.Equal(TestValues.For("whole", 4000), Read(again, "whole"));
        Assert.False(again.Contains(TestValues.Key("tail")));
        Assert.Equal(1, Stat(again, "disk_damaged_records"));
    }

    [Fact]
    public void Flipped_bytes_on_disk_are_a_miss_and_an_error_count_never_data()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        using var disk = Open(factory, 64L << 20);
        Append(disk, TestValues.Key("k"), TestValues.For("k", 10_000));
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
        using var disk = Open(factory, 64L << 20);
        Append(disk, TestValues.Key("a"), TestValues.For("a", 100));
        factory.Faults.FailWrites = true;
        Assert.False(Append(disk, TestValues.Key("b"), TestValues.For("b", 100)));
        Assert.Contains("injected write error", disk.Degraded);
        factory.Faults.FailWrites = false;
        factory.Faults.FailReads = true;
        Assert.Null(Read(disk, "a"));
        Assert.Equal(1, Stat(disk, "disk_read_errors"));
        factory.Faults.FailReads = false;
        Assert.True(Append(disk, TestValues.Key("c"), TestValues.For("c", 100)));
        Assert.Equal(TestValues.For("c", 100), Read(disk, "c"));
    }

    [Fact]
    public void A_full_disk_refuses_writes_cleanly_and_reports_it()
    {
        using var dir = new TempDir();
        var factory = new FaultInjectingDeviceFactory(new FileDeviceFactory(dir.Path));
        factory.Faults.DiskBytes = 300_000;
        using var disk = Open(factory, 64L << 20);
        int stored = 0;
        for (int i = 0; i < 10; i++)
            if (Append(disk, TestValues.Key($"f{i}"), TestValues.For($"f{i}", 50_000))) stored++;
        Assert.InRange(stored, 1, 6);
        Assert.Equal(1, Stat(disk, "disk_full"));
        Assert.Contains("disk full", disk.Degraded);
        for (int i = 0; i < stored; i++) Assert.Equal(TestValues.For($"f{i}", 50_000), Read(disk, $"f{i}"));
    }

    [Fact]
    public void Beyond_capacity_the_oldest_segment_goes_and_recent_values_stay()
    {
        using var dir = new TempDir();
        using var disk = Open(new FileDeviceFactory(dir.Path), 8L << 20, 1L << 20);
        for (int i = 0; i < 40; i++) Append(disk, TestValues.Key($"c{i}"), TestValues.For($"c{i}", 500_000));
        Assert.True(Stat(disk, "disk_bytes") <= 8L << 20);
        Assert.True(Stat(disk, "disk_deleted_segments") > 0);
        Assert.Null(Read(disk, "c0"));
        for (int i = 30; i < 40; i++) Assert.Equal(TestValues.For($"c{i}", 500_000), Read(disk, $"c{i}"));
        Assert.True(Directory.GetFiles(dir.Path, "*.dat").Length <= 9);
    }
}
