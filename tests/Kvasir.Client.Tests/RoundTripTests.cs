using Kvasir.Client;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

public sealed class RoundTripTests
{
    public static TheoryData<string, int> SizesByTransport()
    {
        var data = new TheoryData<string, int>();
        foreach (var t in TransportNames)
            foreach (var size in new[] { 0, 1, 4095, 4096, 4097, 1 << 20, 16 << 20 })
                data.Add(t, size);
        return data;
    }

    [Theory]
    [MemberData(nameof(SizesByTransport))]
    public async Task Value_of_boundary_size_reads_back_byte_exact(string transport, int size)
    {
        await using var h = await StartAsync(transport);
        var value = TestValues.Value(size, size);
        Assert.Equal(new[] { KvStatus.Ok }, await h.Store.PutAsync([Key("k")], [value]));
        var dest = new byte[size + 16];
        Array.Fill(dest, (byte)0xEE);
        var result = (await h.Store.GetAsync([Key("k")], [dest]))[0];
        Assert.Equal(new KvGetResult(KvStatus.Ok, size), result);
        Assert.True(dest.AsSpan(0, size).SequenceEqual(value), "value bytes differ");
        Assert.True(dest.AsSpan(size).ToArray().All(b => b == 0xEE), "bytes past the value were written");
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Value_of_exactly_the_max_is_stored_and_max_plus_one_is_refused_with_the_connection_still_usable(string transport)
    {
        const int max = 64 << 20;
        await using var h = await StartAsync(transport, new StoreOptions { Capacity = 160L << 20, MaxValueBytes = max });
        var atMax = TestValues.Value(7, max);
        var over = new byte[max + 1];
        var statuses = await h.Store.PutAsync([Key("max"), Key("over"), Key("after")], [atMax, over, TestValues.Value(8, 100)]);
        Assert.Equal([KvStatus.Ok, KvStatus.ValueTooLarge, KvStatus.Ok], statuses);
        var dest = new byte[max];
        Assert.Equal(KvStatus.Ok, (await h.Store.GetAsync([Key("max")], [dest]))[0].Status);
        Assert.True(dest.AsSpan().SequenceEqual(atMax));
        Assert.Equal(new[] { 0, 1 }, await h.Store.ExistsAsync([Key("over"), Key("after")]));
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Gathered_pieces_are_stored_as_one_value_and_scatter_back_in_order(string transport)
    {
        await using var h = await StartAsync(transport);
        var a = TestValues.Value(1, 10_000);
        var b = TestValues.Value(2, 1 << 20);
        var c = TestValues.Value(3, 1);
        Assert.Equal(new[] { KvStatus.Ok }, await h.Store.PutGatherAsync([Key("g")], [[a, b, c]]));
        var whole = new byte[a.Length + b.Length + c.Length];
        Assert.Equal(whole.Length, (await h.Store.GetAsync([Key("g")], [whole]))[0].Length);
        Assert.True(whole.AsSpan().SequenceEqual([.. a, .. b, .. c]));

        var p1 = new byte[4096];
        var p2 = new byte[whole.Length - 4096];
        var result = (await h.Store.GetScatterAsync([Key("g")], [[p1, p2]]))[0];
        Assert.Equal(new KvGetResult(KvStatus.Ok, whole.Length), result);
        Assert.True(p1.AsSpan().SequenceEqual(whole.AsSpan(0, 4096)));
        Assert.True(p2.AsSpan().SequenceEqual(whole.AsSpan(4096)));
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Get_into_a_buffer_smaller_than_the_value_reports_buffer_too_small_and_the_next_get_still_works(string transport)
    {
        await using var h = await StartAsync(transport);
        await h.Store.PutAsync([Key("big"), Key("small")], [TestValues.Value(1, 10_000), TestValues.Value(2, 10)]);
        var tooSmall = new byte[9_999];
        var ok = new byte[10];
        var results = await h.Store.GetAsync([Key("big"), Key("small")], [tooSmall, ok]);
        Assert.Equal(new KvGetResult(KvStatus.BufferTooSmall, 10_000), results[0]);
        Assert.Equal(new KvGetResult(KvStatus.Ok, 10), results[1]);
        Assert.True(ok.AsSpan().SequenceEqual(TestValues.Value(2, 10)));
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Overwrite_replaces_the_value_and_remove_makes_it_a_miss(string transport)
    {
        await using var h = await StartAsync(transport);
        await h.Store.PutAsync([Key("k")], [TestValues.Value(1, 5000)]);
        await h.Store.PutAsync([Key("k")], [TestValues.Value(2, 300)]);
        Assert.Equal(TestValues.Value(2, 300), await h.Store.GetAsync(Key("k")));
        Assert.Equal(new[] { KvStatus.Ok, KvStatus.NotFound }, await h.Store.RemoveAsync([Key("k"), Key("never")]));
        Assert.Null(await h.Store.GetAsync(Key("k")));
        Assert.Equal(new[] { 0 }, await h.Store.ExistsAsync([Key("k")]));
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Keys_of_0_and_513_bytes_are_invalid_per_key_while_512_bytes_is_fine(string transport)
    {
        await using var h = await StartAsync(transport);
        var k512 = new byte[512];
        k512.AsSpan().Fill(0xAB);
        var k513 = new byte[513];
        var statuses = await h.Store.PutAsync([ReadOnlyMemory<byte>.Empty, k512, k513], [TestValues.Value(1, 10), TestValues.Value(2, 10), TestValues.Value(3, 10)]);
        Assert.Equal([KvStatus.InvalidKey, KvStatus.Ok, KvStatus.InvalidKey], statuses);
        Assert.Equal(new[] { -1, 1, -1 }, await h.Store.ExistsAsync([ReadOnlyMemory<byte>.Empty, k512, k513]));
        var results = await h.Store.GetAsync([k513, k512], [new byte[10], new byte[10]]);
        Assert.Equal(KvStatus.InvalidKey, results[0].Status);
        Assert.Equal(KvStatus.Ok, results[1].Status);
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Stats_count_keys_and_requests(string transport)
    {
        await using var h = await StartAsync(transport);
        await h.Store.PutAsync(Enumerable.Range(0, 10).Select(i => Key($"s{i}")).ToArray(), Enumerable.Range(0, 10).Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, 100)).ToArray());
        await h.Store.GetAsync([Key("s1"), Key("nope")], [new byte[100], new byte[100]]);
        var stats = await h.Store.StatsAsync();
        Assert.Equal(10, stats["keys"]);
        Assert.Equal(1, stats["hits"]);
        Assert.Equal(1, stats["misses"]);
        Assert.True(stats["live_bytes"] == 1000, $"live_bytes {stats["live_bytes"]}");
        if (transport == "shm")
        {
            // Values went through the arena: ALLOC/COMMIT and LEASE, no PUT or GET on the wire.
            Assert.True(stats["requests_commit"] >= 1 && stats["requests_lease"] >= 1, "no COMMIT or LEASE counted");
            Assert.Equal(0, stats["requests_put"]);
            Assert.Equal(0, stats["requests_get"]);
        }
        else Assert.True(stats["requests_put"] >= 1);
    }
}
