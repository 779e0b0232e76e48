using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

/// <summary>
/// KvStoreOptions.VerifyValueCrc (issue 21): a GET hit whose bytes were corrupted between the node's arena and the
/// caller's buffer is a ChecksumMismatch miss for that key alone, counted and logged once; the batch's other keys are
/// exact and the connection stays usable. Over TCP the corruption is a relay flipping one payload byte of a GET reply;
/// over shared memory a byte of the value flipped in the arena file after it was stored. Without verification the test
/// shows the flipped byte reaching the caller, so the verifying tests can fail.
/// </summary>
public sealed class ValueVerifyTests
{
    private static TestNode StartNode(bool shm = false)
        => TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 }, SharedMemory = shm });

    private static Task<KvStore> ConnectAsync(string address, bool verify, ListLoggerFactory? log = null, KvTransportKind transport = KvTransportKind.Tcp)
        => KvStore.ConnectAsync(new KvStoreOptions { Server = address, VerifyValueCrc = verify, LoggerFactory = log, Transport = transport, ConnectionsPerNode = 1 });

    private static int Warnings(ListLoggerFactory log) => log.Messages.Count(m => m.StartsWith("Warning:", StringComparison.Ordinal) && m.Contains("CRC-32C mismatch"));

    /// <summary>Value sizes around the client's 64 KiB read-ahead buffer (below it values come out of the buffer, from it on straight from the socket), and 4 MiB.</summary>
    public static readonly TheoryData<int, int> SizesAndFlips = new()
    {
        { 1, 0 },
        { 65_535, 65_534 },
        { 65_536, 0 },
        { 65_537, 65_536 },
        { 300_000, 150_000 },
        { 4 << 20, (4 << 20) - 1 },
    };

    [Theory]
    [MemberData(nameof(SizesAndFlips))]
    public async Task A_byte_flipped_on_the_wire_is_a_checksum_mismatch_for_that_key_and_the_batch_and_connection_stay_exact(int size, int flipAt)
    {
        await using var node = StartNode();
        await using var relay = new FlippingRelay(node.Address);
        var log = new ListLoggerFactory();
        await using var store = await ConnectAsync(relay.Address, verify: true, log);
        ReadOnlyMemory<byte>[] keys = [Key("before"), Key("hit"), Key("empty"), Key("after")];
        byte[][] values = [TestValues.Value(1, 70_000), TestValues.Value(2, size), [], TestValues.Value(3, 777)];
        Assert.All(await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()), s => Assert.Equal(KvStatus.Ok, s));

        relay.Arm(values[0].Length + flipAt);
        var dests = values.Select(v => new byte[v.Length + 10]).ToArray();
        var results = await store.GetAsync(keys, dests.Select(d => (Memory<byte>)d).ToArray());

        Assert.Equal(1, relay.Flips);
        Assert.Equal(KvStatus.ChecksumMismatch, results[1].Status);
        foreach (int i in new[] { 0, 2, 3 })
        {
            Assert.Equal(new KvGetResult(KvStatus.Ok, values[i].Length), results[i]);
            Assert.Equal(values[i], dests[i][..values[i].Length]);
        }
        Assert.Equal(1L, store.ChecksumMismatches);
        Assert.Equal(1, Warnings(log));
        // The reply was read to its end: the same connection (one per store here) serves the key again, intact.
        Assert.Equal(values[1], await store.GetAsync(keys[1]));
        Assert.Equal(1L, store.ChecksumMismatches);
    }

    [Fact]
    public async Task Without_verification_the_flipped_byte_reaches_the_caller()
    {
        await using var node = StartNode();
        await using var relay = new FlippingRelay(node.Address);
        await using var store = await ConnectAsync(relay.Address, verify: false);
        var value = TestValues.Value(4, 100_000);
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key("k")], [value]))[0]);

        relay.Arm(12_345);
        var got = await store.GetAsync(Key("k"));

        Assert.Equal(1, relay.Flips);
        Assert.NotNull(got);
        var expected = (byte[])value.Clone();
        expected[12_345] ^= 0x5A;
        Assert.Equal(expected, got);
        Assert.Equal(0L, store.ChecksumMismatches);
    }

    [Fact]
    public async Task Scattered_and_allocated_destinations_are_verified_across_their_pieces()
    {
        await using var node = StartNode();
        await using var relay = new FlippingRelay(node.Address);
        await using var store = await ConnectAsync(relay.Address, verify: true);
        var value = TestValues.Value(5, 200_000);
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key("k")], [value]))[0]);

        // Three pieces; the flip lands in the last one, so a check of only the first piece would miss it.
        var pieces = new[] { new byte[1000], new byte[100_000], new byte[99_000] };
        relay.Arm(150_000);
        var scattered = await store.GetScatterAsync([Key("k")], [pieces.Select(p => (Memory<byte>)p).ToArray()]);
        Assert.Equal(KvStatus.ChecksumMismatch, scattered[0].Status);

        var clean = await store.GetScatterAsync([Key("k")], [pieces.Select(p => (Memory<byte>)p).ToArray()]);
        Assert.Equal(new KvGetResult(KvStatus.Ok, value.Length), clean[0]);
        Assert.Equal(value, pieces.SelectMany(p => p).ToArray());

        // Allocate-on-get: the corrupted value is a miss (null), not bytes.
        relay.Arm(0);
        Assert.Null(await store.GetAsync(Key("k")));
        Assert.Equal(2L, store.ChecksumMismatches);
        Assert.Equal(value, await store.GetAsync(Key("k")));
    }

    /// <summary>
    /// Sizes around the 64 KiB read-ahead buffer and around the 256 KiB pieces both transports checksum at a time (TCP:
    /// one receive at most; shm: one copy out of the arena), over TCP and over shared memory.
    /// </summary>
    [Theory]
    [InlineData(KvTransportKind.Tcp)]
    [InlineData(KvTransportKind.Shm)]
    public async Task Verified_hits_of_every_size_read_back_exactly_with_no_mismatch(KvTransportKind transport)
    {
        await using var node = StartNode(shm: transport == KvTransportKind.Shm);
        await using var store = await ConnectAsync(node.Address, verify: true, transport: transport);
        Assert.Equal(transport, store.Transport);
        int[] sizes = [0, 1, 63, 64, 65_535, 65_536, 65_537, 262_143, 262_144, 262_145, 524_288, 1 << 20, 4 << 20];
        var keys = sizes.Select(s => (ReadOnlyMemory<byte>)Key($"s/{s}")).ToArray();
        var values = sizes.Select((s, i) => TestValues.Value(i, s)).ToArray();
        Assert.All(await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
        for (int i = 0; i < keys.Length; i++) Assert.Equal(values[i], await store.GetAsync(keys[i]));
        // One batch into scattered destinations whose piece boundaries fall off the 256 KiB grid.
        var pieces = sizes.Select(s => new[] { new byte[s / 3], new byte[s - s / 3 + 7] }).ToArray();
        var results = await store.GetScatterAsync(keys, pieces.Select(p => (IReadOnlyList<Memory<byte>>)p.Select(x => (Memory<byte>)x).ToArray()).ToArray());
        for (int i = 0; i < keys.Length; i++)
        {
            Assert.Equal(new KvGetResult(KvStatus.Ok, sizes[i]), results[i]);
            Assert.Equal(values[i], pieces[i].SelectMany(p => p).Take(sizes[i]).ToArray());
        }
        Assert.Equal(0L, store.ChecksumMismatches);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_byte_flipped_in_the_arena_is_a_checksum_mismatch_over_shared_memory_only_when_verifying(bool verify)
    {
        await using var node = StartNode(shm: true);
        var log = new ListLoggerFactory();
        await using var store = await ConnectAsync(node.Address, verify, log, KvTransportKind.Shm);
        var value = TestValues.Value(6, 600_000);
        var other = TestValues.Value(7, 5_000);
        Assert.All(await store.PutAsync([Key("k"), Key("o")], [value, other]), s => Assert.Equal(KvStatus.Ok, s));
        // A first read lets the node check the writer's CRC (VALUE_CRC values are checked once, lazily) while the bytes are good.
        Assert.Equal(value, await store.GetAsync(Key("k")));

        FlipInArena(node.Store.SharedMemoryPath!, value, 400_000);
        var dests = new[] { new byte[value.Length], new byte[other.Length] };
        var results = await store.GetAsync([Key("k"), Key("o")], dests.Select(d => (Memory<byte>)d).ToArray());

        Assert.Equal(new KvGetResult(KvStatus.Ok, other.Length), results[1]);
        Assert.Equal(other, dests[1]);
        if (verify)
        {
            Assert.Equal(KvStatus.ChecksumMismatch, results[0].Status);
            Assert.Equal(1L, store.ChecksumMismatches);
            Assert.Equal(1, Warnings(log));
        }
        else
        {
            Assert.Equal(new KvGetResult(KvStatus.Ok, value.Length), results[0]);
            Assert.Equal(1, value.Zip(dests[0]).Count(p => p.First != p.Second));
        }
    }

    /// <summary>Finds the value's only copy in the node's arena file by its first 64 bytes and flips the byte at <paramref name="offset"/> in it.</summary>
    private static void FlipInArena(string arenaPath, byte[] value, int offset)
    {
        using var file = new FileStream(arenaPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var arena = new byte[file.Length];
        file.ReadExactly(arena);
        int at = arena.AsSpan().IndexOf(value.AsSpan(0, 64));
        Assert.True(at >= 0, "the value's bytes are not in the arena file");
        Assert.True(arena.AsSpan(at + 64).IndexOf(value.AsSpan(0, 64)) < 0, "the value's bytes are in the arena file twice");
        file.Position = at + offset;
        file.WriteByte((byte)(arena[at + offset] ^ 0x5A));
        file.Flush();
    }
}

/// <summary>In a cluster, a replica whose copy fails the client's CRC check is passed over for the next replica.</summary>
public sealed class ValueVerifyClusterTests
{
    private static TestNode StartNode() => TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });

    /// <summary>A verifying store over two replicas: node a behind the relay (its copies can be corrupted on their way), node b direct.</summary>
    private static Task<KvStore> ConnectVerifyingAsync(FlippingRelay relay, TestNode b, bool replicaVersions) => KvStore.ConnectAsync(new KvStoreOptions
    {
        Server = $"{relay.Address},{b.Address}",
        Replicas = 2,
        ReplicaVersions = replicaVersions,
        VerifyValueCrc = true,
        Transport = KvTransportKind.Tcp,
    });

    [Fact]
    public async Task A_replica_whose_bytes_fail_the_check_is_passed_over_for_the_next_replica()
    {
        await using var a = StartNode();
        await using var b = StartNode();
        await using var relay = new FlippingRelay(a.Address);
        await using var store = await ConnectVerifyingAsync(relay, b, replicaVersions: false);
        // Whether the relayed node ranks first depends on the key: those that rank it first get their corrupted copy first.
        int flipped = 0;
        for (int k = 0; k < 16; k++)
        {
            var key = TestValues.Key($"r/{k}");
            var value = TestValues.Value(k, 20_000);
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([key], [value]))[0]);
            relay.Arm(10_000);
            Assert.Equal(value, await store.GetAsync(key));
            if (relay.Flips > flipped) flipped = relay.Flips;
            relay.Arm(-1);
        }
        Assert.True(flipped > 0, "no key ranked the relayed node first: the test did not exercise a corrupted replica");
        Assert.Equal(flipped, store.ChecksumMismatches);
    }

    [Fact]
    public async Task A_versioned_read_whose_newest_copy_fails_the_check_reads_that_copy_again_instead_of_an_older_one()
    {
        // docs/cluster.md § Versions: the newest version wins. Before, a newest copy corrupted on its way was passed over
        // for the other replica's older version: the get returned the value as it was before the last write.
        await using var a = StartNode();
        await using var b = StartNode();
        await using var relay = new FlippingRelay(a.Address);
        await using var store = await ConnectVerifyingAsync(relay, b, replicaVersions: true);
        var key = TestValues.Key("versioned");
        var old = TestValues.Value(1, 20_000);
        var newest = TestValues.Value(2, 20_000);
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([key], [old]))[0]);
        // The newest write reaches the relayed node only (its own clock versions it after the cluster's write).
        await using (var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = a.Address, Transport = KvTransportKind.Tcp }))
            Assert.Equal(KvStatus.Ok, (await direct.PutAsync([key], [newest]))[0]);

        relay.Arm(10_000);
        Assert.Equal(newest, await store.GetAsync(key));
        Assert.Equal(1, relay.Flips);
        Assert.Equal(1L, store.ChecksumMismatches);
        // Scattered and caller-owned destinations too (the relayed node's copy may be rank 0, read into them).
        relay.Arm(10_000);
        var dest = new byte[newest.Length];
        Assert.Equal(new KvGetResult(KvStatus.Ok, newest.Length), (await store.GetAsync([key], [dest]))[0]);
        Assert.Equal(newest, dest);
        Assert.Equal(2, relay.Flips);
    }
}
