using Kvasir.Client.Internal;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

/// <summary>
/// A large PUT over TCP whose CRCs the client computes goes as a few requests of consecutive keys on one connection, the
/// next piece's CRCs computed while the piece before it is sent (TcpTransport.PutPieces). What a user relies on: every
/// value stored byte-exact under a CRC that vouches for it, a chain still a chain across the pieces, and a key put twice in
/// one batch keeping its last value.
/// </summary>
public sealed class PutPiecesTests
{
    private static PutBatch Batch(params int[] sizes) =>
        new(sizes.Select((_, i) => (ReadOnlyMemory<byte>)Key($"k/{i}")).ToArray(),
            sizes.Select(s => new ValueSource(new byte[s])).ToArray());

    [Fact]
    public void A_range_of_two_mebibytes_or_more_in_several_values_is_cut_into_up_to_four_runs_of_about_equal_bytes()
    {
        const int MiB = 1 << 20;
        Assert.Equal([(0, 4), (4, 8), (8, 12), (12, 16)], TcpTransport.PutPieces(Batch(Enumerable.Repeat(MiB, 16).ToArray()), 0, 16));
        Assert.Equal([(0, 4), (4, 8)], TcpTransport.PutPieces(Batch(Enumerable.Repeat(MiB / 4, 8).ToArray()), 0, 8));
        Assert.Equal([(2, 3), (3, 4), (4, 6)], TcpTransport.PutPieces(Batch(1, 1, MiB, MiB, MiB / 2, MiB / 2), 2, 6));
        // Too small, one value, or not enough bytes for two pieces of half the threshold: one request.
        Assert.Equal([(0, 2)], TcpTransport.PutPieces(Batch(MiB, MiB - 1), 0, 2));
        Assert.Equal([(0, 1)], TcpTransport.PutPieces(Batch(64 * MiB), 0, 1));
        // Every piece holds at least one key, whatever the sizes.
        var uneven = TcpTransport.PutPieces(Batch(8 * MiB, 1, 1, 1), 0, 4);
        Assert.Equal(0, uneven[0].Start);
        Assert.Equal(4, uneven[^1].End);
        Assert.All(uneven, p => Assert.True(p.End > p.Start));
        Assert.All(uneven.Zip(uneven.Skip(1)), pair => Assert.Equal(pair.First.End, pair.Second.Start));
    }

    [Fact]
    public void A_range_with_a_key_twice_stays_one_request()
    {
        var batch = new PutBatch([Key("a"), Key("b"), Key("a"), Key("c")],
            [.. Enumerable.Repeat(new ValueSource(new byte[1 << 20]), 4)]);
        Assert.Equal([(0, 4)], TcpTransport.PutPieces(batch, 0, 4));
        Assert.Equal([(1, 2), (2, 3), (3, 4)], TcpTransport.PutPieces(batch, 1, 4));
    }

    [Fact]
    public async Task A_large_put_goes_as_four_requests_and_every_value_is_stored_under_a_crc_that_vouches_for_it()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 256L << 20 } });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp, ConnectionsPerNode = 1 });
        var keys = Enumerable.Range(0, 16).Select(i => (ReadOnlyMemory<byte>)Key($"big/{i}")).ToArray();
        var values = Enumerable.Range(0, 16).Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, (1 << 20) + 7 * i)).ToArray();
        Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(4, node.Counters.Requests(Opcode.Put));
        for (int i = 0; i < keys.Length; i++) Assert.Equal(values[i].ToArray(), await store.GetAsync(keys[i]));
        Assert.Equal(0L, node.Node.StatsSnapshot().Single(s => s.Key == "crc_mismatches").Value);
    }

    [Fact]
    public async Task A_chained_put_cut_into_pieces_is_one_chain()
    {
        // 40 blocks of 96 KiB (3.75 MiB): three requests, each continuing the last key of the one before. Under prefix-aware
        // eviction what is left of the chain is then always a prefix; a piece stored as a root would be evicted apart.
        const int Length = 40, Block = 96 * 1024;
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 8L << 20, MaxValueBytes = 1L << 20, Eviction = EvictionPolicyKind.PrefixAware },
        });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp, ConnectionsPerNode = 1 });
        var keys = Enumerable.Range(0, Length).Select(i => (ReadOnlyMemory<byte>)Key($"chain/{i}")).ToArray();
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, Block)).ToArray();
        Assert.All(await store.PutAsync(keys, values, new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(3, node.Counters.Requests(Opcode.Put));
        for (int i = 0; i < Length; i++) Assert.Equal(values[i].ToArray(), await store.GetAsync(keys[i]));
        await ShmTransportTests.AssertEvictedAsPrefixAsync(store, keys, Block);
    }

    [Fact]
    public async Task A_key_put_twice_in_one_large_batch_keeps_its_last_value()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp });
        var keys = Enumerable.Range(0, 8).Select(i => (ReadOnlyMemory<byte>)Key(i == 6 ? "twice" : $"once/{i}")).ToArray();
        keys[1] = Key("twice");
        var values = Enumerable.Range(0, 8).Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, 1 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(1, node.Counters.Requests(Opcode.Put));
        Assert.Equal(values[6].ToArray(), await store.GetAsync(Key("twice")));
    }
}
