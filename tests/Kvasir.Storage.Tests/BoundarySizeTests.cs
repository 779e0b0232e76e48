using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

public sealed class BoundarySizeTests
{
    private const int Granule = 4096;
    private const long MaxValue = 256 * 1024;
    private const int Block = 8192;

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(Granule - 1L)]
    [InlineData((long)Granule)]
    [InlineData(Granule + 1L)]
    [InlineData(MaxValue)]
    public void Variable_mode_stores_boundary_sizes_exactly_and_charges_whole_granules(long length)
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = MaxValue, Granule = Granule });
        Assert.Equal(WireStatus.Ok, Put(store, "k", length));
        Assert.True(ReadsBackExactly(store, "k", length));

        long granules = Math.Max(1, (length + Granule - 1) / Granule);
        StoreStats stats = store.GetStats();
        Assert.Equal(granules * Granule, stats.AllocatedBytes);
        Assert.Equal(length, stats.LiveBytes);
    }

    [Fact]
    public void Variable_mode_refuses_one_byte_over_the_maximum()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = MaxValue, Granule = Granule });
        Assert.Equal(WireStatus.ValueTooLarge, store.TryReserve(Key("k"), MaxValue + 1, out Reservation? reservation));
        Assert.Null(reservation);
        Assert.Equal(0, store.GetStats().AllocatedBytes);
    }

    [Fact]
    public void A_value_as_large_as_the_whole_arena_fits_in_an_empty_store()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = 1 << 20 });
        Assert.Equal(WireStatus.Ok, Put(store, "all", 1 << 20));
        Assert.True(ReadsBackExactly(store, "all", 1 << 20));
        Assert.Equal(0, store.GetStats().LargestFreeExtentBytes);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(Block - 1L)]
    [InlineData((long)Block)]
    public void Block_mode_stores_values_up_to_the_block_with_their_real_length(long length)
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = MaxValue, BlockSize = Block });
        Assert.Equal(WireStatus.Ok, Put(store, "k", length));
        Assert.True(ReadsBackExactly(store, "k", length));
        Assert.Equal(Block, store.GetStats().AllocatedBytes);
    }

    [Fact]
    public void Block_mode_refuses_one_byte_over_the_block_even_below_the_maximum()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = MaxValue, BlockSize = Block });
        Assert.Equal(WireStatus.ValueTooLarge, store.TryReserve(Key("k"), Block + 1, out _));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(512)]
    public void Keys_of_one_to_max_key_bytes_are_accepted(int keyLength)
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = MaxValue });
        byte[] key = Enumerable.Range(0, keyLength).Select(i => (byte)i).ToArray();
        Assert.Equal(WireStatus.Ok, store.TryReserve(key, 10, out Reservation? reservation));
        store.Commit(reservation!, 0);
        Assert.True(store.Exists(key));
        Assert.Equal(WireStatus.Ok, store.TryLease(key, null, out ValueLease? lease));
        store.Release(lease!);
        Assert.Equal(WireStatus.Ok, store.Pin(key));
        Assert.Equal(WireStatus.Ok, store.Unpin(key));
        Assert.Equal(WireStatus.Ok, store.Remove(key));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(513)]
    public void Empty_and_over_long_keys_are_invalid_everywhere(int keyLength)
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = MaxValue });
        byte[] key = new byte[keyLength];
        Assert.Equal(WireStatus.InvalidKey, store.TryReserve(key, 10, out _));
        Assert.Equal(WireStatus.InvalidKey, store.TryLease(key, null, out _));
        Assert.Equal(WireStatus.InvalidKey, store.Remove(key));
        Assert.Equal(WireStatus.InvalidKey, store.Pin(key));
        Assert.Equal(WireStatus.InvalidKey, store.Unpin(key));
        Assert.False(store.Exists(key));
        Assert.Equal(0, store.GetStats().Misses);
    }

    /// <summary>
    /// Keys at every edge of where a slot holds them (inside the slot in steps of 8 bytes up to 64, a key array beyond):
    /// each is found, listed by a scan byte for byte, evicted by its own key, and kept apart from a key that differs
    /// only in its last byte, under every policy (list and heap slots hold keys the same way).
    /// </summary>
    [Theory]
    [InlineData(EvictionPolicyKind.Lru)]
    [InlineData(EvictionPolicyKind.S3Fifo)]
    [InlineData(EvictionPolicyKind.Lfu)]
    [InlineData(EvictionPolicyKind.ChainLfu)]
    public void Keys_of_every_stored_length_edge_read_back_scan_and_evict_as_written(EvictionPolicyKind policy)
    {
        int[] lengths = [1, 7, 8, 9, 16, 17, 31, 32, 33, 56, 63, 64, 65, 200, 512];
        var evicted = new List<byte[]>();
        using var store = new KvArenaStore(new StoreOptions { Capacity = 64 * 64, Granule = 64, MaxValueBytes = 64, Eviction = policy });
        store.Evicted = key => evicted.Add(key);
        var written = new List<byte[]>();
        foreach (int length in lengths)
        {
            byte[] key = [.. Enumerable.Range(0, length).Select(i => (byte)(length + i))];
            byte[] twin = [.. key];
            twin[^1] ^= 0xFF;
            foreach (byte[] k in new[] { key, twin })
            {
                Assert.Equal(WireStatus.Ok, store.TryReserve(k, 1, out Reservation? reservation));
                store.Commit(reservation!, 0);
                written.Add(k);
            }

            Assert.True(store.Exists(key));
            Assert.True(store.Exists(twin));
            if (length > 1) Assert.False(store.Exists(key.AsSpan(0, length - 1)));   // no key written starts with its first byte but is shorter
        }

        Assert.Equal(
            written.Select(Convert.ToHexString).Order(StringComparer.Ordinal),
            store.Scan([], [], 100).Keys.Select(e => Convert.ToHexString(e.Key)));

        // 30 keys in 64 granules, below the high watermark; 100 more one-granule values push every one of them out.
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"filler-{i:D3}", 1));
        }

        Assert.All(written, k => Assert.False(store.Exists(k)));
        Assert.Equal(
            written.Select(Convert.ToHexString).Order(StringComparer.Ordinal),
            evicted.Select(Convert.ToHexString).Where(h => written.Any(w => Convert.ToHexString(w) == h)).Order(StringComparer.Ordinal));
    }
}
