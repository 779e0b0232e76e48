using Kvasir.Prefix.Internal;

namespace Kvasir.Prefix.Tests;

/// <summary>
/// The slot array behind PrefixCache and EvictionManager: what an open-addressed table with intrusive links can get
/// wrong (a reused slot, two hashes with the same first eight bytes, growth, the order across growth, the budget),
/// checked through the public calls and, where the structure itself is the subject, on the table directly.
/// </summary>
public sealed class BlockTableTests
{
    private static BlockHash[] Ids(int n, int start = 0) =>
        Enumerable.Range(start, n).Select(i => BlockHash.FromBytes(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)))).ToArray();

    /// <summary>Hashes whose first eight bytes are all <paramref name="prefix"/> and whose other 24 differ.</summary>
    private static BlockHash[] SamePrefix(int n, ulong prefix = 0x0123456789abcdef)
    {
        return Enumerable.Range(0, n).Select(i =>
        {
            var bytes = new byte[BlockHash.Size];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes, prefix);
            bytes[31] = (byte)(i + 1);
            bytes[20] = (byte)(i * 7);
            return BlockHash.FromBytes(bytes);
        }).ToArray();
    }

    [Fact]
    public void A_slot_freed_by_eviction_serves_the_next_block_and_never_its_old_value()
    {
        var cache = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 4 });
        var ids = Ids(8);
        cache.Insert(ids[..4], ["a0", "a1", "a2", "a3"]);
        var result = cache.Insert(ids[4..6], ["b4", "b5"]);   // evicts a0 and a1, their slots are reused
        Assert.Equal([ids[0], ids[1]], result.Evicted.Select(e => e.Key));
        Assert.Equal(["a0", "a1"], result.Evicted.Select(e => e.Value));
        Assert.False(cache.Contains(ids[0]) || cache.Contains(ids[1]));
        Assert.Equal(["a2", "a3", "b4", "b5"], cache.Lookup(ids[2..6]).Blocks);
        Assert.Equal(0, cache.Lookup(ids[..2]).NumBlocks);
        cache.Invalidate([ids[3]]);
        cache.Insert([ids[0]], ["c0"]);                         // back in a reused slot with its new value
        Assert.Equal("c0", cache.Get(ids[0]));
        Assert.False(cache.TryGet(ids[3], out _));
        Assert.Equal(4, cache.Count);
        Assert.Equal(1.0 / 7, cache.GetStats().RePrefillRate, 9);   // 7 inserts, one of an evicted block
    }

    [Fact]
    public void Hashes_sharing_their_first_eight_bytes_are_distinct_blocks()
    {
        var same = SamePrefix(6);
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 8 });
        cache.Insert(same[..4], [0, 1, 2, 3]);
        for (int i = 0; i < 4; i++) Assert.Equal(i, cache.Get(same[i]));
        Assert.False(cache.Contains(same[4]));                  // same eight bytes as four cached ones, not cached itself
        Assert.Equal([0, 1, 2, 3], cache.Lookup(same[..4]).Blocks);
        Assert.Equal([2, 3], cache.Lookup(same[2..4]).Blocks);  // the batched probe finds the first colliding bucket first
        Assert.Equal(1, cache.Lookup([same[3], same[4]]).NumBlocks);
        cache.Invalidate([same[1]]);                            // a hole in the middle of the probe run
        Assert.Equal([3, 2, 0], cache.Lookup([same[3], same[2], same[0]]).Blocks);
        Assert.Equal(0, cache.Lookup([same[1]]).NumBlocks);
        cache.Insert([same[5], same[1]], [5, 10]);
        Assert.Equal([10, 5], cache.Lookup([same[1], same[5]]).Blocks);
        Assert.Equal(5, cache.Count);
    }

    [Fact]
    public void Hashes_sharing_their_home_bytes_are_found_through_removals_in_any_order_and_growth()
    {
        // First four bytes equal (one home bucket and one index tag, so one long probe run whose entries must be
        // compared), bytes 4-7 differ only in their low bits, the other bytes differ: removals in any order shift the
        // run back, growth rebuilds it.
        var ids = Enumerable.Range(0, 300).Select(i =>
        {
            var bytes = new byte[BlockHash.Size];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, 0xfeedf00d);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)(i % 3));
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(28), i);
            return BlockHash.FromBytes(bytes);
        }).ToArray();
        var table = new BlockTable<int>(new LruPolicy(), evictedMemory: 0, maxSlots: int.MaxValue);
        foreach (int i in Enumerable.Range(0, ids.Length)) Assert.True(table.Track(ids[i], i, out _));   // grows 64 -> 512 slots
        var rng = new Random(7);
        var removed = new HashSet<int>();
        foreach (int i in Enumerable.Range(0, ids.Length).OrderBy(_ => rng.Next()).Take(200))
        {
            table.Remove(table.Find(ids[i]));
            removed.Add(i);
            if (removed.Count % 25 == 0)
                Assert.All(Enumerable.Range(0, ids.Length), j => Assert.Equal(removed.Contains(j) ? -1 : j, table.Find(ids[j]) is int s and >= 0 ? table.ValueAt(s) : -1));
        }
        foreach (int i in removed) Assert.True(table.Track(ids[i], 1000 + i, out _));
        Assert.All(Enumerable.Range(0, ids.Length), j => Assert.Equal(removed.Contains(j) ? 1000 + j : j, table.ValueAt(table.Find(ids[j]))));
        Assert.Equal(ids.Length, table.Count);
    }

    [Fact]
    public void Pins_leave_with_their_block_so_a_reused_slot_starts_unpinned()
    {
        var table = new BlockTable<int>(new LruPolicy(), evictedMemory: 0, maxSlots: 4);
        var ids = Ids(5);
        var slots = ids[..4].Select((id, i) => table.Track(id, i, out int slot) ? slot : -1).ToArray();
        table.Pin(slots[0]);
        table.Pin(slots[0]);
        table.Pin(slots[1]);
        Assert.Equal((2, 1, 2), (table.PinsAt(slots[0]), table.PinsAt(slots[1]), table.PinnedCount));
        Assert.Equal([slots[2], slots[3]], table.SelectVictims(2));   // pinned blocks are skipped
        table.Unpin(slots[0]);
        Assert.Equal((1, 2), (table.PinsAt(slots[0]), table.PinnedCount));
        table.Remove(slots[0]);                                        // invalidated while pinned: its pins go with it
        Assert.Equal(1, table.PinnedCount);
        Assert.True(table.Track(ids[4], 4, out int reused));
        Assert.Equal(slots[0], reused);
        Assert.Equal(0, table.PinsAt(reused));
        Assert.Equal([slots[2], slots[3], reused], table.SelectVictims(3));
        table.Unpin(slots[1]);
        Assert.Equal(0, table.PinnedCount);
        Assert.Equal([slots[1], slots[2], slots[3]], table.SelectVictims(3));
    }

    [Fact]
    public void A_successor_hint_to_a_freed_or_reused_slot_never_makes_a_false_hit()
    {
        var cache = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 3 });
        var a = Ids(3);
        var b = Ids(2, 100);
        cache.Insert(a, ["a0", "a1", "a2"]);                    // a0's hint: a1's slot; a1's: a2's
        cache.Invalidate([a[1]]);                               // a1's slot is free, its entry zeroed
        Assert.Equal(["a0"], cache.Lookup([a[0], BlockHash.Zero]).Blocks);   // the freed entry's hash is all zeros
        Assert.Equal(["a0"], cache.Lookup(a).Blocks);
        cache.Insert([b[0]], ["b0"]);                           // b0 takes a1's old slot: a0's hint now points at b0
        Assert.Equal(["a0"], cache.Lookup(a).Blocks);
        Assert.Equal(["a0", "b0"], cache.Lookup([a[0], b[0]]).Blocks);      // a chain is just hashes: b0 follows a0 here
        cache.Insert([a[1]], ["a1 again"]);                     // evicts the least recent (a2); a1 in a new slot
        Assert.Equal(["a0", "a1 again"], cache.Lookup(a).Blocks);
        Assert.Equal(2, cache.Lookup(a).NumBlocks);
    }

    [Fact]
    public void A_chain_walk_next_to_another_chain_over_a_freed_slot_or_in_descending_slots_never_makes_a_false_hit()
    {
        // The walk reads each next slot from a hint: it can name another chain's block, a freed slot (its hash
        // zeroed), or a chain laid out backwards; each must be checked against the hash, never trusted.
        var cache = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 8 });
        var a = Ids(4);
        var b = Ids(4, 100);
        cache.Insert(a, ["a0", "a1", "a2", "a3"]);              // slots 0..3, stride +1
        cache.Insert(b, ["b0", "b1", "b2", "b3"]);              // slots 4..7
        Assert.Equal(["a0", "a1", "a2", "a3"], cache.Lookup(a).Blocks);
        Assert.Equal(["a0", "a1", "a2", "a3", "b0"], cache.Lookup([.. a, b[0]]).Blocks);   // the next slot holds b0: a real hit
        Assert.Equal(["a0", "a1", "a2", "b2"], cache.Lookup([a[0], a[1], a[2], b[2]]).Blocks);   // the hint (a3) is wrong, found by probing
        Assert.Equal(["a0", "a1", "a2"], cache.Lookup([a[0], a[1], a[2], Ids(1, 500)[0]]).Blocks);
        cache.Invalidate([a[2]]);                               // slot 2 free, its hash all zeros
        Assert.Equal(["a0", "a1"], cache.Lookup([a[0], a[1], BlockHash.Zero]).Blocks);
        Assert.Equal(["a0", "a1"], cache.Lookup(a).Blocks);

        // Slots freed by evicting a chain are reused last freed first, so the next chain sits in descending slots.
        var small = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 4 });
        small.Insert(a, ["a0", "a1", "a2", "a3"]);              // slots 0..3
        var c = Ids(4, 200);
        Assert.Equal(a, small.Insert(c, ["c0", "c1", "c2", "c3"]).Evicted.Select(e => e.Key));   // c0..c3 in slots 3..0
        Assert.Equal(["c0", "c1", "c2", "c3"], small.Lookup(c).Blocks);
        Assert.Equal(["c0", "c1", "c2", "c3", "c0"], small.Lookup([.. c, c[0]]).Blocks);       // a repeated block is no run
        Assert.Equal(["c0", "c1", "c2"], small.Lookup([c[0], c[1], c[2], a[3]]).Blocks);      // a3 was evicted
    }

    [Fact]
    public void A_chain_walk_guessing_slots_a_step_apart_stops_at_the_last_slot_in_use_and_at_both_ends_of_the_array()
    {
        // A lookup guesses the chain's slots a fixed step apart (the step from the first block's slot to the second's).
        // Past the last slot in use lie zeroed entries that never held a block; past either end of the array, nothing.
        var roomy = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 100 });   // 64 slots at first
        var a = Ids(4);
        roomy.Insert(a[..2], ["a0", "a1"]);                     // slots 0, 1 of 64
        Assert.Equal(["a0", "a1"], roomy.Lookup([a[0], a[1], BlockHash.Zero, BlockHash.Zero]).Blocks);

        var full = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 4 });     // 4 slots
        full.Insert(a, ["a0", "a1", "a2", "a3"]);               // slots 0..3, step +1: the last guess is slot 4
        Assert.Equal(["a0", "a1", "a2", "a3"], full.Lookup([.. a, BlockHash.Zero]).Blocks);
        var c = Ids(4, 200);
        full.Insert(c, ["c0", "c1", "c2", "c3"]);               // slots 3..0, step -1: the last guess is slot -1
        Assert.Equal(["c0", "c1", "c2", "c3"], full.Lookup([.. c, BlockHash.Zero]).Blocks);
        Assert.Equal(["c0", "c1", "c2", "c3", "c0"], full.Lookup([.. c, c[0]]).Blocks);
    }

    [Fact]
    public void The_first_blocks_bucket_marks_its_chains_step_up_or_down_survives_growth_and_a_stale_mark_never_changes_a_match()
    {
        // A chain's first bucket says whether its successor sat in the next or the previous slot, so a lookup need not
        // read the second block's bucket. The mark is a hint: a successor gone, or back in another slot, must be found
        // (or not) exactly as without it.
        var table = new BlockTable<int>(new LruPolicy(), evictedMemory: 0, maxSlots: int.MaxValue);
        var a = Ids(4);
        var c = Ids(4, 200);
        var y = Ids(1, 300)[0];
        int[] Insert(BlockHash[] chain)
        {
            var at = new int[chain.Length];
            for (int i = 0; i < chain.Length; i++)
            {
                table.Track(chain[i], i, out at[i]);
                if (i > 0) table.Follow(at[i - 1], at[i]);
            }
            return at;
        }
        int[] Match(params BlockHash[] chain)   // the matched blocks' slots
        {
            var slots = new int[chain.Length];
            return slots[..table.MatchPrefix(chain, slots)];
        }

        Assert.Equal([0, 1, 2, 3], Insert(a));
        Assert.Equal([1, 1, 1, 0], a.Select(h => table.MarkedStep(h)));       // the last has no successor
        Assert.Equal([0, 1, 2, 3], Match(a));
        foreach (int slot in new[] { 0, 1, 2, 3 }) table.Remove(slot);         // freed last first: 3 on top
        Assert.Equal([3, 2, 1, 0], Insert(c));                                  // so the next chain runs down
        Assert.Equal([-1, -1, -1, 0], c.Select(h => table.MarkedStep(h)));     // c3 in slot 0 with no successor: no mark
        Assert.Equal([3, 2, 1, 0], Match(c));
        Assert.Equal([3, 2, 1, 0], Match([.. c, BlockHash.Zero]));         // the guess past slot 0 names no slot

        table.Remove(2);                                                        // c1 gone; c0 still marked down
        table.Track(y, 9, out int ySlot);
        Assert.Equal(2, ySlot);                                                 // y in c1's old slot, where c0's mark points
        Assert.Equal([3, 2], Match(c[0], y));                              // a real hit: y is held
        Assert.Equal([3], Match(c));
        table.Track(c[1], 1, out int back);
        Assert.Equal(4, back);                                                  // c1 back, in a fresh slot
        Assert.Equal([3, 4, 1, 0], Match(c));                              // the mark (and the hint) wrong: found by probing
        Assert.Equal(1, table.MarkedStep(c[0]));                                // and the mark follows: c1 is now one slot up
        Assert.Equal([3, 4, 1, 0], Match(c));

        for (int i = 0; i < 100; i++) table.Track(Ids(1, 1000 + i)[0], i, out _);   // 64 slots to 128: a new index
        Assert.Equal(128, table.SlotCapacity);
        Assert.Equal([1, 0, -1, 0], c.Select(h => table.MarkedStep(h)));       // marks rebuilt from the hints (c1 -> c2 is no neighbour)
        Assert.Equal([3, 4, 1, 0], Match(c));
        Assert.Equal([3, 2], Match(c[0], y));

        // The early reads of a batch follow the same marks, up or down and off either end of the array.
        PrefixCache<string> Cache() => new(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 4 }) { StagedReadsThreshold = 0 };
        var ups = Cache();
        ups.Insert(a, ["a0", "a1", "a2", "a3"]);                               // slots 0..3, marked up
        Assert.Equal([4, 1, 2], ups.LookupMany([[.. a, BlockHash.Zero], a[..1], [a[3], a[0]]]).Select(m => m.NumBlocks));
        var downs = Cache();
        downs.Insert(a, ["a0", "a1", "a2", "a3"]);
        downs.Insert(c, ["c0", "c1", "c2", "c3"]);                             // evicts a0..a3: c in slots 3..0, marked down
        Assert.Equal([4, 2, 5, 0], downs.LookupMany([[.. c, BlockHash.Zero], [c[3], c[0]], [.. c, c[0]], a]).Select(m => m.NumBlocks));
    }

    [Fact]
    public void Lookups_of_prompts_sharing_prefixes_match_a_model_of_values_and_lru_order_through_eviction_and_invalidation()
    {
        // Long chains that are inserted, cut, joined and partly evicted, so that hints are right, wrong and stale in
        // every mix, and a looked-up chain is sometimes one run in the LRU order (moved as one piece) and sometimes not.
        const int capacity = 120;
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = capacity });
        var prompts = Enumerable.Range(0, 24).Select(p => Ids(16, 1000 * (p + 1))).ToArray();
        var values = new Dictionary<BlockHash, int>();
        var order = new List<BlockHash>();   // least recent first
        var random = new Random(5);
        int hits = 0;
        for (int step = 0; step < 3000; step++)
        {
            var chain = prompts[random.Next(prompts.Length)][..random.Next(1, 17)];
            if (random.Next(4) == 0) chain = [.. chain, .. prompts[random.Next(prompts.Length)][..random.Next(1, 6)]];
            if (random.Next(8) == 0) chain = [.. chain, chain[0]];   // a repeated block
            switch (random.Next(6))
            {
                case 0:
                case 1:
                    chain = chain.Distinct().ToArray();
                    int need = values.Count + chain.Count(h => !values.ContainsKey(h)) - capacity;
                    var victims = order.Where(h => !chain.Contains(h)).Take(Math.Max(0, need)).ToList();
                    var result = cache.Insert(chain, chain.Select(_ => step).ToArray());
                    Assert.Equal(victims, result.Evicted.Select(e => e.Key));
                    foreach (var v in victims)
                    {
                        values.Remove(v);
                        order.Remove(v);
                    }
                    foreach (var h in chain)
                    {
                        if (values.TryAdd(h, step)) order.Add(h);
                        else Touch(h);
                    }
                    break;
                case 2:
                    foreach (var e in cache.Invalidate([chain[random.Next(chain.Length)]]))
                    {
                        values.Remove(e.Key);
                        order.Remove(e.Key);
                    }
                    break;
                default:
                    var matched = chain.TakeWhile(values.ContainsKey).ToArray();
                    Assert.Equal(matched.Select(h => values[h]), cache.Lookup(chain).Blocks);
                    foreach (var h in matched) Touch(h);
                    hits += matched.Length;
                    break;
            }
            Assert.Equal(values.Count, cache.Count);
        }
        Assert.True(cache.GetStats().Evictions > 1000 && hits > 3000, $"the run should evict and hit often ({cache.GetStats().Evictions} evictions, {hits} hits)");

        void Touch(BlockHash h)
        {
            order.Remove(h);
            order.Add(h);
        }
    }

    [Fact]
    public void The_table_grows_from_64_slots_keeping_every_block_and_its_value()
    {
        var table = new BlockTable<int>(new LruPolicy(), evictedMemory: 0, maxSlots: int.MaxValue);
        var ids = Ids(5000);
        Assert.Equal(64, table.SlotCapacity);
        for (int i = 0; i < ids.Length; i++)
        {
            Assert.True(table.Track(ids[i], i, out int slot));
            Assert.Equal(i, table.ValueAt(slot));
            if (i % 97 == 0)   // every block so far still found, across each doubling
                Assert.All(Enumerable.Range(0, i + 1), j => Assert.Equal(j, table.ValueAt(table.Find(ids[j]))));
        }
        Assert.Equal(8192, table.SlotCapacity);
        Assert.Equal(5000, table.Count);
        var slots = new int[ids.Length];
        Assert.Equal(ids.Length, table.MatchPrefix(ids, slots));
        Assert.Equal(ids.Length, slots.Distinct().Count());
        Assert.Equal(-1, table.Find(Ids(1, 10_000)[0]));
    }

    [Fact]
    public void A_capped_table_grows_to_its_cap_and_no_further()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 100 });
        var ids = Ids(300);
        for (int i = 0; i < 300; i += 10) cache.Insert(ids[i..(i + 10)], Enumerable.Range(i, 10).ToArray());
        Assert.Equal(100, cache.Count);
        Assert.Equal(Enumerable.Range(200, 100), cache.Lookup(ids[200..]).Blocks);
        Assert.Equal(200, cache.GetStats().Evictions);
        var error = Assert.Throws<ConfigInvalidException>(() => new PrefixCache<int>(new PrefixCacheOptions { MaxCachedBlocks = BlockTable<int>.MaxSlots + 1 }));
        Assert.Contains("MaxCachedBlocks must be 1 to 536,870,912", error.Message);
    }

    [Fact]
    public void Lru_order_survives_growth_and_slot_reuse()
    {
        var m = new EvictionManager(evictedMemory: 0);
        var ids = Ids(1600);
        var random = new Random(7);
        var expected = new List<BlockHash>();   // the order a plain list keeps: least recent first
        foreach (var id in ids[..1000])
        {
            m.Track(id);
            expected.Add(id);
        }
        Assert.Equal(expected.Take(100), m.Evict(100));   // frees 100 slots, reused below before the next growth
        expected.RemoveRange(0, 100);
        for (int i = 0; i < 3000; i++)
        {
            var id = expected[random.Next(expected.Count)];
            m.RecordAccess(id);
            expected.Remove(id);
            expected.Add(id);
            if (i % 5 == 0)
            {
                var fresh = ids[1000 + (i / 5)];
                m.Track(fresh);
                expected.Add(fresh);
            }
        }
        Assert.Equal(expected.Count, m.Count);
        Assert.Equal(expected, m.SelectVictims(expected.Count));
    }

    [Fact]
    public void Random_operations_match_a_reference_model_and_never_exceed_the_budget()
    {
        const int capacity = 50;
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = capacity });
        var ids = Ids(200).Concat(SamePrefix(40)).ToArray();   // some share their first eight bytes
        var order = new List<BlockHash>();                     // the model: LRU order, least recent first
        var values = new Dictionary<BlockHash, int>();
        var pins = new Dictionary<BlockHash, int>();
        var random = new Random(11);
        for (int step = 0; step < 4000; step++)
        {
            var chain = Enumerable.Range(0, random.Next(1, 9)).Select(_ => ids[random.Next(ids.Length)]).Distinct().ToArray();
            switch (random.Next(5))
            {
                case 0:
                case 1:
                    int expectMatched = chain.TakeWhile(values.ContainsKey).Count();
                    var match = cache.Lookup(chain);
                    Assert.Equal(chain.Take(expectMatched).Select(h => values[h]), match.Blocks);
                    foreach (var h in chain.Take(expectMatched)) Touch(h);
                    break;
                case 2:
                    int fresh = chain.Count(h => !values.ContainsKey(h));
                    int need = values.Count + fresh - capacity;
                    var victims = order.Where(h => !pins.ContainsKey(h) && !chain.Contains(h)).Take(Math.Max(0, need)).ToList();
                    if (need > 0 && victims.Count < need)
                    {
                        Assert.Throws<AllPinnedException>(() => cache.Insert(chain, chain.Select(_ => step).ToArray()));
                        break;
                    }
                    var result = cache.Insert(chain, chain.Select(_ => step).ToArray());
                    Assert.Equal(victims, result.Evicted.Select(e => e.Key));
                    foreach (var v in victims)
                    {
                        order.Remove(v);
                        values.Remove(v);
                    }
                    foreach (var h in chain)
                    {
                        if (values.TryAdd(h, step)) order.Add(h);
                        else Touch(h);
                    }
                    break;
                case 3:
                    var target = chain[0];
                    if (values.ContainsKey(target) && !pins.ContainsKey(target) && random.Next(2) == 0)
                    {
                        cache.Pin([target]);
                        pins[target] = 1;
                    }
                    else if (pins.Remove(target))
                    {
                        cache.Unpin([target]);
                    }
                    break;
                default:
                    var unpinned = chain.Where(h => !pins.ContainsKey(h)).ToArray();
                    Assert.Equal(unpinned.Count(values.ContainsKey), cache.Invalidate(unpinned).Count);
                    foreach (var h in unpinned)
                    {
                        order.Remove(h);
                        values.Remove(h);
                    }
                    break;
            }
            Assert.True(cache.Count <= capacity, $"step {step}: {cache.Count} blocks cached, budget {capacity}");
            Assert.Equal(values.Count, cache.Count);
            Assert.Equal(pins.Count, cache.GetStats().PinnedBlocks);
        }
        Assert.True(cache.GetStats().Evictions > 100, "the run should have evicted often");

        void Touch(BlockHash h)
        {
            order.Remove(h);
            order.Add(h);
        }
    }

    [Fact]
    public void A_policy_of_its_own_is_called_by_hash_and_decides_the_victims()
    {
        var policy = new NewestFirst();
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 3, Policy = policy });
        var ids = Ids(4);
        cache.Insert(ids[..3], [0, 1, 2]);
        cache.Lookup([ids[0]]);
        Assert.Equal(ids[2], Assert.Single(cache.Insert([ids[3]], [3]).Evicted).Key);
        Assert.Equal([ids[0], ids[1], ids[3]], policy.Held);
        Assert.Equal(1, policy.Accesses);
        Assert.Equal("newest-first", cache.PolicyName);
    }

    private sealed class NewestFirst : IEvictionPolicy
    {
        public List<BlockHash> Held { get; } = [];
        public int Accesses { get; private set; }
        public string Name => "newest-first";
        public void OnInsert(BlockHash block) => Held.Add(block);
        public void OnAccess(BlockHash block) => Accesses++;
        public void OnRemove(BlockHash block) => Held.Remove(block);
        public IEnumerable<BlockHash> Candidates() => Enumerable.Reverse(Held).ToList();
    }
}
