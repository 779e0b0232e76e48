using System.Collections.Concurrent;
using System.Net.NetworkInformation;
using Kvasir.Client.Internal;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;
using Microsoft.Extensions.Logging;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

/// <summary>
/// The shared-memory transport's choice and its failure modes: every reason not to use it falls back
/// to TCP with the reason logged (or thrown when Shm is forced), and nothing a client took on the
/// node's arena outlives it. Byte-exactness over shm is covered by the round-trip and batch tests,
/// which run over "shm" too.
/// </summary>
public sealed class ShmTransportTests
{
    private const string NodeKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    private static TestNode StartNode(bool shm, long capacity = 64L << 20, string? authKeyHex = null)
    {
        return TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = capacity, MaxValueBytes = Math.Min(64L << 20, capacity) },
            SharedMemory = shm,
            AuthKey = authKeyHex is null ? null : Convert.FromHexString(authKeyHex),
        });
    }

    private static string AddressOf(TestNode node) => node.Address;

    [Fact]
    public async Task Auto_picks_shm_for_a_node_on_this_host_and_values_go_through_the_arena()
    {
        await using var node = StartNode(shm: true);
        var log = new ListLoggerFactory();
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), LoggerFactory = log }))
        {
            Assert.Equal(KvTransportKind.Shm, store.Transport);
            Assert.Equal(new[] { KvStatus.Ok }, await store.PutAsync([Key("a")], [TestValues.Value(1, 70_000)]));
            Assert.Equal(TestValues.Value(1, 70_000), await store.GetAsync(Key("a")));
        }
        Assert.Empty(log.Messages);
        var stats = node.Counters;
        Assert.True(stats.Requests(Opcode.Commit) == 1 && stats.Requests(Opcode.Lease) == 1, "the value did not go through ALLOC/COMMIT and LEASE");
        Assert.Equal(0, stats.Requests(Opcode.Put));
    }

    [Fact]
    public async Task A_put_with_a_ttl_goes_through_the_arena_with_its_ttl_and_the_writers_crcs_on_commit()
    {
        // Issue 19: shared-memory PUTs took the node's default TTL. With ARENA_PROOF granted, ALLOC carries the caller's
        // TTL (and MAPPED, so the node skips zeroing) and COMMIT this store's CRCs, which the node checks at the first read.
        await using var node = StartNode(shm: true);
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node) }))
        {
            Assert.Equal(KvTransportKind.Shm, store.Transport);
            Assert.Equal([KvStatus.Ok], await store.PutAsync([Key("ttl")], [TestValues.Value(2, 70_000)], new PutOptions { Ttl = TimeSpan.FromMinutes(10) }));
            Assert.Equal([KvStatus.Ok], await store.PutAsync([Key("no-ttl")], [TestValues.Value(3, 70_000)]));
            var info = await store.InfoAsync([Key("ttl"), Key("no-ttl")]);
            Assert.InRange(info[0].Ttl!.Value, TimeSpan.FromMinutes(9.9), TimeSpan.FromMinutes(10));
            Assert.Null(info[1].Ttl);
            Assert.Equal(TestValues.Value(2, 70_000), await store.GetAsync(Key("ttl")));
            Assert.Equal(TestValues.Value(3, 70_000), await store.GetAsync(Key("no-ttl")));
        }
        Assert.Equal(2, node.Counters.Requests(Opcode.Alloc));
        Assert.Equal(0, node.Counters.Requests(Opcode.Put));
        Assert.Equal(0, node.Node.StatsSnapshot().Single(s => s.Key == "crc_mismatches").Value);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Chained_puts_through_the_arena_carry_their_chain_on_the_commits_so_prefix_aware_eviction_keeps_prefixes(bool chain)
    {
        // Issue 17 item 4: chains went over TCP because ALLOC/COMMIT had no chain form. With feature 0x20 the COMMITs carry
        // them; batches of 5 keys (the node's limit) make each chain several COMMITs, each continuing the one before. Without
        // the chain the same workload leaves holes (gaps inside a chain), so the test can fail.
        const int Chains = 24, Length = 16, Block = 64 * 1024;
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            SharedMemory = true,
            MaxBatchKeys = 5,
            Store = new StoreOptions { Capacity = 8L << 20, MaxValueBytes = 1L << 20, Eviction = EvictionPolicyKind.PrefixAware },
        });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node) });
        Assert.Equal(KvTransportKind.Shm, store.Transport);
        var random = new Random(3);
        for (int c = 0; c < Chains; c++)
        {
            var keys = Enumerable.Range(0, Length).Select(i => Key($"chain{c}/{i}")).ToArray();
            var values = keys.Select(_ => (ReadOnlyMemory<byte>)TestValues.Value(c, Block)).ToArray();
            if (c % 2 == 0)
            {
                Assert.All(await store.PutAsync(keys, values, new PutOptions { Chain = chain }), s => Assert.Equal(KvStatus.Ok, s));
            }
            else
            {
                Assert.All(await store.PutAsync(keys[..8], values[..8], new PutOptions { Chain = chain }), s => Assert.Equal(KvStatus.Ok, s));
                Assert.All(await store.PutAsync(keys[8..], values[8..], new PutOptions { Chain = chain, ChainParent = chain ? keys[7] : default }),
                    s => Assert.Equal(KvStatus.Ok, s));
            }
            if (c > 2) await store.GetAsync(Key($"chain{random.Next(c)}/0"));
        }
        Assert.Equal(0, node.Counters.Requests(Opcode.Put));
        Assert.True(node.Node.StatsSnapshot().Single(s => s.Key == "evictions").Value > 0, "the workload should evict");
        int holes = 0;
        for (int c = 0; c < Chains; c++)
        {
            var present = await store.ExistsAsync(Enumerable.Range(0, Length).Select(i => Key($"chain{c}/{i}")).ToArray());
            int stored = present.Count(p => p == 1);
            if (!present.Take(stored).All(p => p == 1)) holes++;
        }
        if (chain) Assert.Equal(0, holes);
        else Assert.True(holes > 0, "without chains the same workload should leave holes");
    }

    [Fact]
    public async Task A_chained_put_larger_than_the_connections_reservation_share_keeps_its_whole_chain()
    {
        // The node's per-connection share (256 KiB: 4 blocks) is far below the client's first budget (a quarter of the
        // arena: 2 MiB), so the first chained put of the connection is refused past its fourth block and learns the
        // share. Every block must still continue the one before it: under prefix-aware eviction what survives of the
        // chain is then always a prefix. (Before: the piece with refused keys was committed without its chain, and the
        // refused keys were stored after the rest of the batch, which linked to keys not yet stored: blocks 0..2 were
        // roots and the chain broke again at the budget's piece boundary, so eviction took block 0 first.)
        const int Length = 40, Block = 64 * 1024;
        var (node, store) = await StartChainNodeAsync(reservedBytesPerConnection: 4 * Block);
        await using var ownedNode = node;
        await using var ownedStore = store;
        var keys = Enumerable.Range(0, Length).Select(i => Key($"long/{i}")).ToArray();
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, Block)).ToArray();
        Assert.All(await store.PutAsync(keys, values, new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(0, node.Counters.Requests(Opcode.Put));
        await AssertEvictedAsPrefixAsync(store, keys, Block);
    }

    [Fact]
    public async Task A_chained_put_whose_alloc_refuses_a_key_but_accepts_smaller_ones_after_it_stores_the_refused_key_before_them()
    {
        // The node's share (256 KiB) refuses block 3 (128 KiB after 192 KiB held) but accepts blocks 4 and 5 (32 KiB each)
        // of the same ALLOC. Block 4 continues block 3, so block 3 must be stored before block 4 is published. (Before:
        // blocks 4..5 were committed continuing block 3, which was not stored yet, so block 4 became a root and block 3,
        // asked for again later, a leaf: eviction took block 3 first and left a hole in the middle of the chain.)
        const int Length = 40, Block = 64 * 1024;
        var (node, store) = await StartChainNodeAsync(reservedBytesPerConnection: 4 * Block);
        await using var ownedNode = node;
        await using var ownedStore = store;
        var keys = Enumerable.Range(0, Length).Select(i => Key($"uneven/{i}")).ToArray();
        int SizeOf(int i) => i == 3 ? 2 * Block : i is 4 or 5 ? Block / 2 : Block;
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, SizeOf(i))).ToArray();
        Assert.All(await store.PutAsync(keys, values, new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        for (int i = 0; i < Length; i++) Assert.Equal(values[i].ToArray(), await store.GetAsync(keys[i]));
        await AssertEvictedAsPrefixAsync(store, keys, Block);
    }

    [Fact]
    public async Task A_chained_put_to_a_node_that_does_not_grant_chained_commits_goes_over_tcp_with_its_chain()
    {
        // A node that withholds HELLO feature 0x20 (as one that predates it) would refuse CHAIN on COMMIT: the chained put
        // goes over the socket as chained PUTs, every block continuing the one before it, byte-exact; an unchained put of
        // the same store still goes through the arena.
        const int Length = 40, Block = 64 * 1024;
        var (node, store) = await StartChainNodeAsync(withheldFeatures: ProtocolFeatures.CommitChain);
        await using var ownedNode = node;
        await using var ownedStore = store;
        var keys = Enumerable.Range(0, Length).Select(i => Key($"old/{i}")).ToArray();
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, Block - i)).ToArray();
        Assert.All(await store.PutAsync(keys, values, new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(0, node.Counters.Requests(Opcode.Commit));
        Assert.True(node.Counters.Requests(Opcode.Put) > 0, "the chained put did not go over TCP");
        Assert.Equal([KvStatus.Ok], await store.PutAsync([Key("unchained")], [TestValues.Value(99, Block)]));
        Assert.Equal(1, node.Counters.Requests(Opcode.Commit));
        for (int i = 0; i < Length; i++) Assert.Equal(values[i].ToArray(), await store.GetAsync(keys[i]));
        await AssertEvictedAsPrefixAsync(store, keys, Block);
    }

    /// <summary>
    /// The chained-put tests' node: shared memory, an 8 MiB arena under prefix-aware eviction, values up to 1 MiB; and a
    /// store on one connection to it, checked to be on shared memory.
    /// </summary>
    private static async Task<(TestNode Node, KvStore Store)> StartChainNodeAsync(long? reservedBytesPerConnection = null, ulong withheldFeatures = 0)
    {
        var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            SharedMemory = true,
            MaxReservedBytesPerConnection = reservedBytesPerConnection,
            WithheldFeatures = withheldFeatures,
            Store = new StoreOptions { Capacity = 8L << 20, MaxValueBytes = 1L << 20, Eviction = EvictionPolicyKind.PrefixAware },
        });
        var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), ConnectionsPerNode = 1 });
        Assert.Equal(KvTransportKind.Shm, store.Transport);
        return (node, store);
    }

    /// <summary>
    /// Unchained fillers, newer than every block of the chain, until the chain is half gone: under prefix-aware eviction the
    /// least recently used leaf goes first, which must always be the chain's current tail, so what is left is a prefix.
    /// </summary>
    private static async Task AssertEvictedAsPrefixAsync(KvStore store, ReadOnlyMemory<byte>[] keys, int block)
    {
        for (int f = 0; f < 200; f++)
        {
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key($"filler/{f}")], [TestValues.Value(1000 + f, block)]))[0]);
            var present = await store.ExistsAsync(keys);
            int stored = present.Count(p => p == 1);
            Assert.True(present.Take(stored).All(p => p == 1), $"after filler {f} the chain has a hole: {string.Concat(present.Select(p => p == 1 ? '1' : '0'))}");
            if (stored <= keys.Length / 2) return;
        }
        Assert.Fail("200 fillers in the arena did not evict half of the chain");
    }

    [Fact]
    public async Task Keys_the_node_cannot_lease_because_every_lease_slot_is_held_are_read_over_tcp()
    {
        // docs/protocol.md § Ownership and timeouts: past --max-leases a LEASE answers OUT_OF_MEMORY for the key, "and the
        // client reads it over TCP". Before, the .NET client reported OutOfMemory for the key (GetAsync threw "get failed:
        // OutOfMemory") while the value was there to be read.
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            SharedMemory = true,
            MaxLeases = 1,
            Store = new StoreOptions { Capacity = 64L << 20 },
        });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), VerifyValueCrc = true });
        Assert.Equal(KvTransportKind.Shm, store.Transport);
        ReadOnlyMemory<byte>[] keys = [Key("held"), Key("a"), Key("b")];
        var values = keys.Select((_, i) => TestValues.Value(i, 100_000 + i)).ToArray();
        Assert.All(await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()), s => Assert.Equal(KvStatus.Ok, s));

        // Another connection leases "held" and keeps its lease: the node's only lease slot.
        await using var holder = await TcpTransport.ConnectAsync(new KvStoreOptions { Server = AddressOf(node) }, CancellationToken.None);
        var connection = (await holder.GetConnectionAsync(CancellationToken.None))!;
        var lease = new MetaRequest();
        var meta = TcpTransport.KeyBatchMeta([keys[0]], 0, 1);
        await connection.SendAsync(lease, Opcode.Lease, FrameFlags.None, meta, meta.Length, null, 0, 0, CancellationToken.None);
        Assert.True(await connection.WaitAsync(lease, TimeSpan.FromSeconds(10), CancellationToken.None), "no LEASE reply");
        Assert.Equal(WireStatus.Ok, ShmMessages.ReadLeaseReply(lease.Meta)[0].Status);

        Assert.Equal(values[1], await store.GetAsync(keys[1]));
        var dests = values.Select(v => new byte[v.Length]).ToArray();
        var results = await store.GetAsync([keys[2], Key("missing"), keys[0], keys[1]], [dests[2], new byte[10], dests[0], dests[1]]);
        Assert.Equal([KvStatus.Ok, KvStatus.NotFound, KvStatus.Ok, KvStatus.Ok], results.Select(r => r.Status));
        for (int i = 0; i < values.Length; i++) Assert.Equal(values[i], dests[i]);
        var scattered = new[] { new byte[50_000], new byte[60_000] };
        Assert.Equal(new KvGetResult(KvStatus.Ok, values[2].Length), (await store.GetScatterAsync([keys[2]], [scattered.Select(p => (Memory<byte>)p).ToArray()]))[0]);
        Assert.Equal(values[2], scattered.SelectMany(p => p).Take(values[2].Length).ToArray());
        Assert.Equal(0L, store.ChecksumMismatches);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_get_of_more_keys_than_a_connection_may_hold_leased_reads_every_value(int connections)
    {
        // A connection may hold at most --max-leases-per-connection leases; a LEASE past it closes the connection. A batch
        // split into requests of max-batch keys sends them at once: their leases together must stay within the bound.
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            SharedMemory = true,
            MaxBatchKeys = 16,
            MaxLeasesPerConnection = 40,
            Store = new StoreOptions { Capacity = 64L << 20 },
        });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), ConnectionsPerNode = connections });
        Assert.Equal(KvTransportKind.Shm, store.Transport);
        var keys = Enumerable.Range(0, 200).Select(i => Key($"many/{i}")).ToArray();
        var values = keys.Select((_, i) => TestValues.Value(i, 1000 + i)).ToArray();
        Assert.All(await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
        var dests = values.Select(v => new byte[v.Length]).ToArray();
        var results = await store.GetAsync(keys, dests.Select(d => (Memory<byte>)d).ToArray());
        Assert.All(results, r => Assert.Equal(KvStatus.Ok, r.Status));
        for (int i = 0; i < keys.Length; i++) Assert.Equal(values[i], dests[i]);
    }

    [Fact]
    public async Task Tcp_asked_for_is_tcp_even_when_shm_would_work()
    {
        await using var node = StartNode(shm: true);
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), Transport = KvTransportKind.Tcp });
        Assert.Equal(KvTransportKind.Tcp, store.Transport);
        await store.PutAsync([Key("a")], [TestValues.Value(1, 10)]);
        Assert.Equal(0, node.Counters.Requests(Opcode.ShmInfo));
        Assert.Equal(1, node.Counters.Requests(Opcode.Put));
    }

    [Fact]
    public async Task Only_loopback_and_this_hosts_own_addresses_count_as_local()
    {
        Assert.True(await ShmNegotiation.IsLocalAddressAsync("127.0.0.1", default));
        Assert.True(await ShmNegotiation.IsLocalAddressAsync("127.3.4.5", default));
        Assert.True(await ShmNegotiation.IsLocalAddressAsync("::1", default));
        Assert.True(await ShmNegotiation.IsLocalAddressAsync("localhost", default));
        Assert.True(await ShmNegotiation.IsLocalAddressAsync("::ffff:127.0.0.1", default));
        Assert.False(await ShmNegotiation.IsLocalAddressAsync("192.0.2.1", default));   // TEST-NET-1: never this host's
        Assert.False(await ShmNegotiation.IsLocalAddressAsync("2001:db8::1", default)); // documentation prefix
        Assert.False(await ShmNegotiation.IsLocalAddressAsync("no-such-host.invalid", default));
        foreach (var a in NetworkInterface.GetAllNetworkInterfaces().SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(u => u.Address))
            Assert.True(await ShmNegotiation.IsLocalAddressAsync(a.ToString(), default), $"{a} is this host's own address");
    }

    [Fact]
    public async Task A_node_address_that_is_not_this_hosts_is_refused_with_the_reason_before_asking_the_node()
    {
        await using var node = StartNode(shm: true);
        await using var tcp = await TcpTransport.ConnectAsync(new KvStoreOptions { Server = AddressOf(node) }, default);
        var (mapping, reason) = await ShmNegotiation.TryMapAsync(tcp, "192.0.2.1", default);
        Assert.Null(mapping);
        Assert.Equal("192.0.2.1 is not an address of this host", reason);
        Assert.Equal(0, node.Counters.Requests(Opcode.ShmInfo));
    }

    [Fact]
    public async Task A_node_without_an_arena_is_reached_over_tcp_with_the_reason_logged_and_shm_forced_throws_it()
    {
        await using var node = StartNode(shm: false);
        var log = new ListLoggerFactory();
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), LoggerFactory = log }))
        {
            Assert.Equal(KvTransportKind.Tcp, store.Transport);
            Assert.Contains("no shared-memory arena", store.TransportReason);
            Assert.Equal(new[] { KvStatus.Ok }, await store.PutAsync([Key("k")], [TestValues.Value(1, 5000)]));
            Assert.Equal(TestValues.Value(1, 5000), await store.GetAsync(Key("k")));
        }
        var line = Assert.Single(log.Messages);   // once per store, and a warning: the node is on this host
        Assert.StartsWith("Warning:", line);
        Assert.Contains($"using TCP to {AddressOf(node)}, a node on this host", line);
        Assert.Contains("no shared-memory arena", line);
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), Transport = KvTransportKind.Shm }));
        Assert.Contains("shm transport unavailable", ex.Message);
        Assert.Contains("no shared-memory arena", ex.Message);
    }

    [Fact]
    public async Task An_arena_whose_token_file_differs_is_not_used()
    {
        await using var node = StartNode(shm: true);
        var token = node.Store.SharedMemoryPath + ".token";
        var original = await File.ReadAllBytesAsync(token);
        var other = original.Select(b => (byte)~b).ToArray();
        await File.WriteAllBytesAsync(token, other);   // as if the file were another node's, on another host
        var log = new ListLoggerFactory();
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), LoggerFactory = log }))
        {
            Assert.Equal(KvTransportKind.Tcp, store.Transport);
            Assert.Equal(new[] { KvStatus.Ok }, await store.PutAsync([Key("k")], [TestValues.Value(2, 100)]));
        }
        Assert.Contains("token differs", Assert.Single(log.Messages));
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), Transport = KvTransportKind.Shm }));
        Assert.Contains("token differs", ex.Message);
        await File.WriteAllBytesAsync(token, original);   // and with the right token, shm again
        await using var again = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), Transport = KvTransportKind.Shm });
        Assert.Equal(KvTransportKind.Shm, again.Transport);
    }

    [Fact]
    public async Task An_unreadable_token_file_falls_back_to_tcp_naming_the_file()
    {
        await using var node = StartNode(shm: true);
        var token = node.Store.SharedMemoryPath + ".token";
        File.Delete(token);
        var log = new ListLoggerFactory();
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), LoggerFactory = log }))
            Assert.Equal(KvTransportKind.Tcp, store.Transport);
        Assert.Contains($"cannot read {token}", Assert.Single(log.Messages));
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = AddressOf(node), Transport = KvTransportKind.Shm }));
        Assert.Contains($"cannot read {token}", ex.Message);
    }

    [Fact]
    public async Task Ranges_outside_the_mapping_are_refused_and_a_disposed_mapping_admits_no_copy()
    {
        await using var node = StartNode(shm: true, capacity: 16L << 20);
        await using var tcp = await TcpTransport.ConnectAsync(new KvStoreOptions { Server = AddressOf(node) }, default);
        var (mapping, reason) = await ShmNegotiation.TryMapAsync(tcp, "127.0.0.1", default);
        Assert.True(mapping is not null, reason);
        ulong length = (ulong)mapping.Length;
        Assert.Equal(16UL << 20, length);
        Assert.True(mapping.Contains(0, length));
        Assert.True(mapping.Contains(length, 0));
        Assert.True(mapping.Contains(length - 1, 1));
        Assert.False(mapping.Contains(length, 1));
        Assert.False(mapping.Contains(1, length));
        Assert.False(mapping.Contains(ulong.MaxValue, 2));
        Assert.False(mapping.Contains(2, ulong.MaxValue));
        Assert.True(mapping.TryEnter());
        mapping.Exit();
        mapping.Dispose();
        Assert.False(mapping.TryEnter());
    }

    [Fact]
    public async Task Shm_works_over_an_authenticated_connection()
    {
        await using var h = await StartAsync("shm", authKeyHex: NodeKey);
        Assert.Equal(new[] { KvStatus.Ok }, await h.Store.PutAsync([Key("a")], [TestValues.Value(1, 1 << 20)]));
        Assert.Equal(TestValues.Value(1, 1 << 20), await h.Store.GetAsync(Key("a")));
        Assert.Equal(0, h.Node.Counters.AuthFailures);
        Assert.Equal(0, h.Node.Counters.Requests(Opcode.Put));
    }

    [Fact]
    public async Task A_connection_that_leased_and_reserved_then_closed_leaks_nothing()
    {
        await using var h = await StartAsync("shm");
        Assert.Equal(new[] { KvStatus.Ok }, await h.Store.PutAsync([Key("held")], [TestValues.Value(1, 100_000)]));
        var raw = await ClientConnection.OpenAsync("127.0.0.1", h.Node.Port, null, null, "raw", TimeSpan.FromSeconds(5), default);
        var leased = ShmMessages.ReadLeaseReply(await raw.CallAsync(Opcode.Lease, TcpTransport.KeyBatchMeta([Key("held")], 0, 1), default));
        Assert.Equal(WireStatus.Ok, Assert.Single(leased).Status);
        var meta = new byte[ShmMessages.AllocRequestSize([Key("half")], 0, 1)];
        var w = new MetaWriter(meta);
        w.U32(1);
        ShmMessages.WriteAllocEntry(ref w, Key("half").Span, 50_000);
        Assert.Equal(WireStatus.Ok, Assert.Single(ShmMessages.ReadAllocReply(await raw.CallAsync(Opcode.Alloc, meta, default))).Status);
        Assert.True(h.Node.Store.GetStats() is { ActiveLeases: 1, Reservations: 1 }, "the raw connection holds a lease and a reservation");
        await raw.DisposeAsync();   // never released, never committed
        await Poll.UntilAsync(() => h.Node.Store.GetStats() is { ActiveLeases: 0, Reservations: 0 }, "the closed connection's lease and reservation to be freed");
        Assert.Equal(new[] { 1, 0 }, await h.Store.ExistsAsync([Key("held"), Key("half")]));
        Assert.Equal(TestValues.Value(1, 100_000), await h.Store.GetAsync(Key("held")));
    }

    [Fact]
    public async Task A_store_disposed_with_gets_and_puts_in_flight_leaks_no_lease_or_reservation()
    {
        await using var h = await StartAsync("shm", new StoreOptions { Capacity = 256L << 20 });
        long connectionsBefore = h.Node.Counters.Connections;
        var store = await h.NewClientAsync(connections: 4);
        var keys = Enumerable.Range(0, 8).Select(i => Key($"big{i}")).ToArray();
        Assert.All(await store.PutAsync(keys, keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, 4 << 20)).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
        var gets = new List<Task<KvGetResult[]>>();
        var puts = new List<Task<KvStatus[]>>();
        for (int i = 0; i < 16; i++)
        {
            gets.Add(store.GetAsync(keys, keys.Select(_ => (Memory<byte>)new byte[4 << 20]).ToArray()));
            puts.Add(store.PutAsync([Key($"new{i}")], [TestValues.Value(100 + i, 4 << 20)]));
        }
        await store.DisposeAsync();
        // Every call ends with per-key statuses, none throws.
        foreach (var results in await Task.WhenAll(gets))
            Assert.All(results, r => Assert.True(r.Status is KvStatus.Ok or KvStatus.Unavailable, $"unexpected {r.Status}"));
        foreach (var statuses in await Task.WhenAll(puts))
            Assert.All(statuses, s => Assert.True(s is KvStatus.Ok or KvStatus.Unavailable, $"unexpected {s}"));
        // Also after the store is gone: calls report Unavailable and open nothing on the node.
        Assert.Equal(KvStatus.Unavailable, (await store.GetAsync(keys[..1], [new byte[4 << 20]]))[0].Status);
        Assert.Equal(KvStatus.Unavailable, (await store.PutAsync([Key("late")], [TestValues.Value(1, 10)]))[0]);
        await Poll.UntilAsync(() => h.Node.Store.GetStats() is { ActiveLeases: 0, Reservations: 0 }, "leases and reservations of the disposed store to be freed");
        await Poll.UntilAsync(() => h.Node.Counters.Connections == connectionsBefore, "no connection of the disposed store left open");
    }

    [Fact]
    public async Task Many_concurrent_gets_and_puts_on_one_shm_store_are_byte_exact()
    {
        await using var h = await StartAsync("shm", new StoreOptions { Capacity = 256L << 20 });
        int[] sizes = [0, 1, 4095, 4096, 4097, 65_536, 1 << 20];
        long wrong = 0, checkedValues = 0;
        var workers = Enumerable.Range(0, 16).Select(t => Task.Run(async () =>
        {
            var rng = new Random(t);
            for (int round = 0; round < 30; round++)
            {
                // Each worker owns its keys, so every read must return exactly what it last wrote.
                var ids = Enumerable.Range(0, 4).Select(j => j).ToArray();
                var lengths = ids.Select(_ => sizes[rng.Next(sizes.Length)]).ToArray();
                var values = ids.Select(j => TestValues.Value(t * 100_000 + round * 10 + j, lengths[j])).ToArray();
                var keys = ids.Select(j => Key($"w{t}/{j}")).ToArray();
                if (round % 2 == 0)
                    Assert.All(await h.Store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
                else   // gathered from two pieces
                    Assert.All(await h.Store.PutGatherAsync(keys, values.Select(v => (IReadOnlyList<ReadOnlyMemory<byte>>)[v.AsMemory(0, v.Length / 3), v.AsMemory(v.Length / 3)]).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
                var pieces = values.Select(v => new[] { new byte[v.Length / 2], new byte[v.Length - v.Length / 2 + 7] }).ToArray();
                var got = await h.Store.GetScatterAsync(keys, pieces.Select(p => (IReadOnlyList<Memory<byte>>)[p[0], p[1]]).ToArray());
                for (int j = 0; j < keys.Length; j++)
                {
                    Assert.Equal(new KvGetResult(KvStatus.Ok, lengths[j]), got[j]);
                    byte[] joined = [.. pieces[j][0], .. pieces[j][1].AsSpan(0, lengths[j] - pieces[j][0].Length)];
                    if (!joined.AsSpan().SequenceEqual(values[j])) Interlocked.Increment(ref wrong);
                    Interlocked.Increment(ref checkedValues);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);
        Assert.Equal(16 * 30 * 4, checkedValues);
        Assert.Equal(0, wrong);
        Assert.Equal(0, h.Node.Counters.Requests(Opcode.Get));
    }

    [Fact]
    public async Task Cluster_members_on_this_host_are_reached_through_their_arenas()
    {
        await using var a = StartNode(shm: true);
        await using var b = StartNode(shm: true);
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"{AddressOf(a)},{AddressOf(b)}" }))
        {
            var keys = Enumerable.Range(0, 64).Select(i => Key($"c{i}")).ToArray();
            Assert.All(await store.PutAsync(keys, keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, 3000 + i)).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
            var dests = keys.Select(_ => (Memory<byte>)new byte[4000]).ToArray();
            var got = await store.GetAsync(keys, dests);
            for (int i = 0; i < keys.Length; i++)
            {
                Assert.Equal(new KvGetResult(KvStatus.Ok, 3000 + i), got[i]);
                Assert.True(dests[i].Span[..(3000 + i)].SequenceEqual(TestValues.Value(i, 3000 + i)), $"c{i} has wrong bytes");
            }
        }
        foreach (var node in new[] { a, b })
        {
            Assert.True(node.Counters.Requests(Opcode.Commit) > 0 && node.Counters.Requests(Opcode.Lease) > 0, "a member was not used through shm");
            Assert.Equal(0, node.Counters.Requests(Opcode.Put) + node.Counters.Requests(Opcode.Get));
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData(4L << 20)]
    public async Task A_batch_larger_than_the_connections_reservation_share_stores_every_value(long? share)
    {
        // A connection may hold at most a quarter of the arena reserved (or what the operator set): an ALLOC past that
        // share answers OUT_OF_MEMORY for the key. One PutAsync of 80 MiB (past the default 64 MiB share of a 256 MiB
        // arena), and four of them at once on the same store, must still store every value: the client keeps a
        // connection's reservations within the share. (The arena has room for every value and every reservation, so
        // only the share can refuse a key.)
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 256L << 20, MaxValueBytes = 4L << 20 },
            SharedMemory = true,
            MaxReservedBytesPerConnection = share,
        });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address });
        Assert.Equal(KvTransportKind.Shm, store.Transport);
        var keys = Enumerable.Range(0, 40).Select(i => Key($"share/{i}")).ToArray();
        var values = Enumerable.Range(0, 40).Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, 2 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        var writers = Enumerable.Range(0, 4).Select(t => store.PutAsync(keys.Skip(t * 10).Take(10).ToArray(), values.Skip(t * 10).Take(10).ToArray())).ToArray();
        foreach (var statuses in await Task.WhenAll(writers)) Assert.All(statuses, s => Assert.Equal(KvStatus.Ok, s));
        for (int i = 0; i < 40; i += 13) Assert.Equal(values[i].ToArray(), await store.GetAsync(keys[i]));
        Assert.Equal(0, node.Node.StatsSnapshot().Single(s => s.Key == "reservations").Value);
    }
}
