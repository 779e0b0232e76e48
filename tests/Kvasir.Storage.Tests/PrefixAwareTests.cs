using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

public sealed class PrefixAwareTests
{
    private const long Capacity = 8L << 20;
    private const int ChainLength = 8;

    private static KvArenaStore NewStore() =>
        new(new StoreOptions { Capacity = Capacity, MaxValueBytes = 1 << 20, Eviction = EvictionPolicyKind.PrefixAware });

    private static string Member(int chain, int index) => $"chain-{chain}/block-{index}";

    private static void PutChain(KvArenaStore store, int chain, Random random)
    {
        for (int i = 0; i < ChainLength; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, Member(chain, i), random.Next(16_000, 64_000), i == 0 ? null : Member(chain, i - 1)));
        }
    }

    /// <summary>Fails if some chain has a present member after a missing one.</summary>
    private static void AssertEveryChainIsAPrefix(KvArenaStore store, int chains)
    {
        for (int c = 0; c < chains; c++)
        {
            bool gap = false;
            for (int i = 0; i < ChainLength; i++)
            {
                bool present = store.Exists(Key(Member(c, i)));
                Assert.False(gap && present, $"chain {c} has a hole before block {i}");
                gap |= !present;
            }
        }
    }

    [Fact]
    public void What_survives_of_every_chain_is_a_prefix_after_three_times_capacity()
    {
        using var store = NewStore();
        var random = new Random(5);
        int chains = 0;
        while (store.GetStats().Puts * 40_000L < 3 * Capacity)
        {
            PutChain(store, chains++, random);
            if (chains > 3)
            {
                // Read a random member of an older chain, so recency and chain order disagree.
                int chain = random.Next(chains);
                store.TryLease(Key(Member(chain, random.Next(ChainLength))), null, out ValueLease? lease);
                if (lease is not null)
                {
                    store.Release(lease);
                }
            }

            AssertEveryChainIsAPrefix(store, chains);
        }

        StoreStats stats = store.GetStats();
        Assert.True(stats.Evictions > 0);
        Assert.True(stats.AllocatedBytes <= Capacity * 0.95);
        int partial = Enumerable.Range(0, chains).Count(c => store.Exists(Key(Member(c, 0))) && !store.Exists(Key(Member(c, ChainLength - 1))));
        Assert.True(partial > 0 || stats.Keys % ChainLength == 0, "eviction only ever removed whole chains and left a ragged count");
    }

    [Fact]
    public void A_chain_loses_its_tail_before_its_head()
    {
        using var store = NewStore();
        // Members large enough that one eviction round (down to the low watermark) takes about one of them.
        for (int i = 0; i < ChainLength; i++)
        {
            Put(store, Member(0, i), 500_000, i == 0 ? null : Member(0, i - 1));
        }

        // Bounded: 400 fillers of 100 kB are 5x the 8 MiB arena, so a tail still present after them was never evicted.
        const int maxFillers = 400;
        int fillers = 0;
        while (store.Exists(Key(Member(0, ChainLength - 1))))
        {
            Assert.True(fillers < maxFillers, $"the chain's tail was still present after {maxFillers} fillers of 100 kB through an 8 MiB arena");
            Assert.Equal(WireStatus.Ok, Put(store, $"filler-{fillers++}", 100_000));
        }

        AssertEveryChainIsAPrefix(store, 1);
        Assert.True(store.Exists(Key(Member(0, 0))), "the head went in the same eviction round as the tail");
    }

    [Fact]
    public void A_pinned_middle_member_keeps_itself_and_its_ancestors()
    {
        using var store = NewStore();
        var random = new Random(9);
        const int pinnedChains = 3;
        for (int c = 0; c < pinnedChains; c++)
        {
            PutChain(store, c, random);
            Assert.Equal(WireStatus.Ok, store.Pin(Key(Member(c, 3))));
        }

        int chains = pinnedChains;
        while (store.GetStats().Puts * 40_000L < 3 * Capacity)
        {
            PutChain(store, chains++, random);
            AssertEveryChainIsAPrefix(store, chains);
        }

        for (int c = 0; c < pinnedChains; c++)
        {
            for (int i = 0; i <= 3; i++)
            {
                Assert.True(store.Exists(Key(Member(c, i))), $"chain {c} lost block {i}, at or before its pinned block");
            }

            Assert.False(store.Exists(Key(Member(c, 4))), $"chain {c} kept block 4 past its pinned block");
        }
    }

    [Fact]
    public void Relinking_a_key_under_its_own_descendant_is_refused_and_eviction_still_terminates()
    {
        using var store = NewStore();
        Put(store, "a", 1000);
        Put(store, "b", 1000, parent: "a");
        Put(store, "c", 1000, parent: "b");
        Assert.Equal(WireStatus.Ok, Put(store, "a", 1000, parent: "c")); // would close a -> c -> b -> a
        Assert.Equal(WireStatus.Ok, Put(store, "self", 1000, parent: "self"));

        for (int i = 0; i < 40; i++)
        {
            Assert.Equal(WireStatus.Ok, Put(store, $"filler-{i}", 600_000));
        }

        foreach (string key in new[] { "a", "b", "c", "self" })
        {
            Assert.False(store.Exists(Key(key)), $"{key} was never evicted");
        }
    }

    [Fact]
    public void Removing_a_middle_member_orphans_its_children_and_frees_its_parent_to_be_evicted()
    {
        using var store = NewStore();
        PutChain(store, 0, new Random(3));
        Assert.Equal(WireStatus.Ok, store.Remove(Key(Member(0, 3))));

        for (int i = 0; i < 40; i++)
        {
            Put(store, $"filler-{i}", 600_000);
        }

        for (int i = 0; i < ChainLength; i++)
        {
            Assert.False(store.Exists(Key(Member(0, i))), $"block {i} was never evicted");
        }
    }

    [Fact]
    public void Under_lru_chain_links_do_not_protect_a_head()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 1 << 20, MaxValueBytes = 1 << 20 });
        Put(store, "head", 64 * 1024);
        Put(store, "tail", 64 * 1024, parent: "head");
        for (int i = 0; i < 14; i++)
        {
            Put(store, $"filler-{i}", 64 * 1024);
        }

        Assert.False(store.Exists(Key("head")));
        Assert.True(store.Exists(Key("tail")) || store.GetStats().Evictions >= 2);
    }
}
