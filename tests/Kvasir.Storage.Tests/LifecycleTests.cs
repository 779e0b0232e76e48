using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

public sealed class LifecycleTests
{
    private static KvArenaStore NewStore() => new(new StoreOptions { Capacity = 4L << 20, MaxValueBytes = 1 << 20 });

    [Fact]
    public void A_reserved_value_is_invisible_until_committed()
    {
        using var store = NewStore();
        store.TryReserve(Key("k"), 10, out Reservation? reservation);
        Assert.False(store.Exists(Key("k")));
        Assert.Equal(WireStatus.NotFound, store.TryLease(Key("k"), null, out _));
        Assert.Equal(1, store.GetStats().Reservations);

        store.Commit(reservation!, 0);
        Assert.True(store.Exists(Key("k")));
        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.Reservations);
        Assert.Equal(1, stats.Puts);
    }

    [Fact]
    public void Overwrite_shows_the_new_bytes_and_frees_the_old_space()
    {
        using var store = NewStore();
        Put(store, "k", 100_000);
        Assert.Equal(WireStatus.Ok, Put(store, "k", 5000, nonce: 9));
        Assert.True(ReadsBackExactly(store, "k", 5000, nonce: 9));
        StoreStats stats = store.GetStats();
        Assert.Equal(8192, stats.AllocatedBytes);
        Assert.Equal(5000, stats.LiveBytes);
        Assert.Equal(1, stats.Keys);
    }

    [Fact]
    public void Pins_carry_over_to_an_overwritten_value()
    {
        using var store = NewStore();
        Put(store, "k", 10);
        store.Pin(Key("k"));
        Put(store, "k", 20);
        Assert.Equal(1, store.GetStats().PinnedKeys);
        for (int i = 0; i < 50; i++)
        {
            Put(store, $"filler-{i}", 300_000);
        }

        Assert.True(ReadsBackExactly(store, "k", 20));
    }

    [Fact]
    public void Removing_a_pinned_key_is_allowed_and_drops_its_pins()
    {
        using var store = NewStore();
        Put(store, "k", 10);
        store.Pin(Key("k"));
        Assert.Equal(WireStatus.Ok, store.Remove(Key("k")));
        Assert.Equal(WireStatus.NotFound, store.Remove(Key("k")));
        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.PinnedKeys);
        Assert.Equal(1, stats.Removes);
        Assert.Equal(0, stats.AllocatedBytes);
    }

    [Fact]
    public void Abort_frees_the_space_and_is_idempotent()
    {
        using var store = NewStore();
        store.TryReserve(Key("k"), 50_000, out Reservation? reservation);
        Assert.Equal(53_248, store.GetStats().AllocatedBytes);
        store.Abort(reservation!);
        store.Abort(reservation!);
        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.AllocatedBytes);
        Assert.Equal(0, stats.Reservations);
        Assert.False(store.Exists(Key("k")));
        Assert.Throws<InvalidOperationException>(() => reservation!.Span.Length);
    }

    [Fact]
    public void Committing_a_settled_reservation_throws()
    {
        using var store = NewStore();
        store.TryReserve(Key("a"), 1, out Reservation? committed);
        store.Commit(committed!, 0);
        Assert.Throws<InvalidOperationException>(() => store.Commit(committed!, 0));
        store.Abort(committed!); // abort after commit leaves the value alone
        Assert.True(store.Exists(Key("a")));

        store.TryReserve(Key("b"), 1, out Reservation? aborted);
        store.Abort(aborted!);
        Assert.Throws<InvalidOperationException>(() => store.Commit(aborted!, 0));
    }

    [Fact]
    public void A_reservation_from_another_store_is_refused()
    {
        using var first = NewStore();
        using var second = NewStore();
        first.TryReserve(Key("k"), 1, out Reservation? reservation);
        Assert.Throws<ArgumentException>(() => second.Commit(reservation!, 0));
    }

    [Fact]
    public void Last_commit_wins_between_two_reservations_of_one_key()
    {
        using var store = NewStore();
        byte[] key = Key("k");
        store.TryReserve(key, 100, out Reservation? first);
        store.TryReserve(key, 200, out Reservation? second);
        Fill(second!.Span, key);
        store.Commit(second, Crc32C.Compute(second.Span));
        Fill(first!.Span, key);
        store.Commit(first, Crc32C.Compute(first.Span));
        Assert.True(ReadsBackExactly(store, "k", 100));
        Assert.Equal(4096, store.GetStats().AllocatedBytes);
    }

    [Fact]
    public void Every_call_after_dispose_throws_object_disposed()
    {
        var store = NewStore();
        Put(store, "k", 10);
        store.TryReserve(Key("r"), 10, out Reservation? reservation);
        store.Dispose();
        store.Dispose();

        Assert.Throws<ObjectDisposedException>(() => store.TryReserve(Key("x"), 1, out _));
        Assert.Throws<ObjectDisposedException>(() => store.Commit(reservation!, 0));
        Assert.Throws<ObjectDisposedException>(() => store.Abort(reservation!));
        Assert.Throws<ObjectDisposedException>(() => store.TryLease(Key("k"), null, out _));
        Assert.Throws<ObjectDisposedException>(() => store.Exists(Key("k")));
        Assert.Throws<ObjectDisposedException>(() => store.Remove(Key("k")));
        Assert.Throws<ObjectDisposedException>(() => store.Pin(Key("k")));
        Assert.Throws<ObjectDisposedException>(() => store.Unpin(Key("k")));
        Assert.Throws<ObjectDisposedException>(() => store.ReapExpiredLeases());
        Assert.Throws<ObjectDisposedException>(() => store.GetStats());
    }
}
