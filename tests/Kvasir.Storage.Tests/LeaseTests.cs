using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

public sealed class LeaseTests
{
    private const long Capacity = 8L << 20;

    [Fact]
    public void A_leased_value_survives_overwrite_remove_and_eviction_pressure_and_is_reclaimed_on_release()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = Capacity, MaxValueBytes = 1 << 20 });
        const long length = 600_000;
        Put(store, "hot", length);
        Assert.Equal(WireStatus.Ok, store.TryLease(Key("hot"), null, out ValueLease? lease));
        byte[] original = lease!.Span.ToArray();

        Assert.Equal(WireStatus.Ok, Put(store, "hot", length, nonce: 1));
        Assert.True(ReadsBackExactly(store, "hot", length, nonce: 1), "new readers must see the overwrite");
        Assert.Equal(WireStatus.Ok, store.Remove(Key("hot")));
        Assert.False(store.Exists(Key("hot")));
        for (int i = 0; i < 120; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"filler-{i}", 200_000 + i));
        }

        Assert.True(original.AsSpan().SequenceEqual(lease.Span), "leased bytes changed under the reader");
        Assert.True(Matches(lease.Span, Key("hot")));

        long before = store.GetStats().AllocatedBytes;
        store.Release(lease);
        StoreStats after = store.GetStats();
        Assert.Equal(before - 600_000 / 4096 * 4096 - 4096, after.AllocatedBytes);
        Assert.Equal(0, after.ActiveLeases);
    }

    [Fact]
    public void New_leases_of_a_removed_key_miss_while_an_older_lease_still_reads_it()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = Capacity, MaxValueBytes = 1 << 20 });
        Put(store, "k", 5000);
        store.TryLease(Key("k"), null, out ValueLease? lease);
        store.Remove(Key("k"));
        Assert.Equal(WireStatus.NotFound, store.TryLease(Key("k"), null, out _));
        Assert.True(Matches(lease!.Span, Key("k")));
        Assert.Equal(8192, store.GetStats().AllocatedBytes);
        store.Release(lease);
        Assert.Equal(0, store.GetStats().AllocatedBytes);
    }

    [Fact]
    public void Release_is_idempotent_and_a_released_lease_hands_out_no_span()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = Capacity, MaxValueBytes = 1 << 20 });
        Put(store, "k", 100);
        store.TryLease(Key("k"), null, out ValueLease? lease);
        store.Release(lease!);
        store.Release(lease!);
        Assert.Equal(0, store.GetStats().ActiveLeases);
        Assert.Throws<InvalidOperationException>(() => lease!.Span.Length);
    }

    [Fact]
    public void Leases_get_increasing_ids_and_carry_the_committed_crc()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = Capacity, MaxValueBytes = 1 << 20 });
        store.TryReserve(Key("k"), 3, out Reservation? reservation);
        store.Commit(reservation!, 0xDEADBEEF);
        store.TryLease(Key("k"), null, out ValueLease? first);
        store.TryLease(Key("k"), null, out ValueLease? second);
        Assert.True(second!.Id > first!.Id);
        Assert.Equal(0xDEADBEEFu, first.Crc32C);
        Assert.Equal(2, store.GetStats().ActiveLeases);
    }

    [Fact]
    public void A_holder_is_told_once_when_its_lease_expires_and_the_memory_stays_until_it_releases()
    {
        using var store = new KvArenaStore(new StoreOptions
        {
            Capacity = Capacity,
            MaxValueBytes = 1 << 20,
            LeaseTimeout = TimeSpan.FromMilliseconds(50),
        });
        Put(store, "k", 10_000);
        var holder = new CountingHolder();
        store.TryLease(Key("k"), holder, out ValueLease? lease);
        store.Remove(Key("k"));

        Poll.Until(() => { store.ReapExpiredLeases(); return holder.Calls > 0; }, "the holder is told its lease expired");
        store.ReapExpiredLeases();
        Assert.Equal(1, holder.Calls);
        Assert.Equal(1, store.GetStats().ActiveLeases);
        Assert.True(Matches(lease!.Span, Key("k")), "memory was reused before the holder released");

        Assert.True(store.Release(lease), "the holder's release ends a lease the reaper only reported");
        Assert.False(store.Release(lease));
        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.ActiveLeases);
        Assert.Equal(0, stats.AllocatedBytes);
    }

    [Fact]
    public void A_lease_without_holder_is_released_by_the_reaper_when_it_expires()
    {
        using var store = new KvArenaStore(new StoreOptions
        {
            Capacity = Capacity,
            MaxValueBytes = 1 << 20,
            LeaseTimeout = TimeSpan.FromMilliseconds(50),
        });
        Put(store, "k", 10_000);
        store.TryLease(Key("k"), null, out ValueLease? lease);
        store.Remove(Key("k"));

        int reaped = 0;
        Poll.Until(() => (reaped += store.ReapExpiredLeases()) > 0, "the reaper expires the lease");
        Assert.Equal(1, reaped);
        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.ActiveLeases);
        Assert.Equal(0, stats.AllocatedBytes);
        // A late release of a reaped lease is harmless, and says the lease had ended: a reader
        // that copied from it must not trust the copy.
        Assert.False(store.Release(lease!));
        Assert.Equal(0, store.GetStats().ActiveLeases);
    }

    [Fact]
    public void The_background_timer_reaps_expired_leases_without_explicit_calls()
    {
        using var store = new KvArenaStore(new StoreOptions
        {
            Capacity = Capacity,
            MaxValueBytes = 1 << 20,
            LeaseTimeout = TimeSpan.FromMilliseconds(50),
        });
        Put(store, "k", 10);
        var holder = new CountingHolder();
        store.TryLease(Key("k"), null, out _);
        store.TryLease(Key("k"), holder, out _);
        Poll.Until(() => store.GetStats().ActiveLeases == 1 && holder.Calls == 1, "the timer reaps and notifies");
    }

    [Fact]
    public void A_throwing_holder_does_not_stop_others_from_being_notified()
    {
        using var store = new KvArenaStore(new StoreOptions
        {
            Capacity = Capacity,
            MaxValueBytes = 1 << 20,
            LeaseTimeout = TimeSpan.FromMilliseconds(50),
        });
        Put(store, "k", 10);
        var thrower = new CountingHolder { Throw = true };
        var quiet = new CountingHolder();
        store.TryLease(Key("k"), thrower, out _);
        store.TryLease(Key("k"), quiet, out _);
        Poll.Until(
            () =>
            {
                try
                {
                    store.ReapExpiredLeases();
                }
                catch (AggregateException)
                {
                }

                return quiet.Calls == 1;
            },
            "the second holder is notified");
        Assert.Equal(1, thrower.Calls);
    }

    private sealed class CountingHolder : ILeaseHolder
    {
        private int _calls;

        public bool Throw { get; init; }

        public int Calls => Volatile.Read(ref _calls);

        public void OnLeaseExpired()
        {
            Interlocked.Increment(ref _calls);
            if (Throw)
            {
                throw new InvalidOperationException("holder failure");
            }
        }
    }
}
