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
}
