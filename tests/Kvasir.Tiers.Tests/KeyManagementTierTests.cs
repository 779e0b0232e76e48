using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>Expiry and removal by prefix reach the disk tier; scans stay bounded.</summary>
public sealed class KeyManagementTierTests
{
    private static readonly StoreOptions Dram = new() { Capacity = 16L << 20, MaxValueBytes = 4L << 20 };

    private static TierOptions Disk(TempDir dir) => new() { DiskPath = dir.Path, DiskCapacity = 64L << 20, SegmentBytes = 8L << 20 };

    private static async Task PutTtlAsync(TieredStore store, string key, int bytes, TimeSpan? ttl)
    {
        Assert.Equal(WireStatus.Ok, store.TryReserve(TestValues.Key(key), bytes, out var reservation));
        reservation!.Ttl = ttl;
        Assert.Equal(WireStatus.Ok, await store.CommitAsync(reservation, Crc32C.Compute(reservation.Span)).WaitAsync(StoreHelpers.Deadline));
    }

    [Fact]
    public async Task An_expired_value_is_removed_from_the_disk_too_and_does_not_come_back_on_restart()
    {
        using var dir = new TempDir();
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            await PutTtlAsync(store, "short", 1000, TimeSpan.FromSeconds(1));
            await PutTtlAsync(store, "kept", 1000, null);
            Assert.Equal(2, store.Stat("disk_keys"));
            await Poll.UntilAsync(() => store.SweepExpired() > 0 || !store.InDram(TestValues.Key("short")), "the 1 s value to expire in DRAM");
            Assert.Null(await store.GetAsync("short"));
            await Poll.UntilAsync(() => store.Stat("disk_keys") == 1, () => $"the expired value's disk copy to be removed (disk_keys {store.Stat("disk_keys")})");
        }
        using var again = new TieredStore(Dram, Disk(dir));
        Assert.Null(await again.GetAsync("short"));
        Assert.NotNull(await again.GetAsync("kept"));
    }

    [Fact]
    public async Task Remove_prefix_removes_keys_only_the_disk_holds()
    {
        using var dir = new TempDir();
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            for (int i = 0; i < 5; i++) await store.PutAsync($"d/{i}", new byte[100]);
            await store.PutAsync("e/0", new byte[100]);
        }
        using var again = new TieredStore(Dram, Disk(dir));   // recovered: on disk, not in DRAM
        Assert.Empty(again.Scan(TestValues.Key("d/"), default, 10).Keys);
        Assert.Equal(StoreTier.Disk, again.Info(TestValues.Key("d/1"))!.Tier);
        Assert.Equal((5L, 0L), await again.RemovePrefixAsync(TestValues.Key("d/")));
        Assert.Null(await again.GetAsync("d/1"));
        Assert.NotNull(await again.GetAsync("e/0"));
    }

    [Fact]
    public async Task A_namespace_budget_counts_the_dram_bytes_put_on_this_node_not_disk_copies_nor_values_read_back()
    {
        using var dir = new TempDir();
        var dram = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 4L << 20, Namespaces = [new NamespaceQuota(TestValues.Key("t/"), 1000)] };
        var tiers = new TierOptions { DiskPath = dir.Path, DiskCapacity = 64L << 20, SegmentBytes = 8L << 20, PromoteAfter = 1 };
        using (var store = new TieredStore(dram, tiers))
        {
            Assert.Equal(WireStatus.Ok, await store.PutAsync("t/a", new byte[1000]));
            Assert.Equal(WireStatus.QuotaExceeded, await store.PutAsync("t/b", new byte[1]));
            Assert.Equal(1000, store.NamespaceOf(TestValues.Key("t/b"))!.Value.UsedBytes);
        }
        using var again = new TieredStore(dram, tiers);
        Assert.Equal(StoreTier.Disk, again.Info(TestValues.Key("t/a"))!.Tier);
        Assert.Equal(0, again.NamespaceOf(TestValues.Key("t/a"))!.Value.UsedBytes);   // on disk only: not counted
        Assert.NotNull(await again.GetAsync("t/a"));
        Assert.True(again.InDram(TestValues.Key("t/a")), "the read should have promoted t/a");
        Assert.Equal(0, again.NamespaceOf(TestValues.Key("t/a"))!.Value.UsedBytes);   // read back into DRAM: not counted
        Assert.Equal(WireStatus.Ok, await again.PutAsync("t/b", new byte[1000]));
        Assert.Equal(1000, again.NamespaceOf(TestValues.Key("t/b"))!.Value.UsedBytes);
        Assert.Equal(WireStatus.QuotaExceeded, await again.PutAsync("t/c", new byte[1]));
    }

    [Fact]
    public void A_scan_page_never_holds_more_than_its_limit_and_its_cursor_resumes_after_the_last_key()
    {
        var store = new KvArenaStore(new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 4L << 20 });
        try
        {
            for (int i = 0; i < 100; i++)
            {
                Assert.Equal(WireStatus.Ok, store.TryReserve(TestValues.Key($"k{i:D3}"), 1, out var r));
                store.Commit(r!, 0);
            }
            var seen = new List<string>();
            byte[] cursor = [];
            KeyPage page;
            do
            {
                page = store.Scan(default, cursor, 7);
                Assert.InRange(page.Keys.Count, 0, 7);
                seen.AddRange(page.Keys.Select(k => System.Text.Encoding.UTF8.GetString(k.Key)));
                if (page.Keys.Count > 0) cursor = page.Keys[^1].Key;
            }
            while (page.More);
            Assert.Equal(Enumerable.Range(0, 100).Select(i => $"k{i:D3}"), seen);
            Assert.Throws<ArgumentOutOfRangeException>(() => store.Scan(default, default, 0));
        }
        finally
        {
            store.Dispose();
        }
    }
}
