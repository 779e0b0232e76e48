using Kvasir.Cli.Tests;
using Kvasir.Client;
using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// A value's deadline is written down with its copies below DRAM (the disk record's index entry, the shared file's
/// header): after a restart, on another node reading the shared tier, and once promoted back into DRAM, a value
/// expires when its TTL said, never lives on without one.
/// </summary>
public sealed class TtlPersistenceTests
{
    private static readonly StoreOptions Dram = new() { Capacity = 16L << 20, MaxValueBytes = 4L << 20 };
    private static readonly TimeSpan Hour = TimeSpan.FromHours(1);

    /// <summary>Bounded wait for a 1 s TTL to pass on a loaded machine.</summary>
    private static readonly TimeSpan ExpiryWait = TimeSpan.FromSeconds(30);

    private static TierOptions Disk(TempDir dir) => new() { DiskPath = dir.Path, DiskCapacity = 64L << 20, SegmentBytes = 8L << 20, PromoteAfter = 1 };

    private static TierOptions Shared(TempDir dir) => new() { SharedFsPath = dir.Path, PromoteAfter = 1 };

    private static async Task PutTtlAsync(TieredStore store, string key, int bytes, TimeSpan? ttl)
    {
        Assert.Equal(WireStatus.Ok, store.TryReserve(TestValues.Key(key), bytes, out var reservation));
        TestValues.For(key, bytes).CopyTo(reservation!.Span);
        reservation.Ttl = ttl;
        Assert.Equal(WireStatus.Ok, await store.CommitAsync(reservation, Crc32C.Compute(reservation.Span)).WaitAsync(StoreHelpers.Deadline));
    }

    private static async Task<bool> ExistsAsync(TieredStore store, string key)
        => await store.ExistsAsync(TestValues.Key(key)).AsTask().WaitAsync(StoreHelpers.Deadline) == WireStatus.Ok;

    /// <summary>Asserts the key's remaining life is more than a minute and at most an hour (and the second the shared tier rounds up to).</summary>
    private static void AssertHourTtl(KeyInfo? info, StoreTier tier, string what)
    {
        Assert.True(info is not null, $"{what}: no info (the key is gone)");
        Assert.Equal(tier, info.Tier);
        Assert.True(info.TtlMs is > 60_000 and <= 3_601_000, $"{what}: TTL {info.TtlMs} ms, expected the rest of the hour it was written with");
    }

    [Fact]
    public async Task A_recovered_disk_value_keeps_its_deadline_and_expires_after_a_restart()
    {
        using var dir = new TempDir();
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            await PutTtlAsync(store, "short", 1000, TimeSpan.FromSeconds(1));
            await PutTtlAsync(store, "long", 1000, Hour);
            await PutTtlAsync(store, "never", 1000, null);
        }
        using var again = new TieredStore(Dram, Disk(dir));
        AssertHourTtl(again.Info(TestValues.Key("long")), StoreTier.Disk, "long, recovered");
        Assert.Equal(0, again.Info(TestValues.Key("never"))!.TtlMs);
        await Poll.UntilAsync(async () => await again.GetAsync("short") is null, () => "the 1 s value recovered from disk to expire", ExpiryWait);
        Assert.False(await ExistsAsync(again, "short"));
        Assert.Null(again.Info(TestValues.Key("short")));
        Assert.Equal(TestValues.For("long", 1000), await again.GetAsync("long"));
        Assert.Equal(TestValues.For("never", 1000), await again.GetAsync("never"));
    }

    [Fact]
    public async Task A_value_promoted_from_disk_after_a_restart_keeps_the_rest_of_its_ttl_in_dram()
    {
        using var dir = new TempDir();
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            await PutTtlAsync(store, "long", 1000, Hour);
            await PutTtlAsync(store, "never", 1000, null);
        }
        using var again = new TieredStore(Dram, Disk(dir));
        Assert.NotNull(await again.GetAsync("long"));    // PromoteAfter = 1: published in DRAM by this read
        Assert.NotNull(await again.GetAsync("never"));
        Assert.True(again.InDram(TestValues.Key("long")), "the read should have promoted the value");
        AssertHourTtl(again.Info(TestValues.Key("long")), StoreTier.Dram, "long, promoted");
        Assert.Equal(0, again.Info(TestValues.Key("never"))!.TtlMs);
    }

    [Fact]
    public async Task A_record_whose_index_entry_has_no_deadline_as_older_nodes_wrote_it_reads_as_never_expiring()
    {
        using var dir = new TempDir();
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            await PutTtlAsync(store, "legacy", 1000, TimeSpan.FromSeconds(1));
            await PutTtlAsync(store, "short", 1000, TimeSpan.FromSeconds(1));
        }
        // Rewrite legacy's index entry as a node without expiries wrote it: zeros where the deadline now is.
        int rewritten = 0;
        foreach (var index in Directory.GetFiles(dir.Path, "seg-*.idx"))
        {
            var data = File.ReadAllBytes(Path.ChangeExtension(index, ".dat"));
            var entries = File.ReadAllBytes(index);
            for (int e = 0; e + DiskRecord.IndexEntrySize <= entries.Length; e += DiskRecord.IndexEntrySize)
            {
                var raw = entries.AsSpan(e, DiskRecord.IndexEntrySize);
                if (!DiskRecord.TryParseIndexEntry(raw, 0, out var r, out int keyLength, out uint keyCrc, out long expiresAt)) continue;
                if (!data.AsSpan((int)r.Offset + DiskRecord.HeaderSize, keyLength).SequenceEqual(TestValues.Key("legacy"))) continue;
                Assert.NotEqual(0, expiresAt);   // written with its deadline
                DiskRecord.WriteIndexEntry(raw, r, keyLength, keyCrc);
                rewritten++;
            }
            File.WriteAllBytes(index, entries);
        }
        Assert.Equal(1, rewritten);
        using var again = new TieredStore(Dram, Disk(dir));
        await Poll.UntilAsync(async () => await again.GetAsync("short") is null, () => "the 1 s value to expire", ExpiryWait);
        Assert.Equal(TestValues.For("legacy", 1000), await again.GetAsync("legacy"));
        Assert.Equal(0, again.Info(TestValues.Key("legacy"))!.TtlMs);
    }

    [Fact]
    public async Task Another_node_reading_the_shared_tier_honours_the_writers_deadline()
    {
        using var dir = new TempDir();
        using (var writer = new TieredStore(Dram, Shared(dir)))
        {
            await PutTtlAsync(writer, "s-short", 1000, TimeSpan.FromSeconds(1));
            await PutTtlAsync(writer, "s-long", 1000, Hour);
            await PutTtlAsync(writer, "s-never", 1000, null);
            Assert.True(writer.DrainShared(StoreHelpers.Deadline), "the shared writes to finish");
        }
        using var reader = new TieredStore(Dram, Shared(dir));   // another node on the same shared path
        Assert.Equal(TestValues.For("s-long", 1000), await reader.GetAsync("s-long"));
        Assert.True(reader.InDram(TestValues.Key("s-long")), "the read should have promoted the value");
        AssertHourTtl(reader.Info(TestValues.Key("s-long")), StoreTier.Dram, "s-long, promoted from the shared tier");
        Assert.Equal(TestValues.For("s-never", 1000), await reader.GetAsync("s-never"));
        Assert.Equal(0, reader.Info(TestValues.Key("s-never"))!.TtlMs);
        await Poll.UntilAsync(async () => !await ExistsAsync(reader, "s-short") && await reader.GetAsync("s-short") is null,
            () => "the 1 s shared value to expire for the other node", ExpiryWait);
    }

    [Fact]
    public async Task A_restarted_node_serves_a_ttl_value_until_its_deadline_and_then_never_again()
    {
        using var dir = new TempDir();
        string[] flags = ["--port", "0", "--memory", "32MiB", "--disk", dir.Path, "--disk-capacity", "256MiB", "--log-level", "warning"];
        await using (var node = await ServeProcess.StartAsync(flags))
        {
            await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Server });
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key("n-short")], [TestValues.For("n-short", 5000)], new PutOptions { Ttl = TimeSpan.FromSeconds(1) }))[0]);
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key("n-long")], [TestValues.For("n-long", 5000)], new PutOptions { Ttl = Hour }))[0]);
            node.Process.Kill();   // SIGKILL: nothing but the disk remembers the deadlines
            Assert.True(await node.WaitForExitAsync(StoreHelpers.Deadline), "the killed node to exit");
        }
        await using var again = await ServeProcess.StartAsync(flags);
        await using var client = await KvStore.ConnectAsync(new KvStoreOptions { Server = again.Server });
        var info = (await client.InfoAsync([TestValues.Key("n-long")]))[0];
        Assert.Equal(KvStatus.Ok, info.Status);
        Assert.True(info.Ttl is { } ttl && ttl > TimeSpan.FromMinutes(1) && ttl <= Hour, $"n-long after the restart: TTL {info.Ttl}, expected the rest of its hour");
        Assert.Equal(TestValues.For("n-long", 5000), await client.GetAsync(TestValues.Key("n-long")));
        await Poll.UntilAsync(async () => await client.GetAsync(TestValues.Key("n-short")) is null,
            () => "the restarted node to stop serving the 1 s value", ExpiryWait);
        Assert.Equal(KvStatus.NotFound, (await client.InfoAsync([TestValues.Key("n-short")]))[0].Status);
    }
}
