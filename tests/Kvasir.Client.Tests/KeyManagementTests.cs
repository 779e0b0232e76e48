using System.Text;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

/// <summary>ls / info / rm --prefix, TTL and namespace quotas through the SDK against a real node, over every transport.</summary>
public sealed class KeyManagementTests
{
    private static ReadOnlyMemory<byte>[] Keys(string prefix, int n) => [.. Enumerable.Range(0, n).Select(i => Key($"{prefix}{i:D3}"))];

    private static ReadOnlyMemory<byte>[] Values(int n, int size) => [.. Enumerable.Range(0, n).Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, size))];

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Scan_lists_a_prefix_in_byte_order_in_pages_no_larger_than_asked_and_resumes_from_its_cursor(string transport)
    {
        await using var h = await StartAsync(transport);
        var keys = Keys("p/", 25);
        Assert.All(await h.Store.PutAsync(keys, Values(25, 10)), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(KvStatus.Ok, (await h.Store.PutAsync([Key("q/other"), Key("p")], [new byte[1], new byte[2]]))[0]);

        var pages = new List<KvKeyPage>();
        byte[] cursor = [];
        do
        {
            var page = await h.Store.ScanAsync(Key("p/"), cursor, pageSize: 10);
            Assert.InRange(page.Keys.Count, 0, 10);
            Assert.Equal("dram", page.Tiers);
            pages.Add(page);
            cursor = page.Cursor;
            Assert.True(pages.Count <= 4, "the listing did not end");
        }
        while (cursor.Length > 0);

        var listed = pages.SelectMany(p => p.Keys).Select(k => k.Text).ToList();
        Assert.Equal(Enumerable.Range(0, 25).Select(i => $"p/{i:D3}"), listed);
        Assert.All(pages.SelectMany(p => p.Keys), k => Assert.Equal(10, k.Length));
        Assert.Equal(27, await h.Store.ListAsync(default, pageSize: 7).CountAsync());
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Info_reports_size_tier_ttl_pins_and_a_miss(string transport)
    {
        await using var h = await StartAsync(transport);
        await h.Store.PutAsync([Key("k")], [new byte[100]], new PutOptions { Ttl = TimeSpan.FromHours(1) });
        await h.Store.PinAsync([Key("k"), Key("k")]);
        var infos = await h.Store.InfoAsync([Key("k"), Key("missing"), new byte[600]]);
        Assert.Equal(KvStatus.Ok, infos[0].Status);
        Assert.Equal(("dram", 100L, 2, 0), (infos[0].Tier, infos[0].Length, infos[0].Pins, infos[0].Leases));
        Assert.NotNull(infos[0].Ttl);
        Assert.InRange(infos[0].Ttl!.Value, TimeSpan.FromMinutes(50), TimeSpan.FromHours(1));
        Assert.Equal(KvStatus.NotFound, infos[1].Status);
        Assert.Equal(KvStatus.InvalidKey, infos[2].Status);
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Remove_prefix_removes_only_that_prefix_and_remove_all_empties_the_node(string transport)
    {
        await using var h = await StartAsync(transport);
        await h.Store.PutAsync(Keys("a/", 30), Values(30, 64));
        await h.Store.PutAsync(Keys("b/", 5), Values(5, 64));
        Assert.Equal(30, await h.Store.RemovePrefixAsync(Key("a/")));
        Assert.Equal(0, await h.Store.RemovePrefixAsync(Key("a/")));
        Assert.Equal(new[] { 0, 1 }, await h.Store.ExistsAsync([Key("a/001"), Key("b/001")]));
        Assert.Equal(5, await h.Store.RemoveAllAsync());
        Assert.Equal(0, await h.Store.ListAsync(default).CountAsync());
        Assert.Equal(0, h.Node.Store.GetStats().Keys);
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task An_expired_value_is_a_miss_and_is_reclaimed_while_ttl_zero_outlives_the_node_default(string transport)
    {
        await using var h = await StartAsync(transport, new StoreOptions { Capacity = 64L << 20, DefaultTtl = TimeSpan.FromSeconds(1) });
        await h.Store.PutAsync([Key("short")], [new byte[4096]], new PutOptions { Ttl = TimeSpan.FromSeconds(1) });
        await h.Store.PutAsync([Key("default")], [new byte[4096]]);
        await h.Store.PutAsync([Key("forever")], [new byte[4096]], new PutOptions { Ttl = TimeSpan.Zero });
        Assert.NotNull((await h.Store.InfoAsync([Key("default")]))[0].Ttl);
        Assert.Null((await h.Store.InfoAsync([Key("forever")]))[0].Ttl);

        await Poll.UntilAsync(async () => await h.Store.GetAsync(Key("short")) is null, "the 1 s TTL value to become a miss");
        // The sweep reclaims "default" without anyone reading it.
        await Poll.UntilAsync(() => h.Node.Store.GetStats().Keys == 1, () => $"the sweep to reclaim the expired values (keys now {h.Node.Store.GetStats().Keys})");
        Assert.NotNull(await h.Store.GetAsync(Key("forever")));
        Assert.Equal(2, (await h.Store.StatsAsync())["expired"]);
        Assert.Equal(new[] { "forever" }, await h.Store.ListAsync(default).Select(k => k.Text).ToListAsync());
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task A_put_over_its_namespace_budget_is_QuotaExceeded_naming_the_namespace_and_budget(string transport)
    {
        var quotas = new[] { new NamespaceQuota(Encoding.UTF8.GetBytes("tenant-a/"), 1000) };
        await using var h = await StartAsync(transport, new StoreOptions { Capacity = 64L << 20, Namespaces = quotas });
        Assert.Equal(KvStatus.Ok, (await h.Store.PutAsync([Key("tenant-a/1")], [new byte[600]]))[0]);
        var statuses = await h.Store.PutAsync([Key("tenant-a/2"), Key("tenant-b/1")], [new byte[600], new byte[600]]);
        Assert.Equal(new[] { KvStatus.QuotaExceeded, KvStatus.Ok }, statuses);
        var message = await h.Store.QuotaMessageAsync(Key("tenant-a/2"));
        Assert.Contains("'tenant-a/'", message, StringComparison.Ordinal);
        Assert.Contains("1000 bytes", message, StringComparison.Ordinal);
        // An overwrite is counted net of the value it replaces; a removal gives its bytes back.
        Assert.Equal(KvStatus.Ok, (await h.Store.PutAsync([Key("tenant-a/1")], [new byte[900]]))[0]);
        await h.Store.RemoveAsync([Key("tenant-a/1")]);
        Assert.Equal(KvStatus.Ok, (await h.Store.PutAsync([Key("tenant-a/2")], [new byte[1000]]))[0]);
        var info = (await h.Store.InfoAsync([Key("tenant-a/2")]))[0];
        Assert.Equal((1000L, 1000L), (info.NamespaceBudget, info.NamespaceUsed));
        Assert.Equal(1, (await h.Store.StatsAsync())["quota_refusals"]);
    }

    [Fact]
    public async Task Bad_input_is_refused_with_a_one_line_message_naming_the_limit()
    {
        await using var h = await StartAsync("tcp");
        var huge = await Assert.ThrowsAsync<ArgumentException>(() => h.Store.ScanAsync(new byte[600]));
        Assert.Contains("512-byte key limit", huge.Message, StringComparison.Ordinal);
        foreach (int size in new[] { 0, 8193 })
        {
            var page = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => h.Store.ScanAsync(default, default, size));
            Assert.Contains("1..8192", page.Message, StringComparison.Ordinal);
        }
        var ttl = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => h.Store.PutAsync([Key("k")], [new byte[1]], new PutOptions { Ttl = TimeSpan.FromDays(60_000) }));
        Assert.Contains("4294967295", ttl.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => h.Store.RemovePrefixAsync(new byte[513]));
        Assert.Equal(KvStatus.Ok, (await h.Store.PutAsync([Key("still")], [new byte[1]]))[0]);   // the connection is fine
    }

    [Fact]
    public async Task In_a_cluster_scan_and_remove_prefix_reach_every_node()
    {
        await using var a = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });
        await using var b = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"{a.Address},{b.Address}" });
        var keys = Keys("c/", 40);
        Assert.All(await store.PutAsync(keys, Values(40, 8)), s => Assert.Equal(KvStatus.Ok, s));
        Assert.True(a.Stats.Keys > 0 && b.Stats.Keys > 0, "the keys should be spread over both nodes");
        var listed = await store.ListAsync(Key("c/"), pageSize: 3).Select(k => k.Text).ToListAsync();
        Assert.Equal(Enumerable.Range(0, 40).Select(i => $"c/{i:D3}").Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
        Assert.Equal(KvStatus.Ok, (await store.InfoAsync([keys[7]]))[0].Status);
        Assert.Equal(40, await store.RemovePrefixAsync(Key("c/")));
        Assert.Equal(0, a.Stats.Keys + b.Stats.Keys);
    }
}
