using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

public sealed class AuthTests
{
    private const string NodeKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    private const string OtherKey = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    [Fact]
    public async Task Client_with_the_right_key_can_do_everything()
    {
        await using var h = await StartAsync("tcp", authKeyHex: NodeKey);
        Assert.Equal(new[] { KvStatus.Ok }, await h.Store.PutAsync([Key("a")], [TestValues.Value(1, 1000)]));
        Assert.Equal(TestValues.Value(1, 1000), await h.Store.GetAsync(Key("a")));
        Assert.Equal(0, h.Node.Counters.AuthFailures);
    }

    [Fact]
    public async Task Client_without_a_key_gets_nothing_but_an_auth_failure()
    {
        await using var h = await StartAsync("tcp", authKeyHex: NodeKey);
        await h.Store.PutAsync([Key("secret")], [TestValues.Value(1, 10)]);
        var ex = await Assert.ThrowsAsync<KvasirAuthException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = h.Address }));
        Assert.Contains("requires an auth key", ex.Message);
    }

    [Fact]
    public async Task Client_with_a_wrong_key_is_refused_and_the_failure_is_counted()
    {
        await using var h = await StartAsync("tcp", authKeyHex: NodeKey);
        var ex = await Assert.ThrowsAsync<KvasirAuthException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = h.Address, AuthKey = OtherKey }));
        Assert.Contains("refused authentication", ex.Message);
        await Poll.UntilAsync(() => h.Node.Counters.AuthFailures == 1, "the node to count one auth failure");
        // The node still serves the rightful client.
        Assert.Equal(new[] { KvStatus.Ok }, await h.Store.PutAsync([Key("after")], [TestValues.Value(2, 10)]));
    }

    [Fact]
    public async Task Client_with_a_key_refuses_a_node_that_does_not_authenticate()
    {
        await using var h = await StartAsync("tcp");
        var ex = await Assert.ThrowsAsync<KvasirAuthException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = h.Address, AuthKey = NodeKey }));
        Assert.Contains("does not authenticate", ex.Message);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeZZ")]
    public async Task A_malformed_key_is_rejected_before_connecting_with_the_reason(string key)
    {
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = "127.0.0.1:1", AuthKey = key }));
        Assert.Contains("hex", ex.Message);
    }
}

public sealed class PrefixEvictionTests
{
    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Under_prefix_aware_eviction_what_survives_of_every_chain_is_a_prefix(string transport)
    {
        const long capacity = 8L << 20;
        await using var h = await StartAsync(transport, new StoreOptions { Capacity = capacity, MaxValueBytes = 1 << 20, Eviction = EvictionPolicyKind.PrefixAware });
        const int chains = 24, length = 16, block = 64 * 1024; // 24 × 16 × 64 KiB = 3 × capacity
        var rng = new Random(3);
        for (int c = 0; c < chains; c++)
        {
            // Half the chains are written in two batches, the second continuing the first through ChainParent.
            var keys = Enumerable.Range(0, length).Select(i => Key($"chain{c}/{i}")).ToArray();
            var values = Enumerable.Range(0, length).Select(i => (ReadOnlyMemory<byte>)TestValues.Value(c * 1000 + i, block)).ToArray();
            if (c % 2 == 0)
            {
                Assert.All(await h.Store.PutAsync(keys, values, new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
            }
            else
            {
                await h.Store.PutAsync(keys[..8], values[..8], new PutOptions { Chain = true });
                await h.Store.PutAsync(keys[8..], values[8..], new PutOptions { Chain = true, ChainParent = keys[7] });
            }
            // Touch an older chain's head now and then, as an engine reusing a prefix would.
            if (c > 2) await h.Store.GetAsync([Key($"chain{rng.Next(c)}/0")], [new byte[block]]);
        }
        var stats = await h.Store.StatsAsync();
        Assert.True(stats["evictions"] > 0, "nothing was evicted");
        int partial = 0;
        for (int c = 0; c < chains; c++)
        {
            var present = await h.Store.ExistsAsync(Enumerable.Range(0, length).Select(i => Key($"chain{c}/{i}")).ToArray());
            int survivors = present.Count(p => p == 1);
            Assert.True(present.Take(survivors).All(p => p == 1), $"chain {c} has a hole: {string.Join("", present)}");
            if (survivors is > 0 and < length) partial++;
        }
        Assert.True(partial > 0 || stats["evictions"] >= length, "no chain was trimmed from its tail");
    }

    [Fact]
    public async Task Under_lru_the_same_workload_does_leave_holes_so_the_prefix_test_can_fail()
    {
        // Guards the test above: under plain LRU, touching chain heads makes eviction cut chains in the middle.
        await using var h = await StartAsync("inproc", new StoreOptions { Capacity = 8L << 20, MaxValueBytes = 1 << 20, Eviction = EvictionPolicyKind.Lru });
        const int chains = 24, length = 16, block = 64 * 1024;
        var rng = new Random(3);
        int holes = 0;
        for (int c = 0; c < chains; c++)
        {
            var keys = Enumerable.Range(0, length).Select(i => Key($"chain{c}/{i}")).ToArray();
            await h.Store.PutAsync(keys, Enumerable.Range(0, length).Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, block)).ToArray(), new PutOptions { Chain = true });
            if (c > 2) await h.Store.GetAsync([Key($"chain{rng.Next(c)}/0")], [new byte[block]]);
        }
        for (int c = 0; c < chains; c++)
        {
            var present = await h.Store.ExistsAsync(Enumerable.Range(0, length).Select(i => Key($"chain{c}/{i}")).ToArray());
            int survivors = present.Count(p => p == 1);
            if (!present.Take(survivors).All(p => p == 1)) holes++;
        }
        Assert.True(holes > 0, "LRU left no holes: the prefix test would pass without prefix-aware eviction");
    }
}

public sealed class FailureTests
{
    [Fact]
    public async Task Keys_on_a_node_that_went_away_report_unavailable_instead_of_throwing()
    {
        var h = await StartAsync("tcp");
        await h.Store.PutAsync([Key("k")], [TestValues.Value(1, 10)]);
        await h.Node.StopAsync();
        var results = await h.Store.GetAsync([Key("k"), Key("j")], [new byte[10], new byte[10]]);
        Assert.All(results, r => Assert.Equal(KvStatus.Unavailable, r.Status));
        Assert.Equal(new[] { -1 }, await h.Store.ExistsAsync([Key("k")]));
        await h.Store.DisposeAsync();
    }

    [Fact]
    public async Task Connecting_to_a_closed_port_fails_with_the_reason()
    {
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = "127.0.0.1:1" }));
        Assert.Contains("cannot connect", ex.Message);
    }

    [Fact]
    public async Task A_node_that_never_answers_makes_connect_time_out_rather_than_hang()
    {
        using var silent = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        silent.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        silent.Listen(1);
        int port = ((System.Net.IPEndPoint)silent.LocalEndPoint!).Port;
        var started = DateTime.UtcNow;
        await Assert.ThrowsAnyAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{port}", ConnectTimeout = TimeSpan.FromMilliseconds(500) }));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10), "connect did not honour its timeout");
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task Cancelling_a_get_throws_and_the_store_keeps_working(string transport)
    {
        await using var h = await StartAsync(transport);
        var big = TestValues.Value(1, 16 << 20);
        await h.Store.PutAsync([Key("big")], [big]);
        var dest = new byte[16 << 20];
        for (int attempt = 0; attempt < 20; attempt++)
        {
            using var cts = new CancellationTokenSource();
            var get = h.Store.GetAsync(Enumerable.Repeat(Key("big"), 8).ToArray(), Enumerable.Range(0, 8).Select(_ => (Memory<byte>)new byte[16 << 20]).ToArray(), cts.Token);
            cts.CancelAfter(attempt);
            try { await get; } catch (OperationCanceledException) { }
        }
        var result = (await h.Store.GetAsync([Key("big")], [dest]))[0];
        Assert.Equal(KvStatus.Ok, result.Status);
        Assert.True(dest.AsSpan().SequenceEqual(big));
    }

    [Fact]
    public async Task A_request_past_its_timeout_reports_timeout_per_key()
    {
        // A node whose only connection is stalled: the client's request timeout fires.
        await using var h = await StartAsync("tcp");
        await using var slow = await KvStore.ConnectAsync(new KvStoreOptions { Server = h.Address, ConnectionsPerNode = 1, RequestTimeout = TimeSpan.FromMilliseconds(1) });
        await slow.PutAsync([Key("t")], [TestValues.Value(1, 8 << 20)]);
        var sawTimeout = false;
        for (int i = 0; i < 20 && !sawTimeout; i++)
        {
            var results = await slow.GetAsync(Enumerable.Repeat(Key("t"), 8).ToArray(), Enumerable.Range(0, 8).Select(_ => (Memory<byte>)new byte[8 << 20]).ToArray());
            sawTimeout = results.All(r => r.Status == KvStatus.Timeout);
            Assert.All(results, r => Assert.True(r.Status is KvStatus.Timeout or KvStatus.Ok or KvStatus.Unavailable, $"unexpected {r.Status}"));
        }
        Assert.True(sawTimeout, "a 1 ms timeout never fired on 64 MiB GETs");
    }
}
