using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

public sealed class EvictionTests
{
    private const long Capacity = 8L << 20;

    private static StoreOptions Options(EvictionPolicyKind policy = EvictionPolicyKind.Lru) =>
        new() { Capacity = Capacity, MaxValueBytes = 1 << 20, Eviction = policy };

    [Fact]
    public void Filling_three_times_capacity_stays_under_the_high_watermark_and_every_survivor_reads_back_exactly()
    {
        using var store = new KvArenaStore(Options());
        var random = new Random(42);
        var lengths = new Dictionary<string, long>();
        long written = 0;
        for (int i = 0; written < 3 * Capacity; i++)
        {
            long length = random.Next(0, 256 * 1024);
            string key = $"key-{i}";
            Assert.Equal(WireStatus.Ok, Put(store, key, length));
            lengths[key] = length;
            written += length;

            StoreStats stats = store.GetStats();
            Assert.True(stats.AllocatedBytes <= Capacity * 0.95, $"allocated {stats.AllocatedBytes} above the high watermark after put {i}");
        }

        StoreStats final = store.GetStats();
        Assert.True(final.Evictions > 0);
        Assert.Equal(lengths.Count, final.Keys + final.Evictions);
        int survivors = lengths.Count(pair => ReadsBackExactly(store, pair.Key, pair.Value));
        Assert.Equal(final.Keys, survivors);
        Assert.True(survivors > 10, $"only {survivors} values survived");
    }

    [Fact]
    public void Lru_evicts_the_least_recently_read_value_first()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = 1 << 20, Eviction = EvictionPolicyKind.Lru });
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"k{i}", 64 * 1024));
        }

        Assert.True(ReadsBackExactly(store, "k0", 64 * 1024)); // k0 becomes the most recently used
        for (int i = 10; i < 16; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"k{i}", 64 * 1024));
        }

        Assert.True(store.GetStats().Evictions > 0);
        Assert.True(store.Exists(Key("k0")));
        Assert.False(store.Exists(Key("k1")));
    }

    [Fact]
    public void Get_of_evicted_key_is_a_miss_not_an_error()
    {
        using var store = new KvArenaStore(Options());
        Put(store, "first", 1 << 20);
        for (int i = 0; i < 24; i++)
        {
            Put(store, $"filler-{i}", 1 << 20);
        }

        Assert.Equal(WireStatus.NotFound, store.TryLease(Key("first"), null, out ValueLease? lease));
        Assert.Null(lease);
        Assert.Equal(1, store.GetStats().Misses);
    }

    [Fact]
    public void Pinned_values_survive_three_times_capacity_and_become_evictable_when_unpinned()
    {
        using var store = new KvArenaStore(Options());
        for (int i = 0; i < 4; i++)
        {
            Put(store, $"pinned-{i}", 300_000);
            Assert.Equal(WireStatus.Ok, store.Pin(Key($"pinned-{i}")));
        }

        Assert.Equal(WireStatus.Ok, store.Pin(Key("pinned-0"))); // pinned twice: needs two unpins
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"filler-{i}", 250_000));
        }

        for (int i = 0; i < 4; i++)
        {
            Assert.True(ReadsBackExactly(store, $"pinned-{i}", 300_000), $"pinned-{i} was evicted");
        }

        Assert.Equal(4, store.GetStats().PinnedKeys);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(WireStatus.Ok, store.Unpin(Key($"pinned-{i}")));
        }

        Assert.Equal(1, store.GetStats().PinnedKeys);
        for (int i = 100; i < 200; i++)
        {
            Put(store, $"filler-{i}", 250_000);
        }

        Assert.True(store.Exists(Key("pinned-0")));
        for (int i = 1; i < 4; i++)
        {
            Assert.False(store.Exists(Key($"pinned-{i}")), $"pinned-{i} should have been evicted after unpinning");
        }
    }

    [Fact]
    public void Unpin_of_an_unpinned_key_is_a_no_op_and_of_an_absent_key_is_not_found()
    {
        using var store = new KvArenaStore(Options());
        Put(store, "k", 10);
        Assert.Equal(WireStatus.Ok, store.Unpin(Key("k")));
        Assert.Equal(0, store.GetStats().PinnedKeys);
        Assert.Equal(WireStatus.NotFound, store.Unpin(Key("absent")));
        Assert.Equal(WireStatus.NotFound, store.Pin(Key("absent")));
    }

    [Fact]
    public void Store_answers_out_of_memory_when_everything_is_pinned()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = 1 << 20, Eviction = EvictionPolicyKind.Lru });
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"k{i}", 64 * 1024));
            store.Pin(Key($"k{i}"));
        }

        Assert.Equal(WireStatus.OutOfMemory, store.TryReserve(Key("more"), 1, out Reservation? reservation));
        Assert.Null(reservation);
        StoreStats stats = store.GetStats();
        Assert.Equal(1, stats.OutOfMemory);
        Assert.Equal(0, stats.Evictions);
        Assert.Equal(16, stats.Keys);
    }

    [Fact]
    public void Reserved_space_is_never_evicted()
    {
        using var store = new KvArenaStore(Options());
        byte[] key = Key("slow-upload");
        Assert.Equal(WireStatus.Ok, store.TryReserve(key, 500_000, out Reservation? reservation));
        Fill(reservation!.Span, key);
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"filler-{i}", 250_000));
        }

        Assert.True(Matches(reservation.Span, key), "reserved bytes were overwritten");
        store.Commit(reservation, Crc32C.Compute(reservation.Span));
        Assert.True(ReadsBackExactly(store, "slow-upload", 500_000));
    }

    [Fact]
    public void A_large_value_evicts_small_ones_until_a_contiguous_extent_is_free()
    {
        using var store = new KvArenaStore(Options());
        for (int i = 0; store.GetStats().Evictions == 0; i++)
        {
            Put(store, $"small-{i}", 4096);
        }

        Assert.Equal(WireStatus.Ok, Put(store, "large", 1 << 20));
        Assert.True(ReadsBackExactly(store, "large", 1 << 20));
        Assert.True(store.GetStats().AllocatedBytes <= Capacity);
    }
}
