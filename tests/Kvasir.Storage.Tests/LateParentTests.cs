using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

/// <summary>
/// PARENT_FOLLOWS: a chain's block stored before its parent (the runs of a chain striped over several connections land
/// in any order) is linked to the parent when the parent is published, so the chain is evicted as one, tail first.
/// </summary>
public sealed class LateParentTests
{
    private const long Capacity = 8L << 20;

    private static KvArenaStore NewStore(TimeSpan? window = null, int maxWaits = ProtocolLimits.MaxLateParentWaits) => new(new StoreOptions
    {
        Capacity = Capacity,
        MaxValueBytes = 1 << 20,
        Eviction = EvictionPolicyKind.PrefixAware,
        LateParentWindow = window ?? ProtocolLimits.LateParentWindow,
        MaxLateParentWaits = maxWaits,
    });

    /// <summary>Reserves, fills and commits <paramref name="key"/> as a block whose parent may come later.</summary>
    private static void PutParentFollows(KvArenaStore store, string key, long length, string parent)
    {
        byte[] keyBytes = Key(key);
        Assert.Equal(WireStatus.Ok, store.TryReserve(keyBytes, length, out Reservation? reservation));
        Fill(reservation!.Span, keyBytes, 0);
        store.CommitParentFollows(reservation, Crc32C.Compute(reservation.Span), Key(parent));
    }

    /// <summary>Blocks 0-1 of a chain, then blocks 2-3 whose run landed first (block 2 continues block 1).</summary>
    private static void PutChainSecondRunFirst(KvArenaStore store, string chain, long length)
    {
        PutParentFollows(store, $"{chain}/2", length, $"{chain}/1");
        Put(store, $"{chain}/3", length, $"{chain}/2");
        Put(store, $"{chain}/0", length);
        Put(store, $"{chain}/1", length, $"{chain}/0");
    }

    [Fact]
    public void A_block_stored_before_its_parent_is_linked_when_the_parent_comes_and_the_chain_loses_its_tail_first()
    {
        using var store = NewStore();
        PutChainSecondRunFirst(store, "c", 500_000);
        StoreStats stats = store.GetStats();
        Assert.Equal(1, stats.LateParentLinks);
        Assert.Equal(0, stats.LateParentWaits);

        // Prefix-aware eviction takes only leaves: linked, the chain's one leaf is block 3, so fillers eat it from its
        // tail and what is left is always a prefix. Unlinked (block 2 a root), block 1 is a leaf too and may go first.
        for (int i = 0; i < 400 && store.Exists(Key("c/0")); i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"filler/{i}", 100_000));
            bool gap = false;
            for (int b = 0; b < 4; b++)
            {
                bool present = store.Exists(Key($"c/{b}"));
                Assert.False(gap && present, $"after {i + 1} fillers block {b} is stored while a block before it is not");
                gap |= !present;
            }
        }

        Assert.False(store.Exists(Key("c/0")), "the fillers never evicted the chain");
    }

    [Fact]
    public void Without_the_flag_a_block_stored_before_its_parent_stays_a_root()
    {
        using var store = NewStore();
        Put(store, "c/2", 1000, "c/1");
        Put(store, "c/1", 1000);
        Assert.Equal(0, store.GetStats().LateParentLinks);
        Assert.Equal(0, store.GetStats().LateParentWaits);
    }

    [Fact]
    public void A_waiting_block_overwritten_or_removed_before_its_parent_comes_is_not_linked()
    {
        using var store = NewStore();
        PutParentFollows(store, "over/2", 1000, "over/1");
        Put(store, "over/2", 1000);   // overwritten as a root: its own link now
        PutParentFollows(store, "gone/2", 1000, "gone/1");
        Assert.Equal(WireStatus.Ok, store.Remove(Key("gone/2")));
        Assert.Equal(2, store.GetStats().LateParentWaits);

        Put(store, "over/1", 1000);
        Put(store, "gone/1", 1000);
        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.LateParentLinks);
        Assert.Equal(0, stats.LateParentWaits);
    }

    [Fact]
    public void A_parent_that_comes_after_the_window_is_not_linked()
    {
        using var store = NewStore(window: TimeSpan.FromMilliseconds(1));
        PutParentFollows(store, "late/2", 1000, "late/1");
        Thread.Sleep(20);
        Put(store, "late/1", 1000);
        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.LateParentLinks);
        Assert.Equal(0, stats.LateParentWaits);
    }

    [Fact]
    public void Past_the_most_waits_the_oldest_is_dropped_and_the_newer_ones_still_link()
    {
        using var store = NewStore(maxWaits: 2);
        for (int i = 0; i < 3; i++) PutParentFollows(store, $"w{i}/2", 1000, $"w{i}/1");
        Assert.Equal(2, store.GetStats().LateParentWaits);
        for (int i = 0; i < 3; i++) Put(store, $"w{i}/1", 1000);
        StoreStats stats = store.GetStats();
        Assert.Equal(2, stats.LateParentLinks);   // w1 and w2; w0's wait was dropped
        Assert.Equal(0, stats.LateParentWaits);
    }

    [Fact]
    public void Several_blocks_waiting_for_one_parent_are_all_linked_and_a_parent_present_at_once_links_directly()
    {
        using var store = NewStore();
        PutParentFollows(store, "a/2", 1000, "p");
        PutParentFollows(store, "b/2", 1000, "p");
        Put(store, "p", 1000);
        Assert.Equal(2, store.GetStats().LateParentLinks);
        PutParentFollows(store, "c/2", 1000, "p");   // present: linked at once, not a late link
        StoreStats stats = store.GetStats();
        Assert.Equal(2, stats.LateParentLinks);
        Assert.Equal(0, stats.LateParentWaits);
    }
}

/// <summary>The wait list itself: what it holds while one wait's parent never comes and a stream of others is linked.</summary>
public sealed class LateParentQueueTests
{
    [Fact]
    public void A_wait_whose_parent_never_comes_does_not_keep_the_linked_ones_queued_behind_it()
    {
        var policy = new Internal.ChainLfuPolicy(remember: false);
        var waits = new Internal.LateParents(TimeSpan.FromMinutes(10), 65_536);
        static Internal.HeapSlot Slot(string key) => Internal.SlotKeys.NewHeapSlot(Key(key), new Internal.ValueVersion(0, 0));

        var stuck = Slot("stuck/child");
        waits.Add(Key("never"), stuck, stuck.Current, now: 0);
        for (int i = 0; i < 10_000; i++)
        {
            var child = Slot($"c/{i}");
            waits.Add(Key($"p/{i}"), child, child.Current, now: i);
            var parent = Slot($"p/{i}");
            Assert.Equal(1, waits.LinkWaiting(Key($"p/{i}"), parent, policy, now: i));
            Assert.Same(parent, child.Parent);
            Assert.InRange(waits.Queued, 1, 2 * 1024 + 1);
        }

        Assert.Equal(1, waits.Count);
    }
}
