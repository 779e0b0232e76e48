namespace Kvasir.Prefix.Tests;

/// <summary>
/// <see cref="PrefixCache{TBlock}.LookupMany"/> (the lookups of many chains in one call, their first reads issued
/// together) and the chain walk's step taken from the second block's index bucket: both must give exactly what one
/// <see cref="PrefixCache{TBlock}.Lookup"/> per chain gave, whatever the index and the hints hold.
/// </summary>
public sealed class LookupManyTests
{
    private static BlockHash[] Ids(int n, int start = 0) =>
        Enumerable.Range(start, n).Select(i => BlockHash.FromBytes(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)))).ToArray();

    /// <summary>Hashes whose first eight bytes (so their index tag and home bucket) are equal and whose other 24 differ.</summary>
    private static BlockHash[] SameTag(int n, int start = 0) => Enumerable.Range(start, n).Select(i =>
    {
        var bytes = new byte[BlockHash.Size];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes, 0x0badcafe12345678);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(28), i + 1);
        return BlockHash.FromBytes(bytes);
    }).ToArray();

    [Theory]
    [InlineData("lru", false, true, true)]
    [InlineData("fifo", false, true, true)]
    [InlineData("lru", true, true, true)]
    [InlineData("lru", false, true, false)]
    [InlineData("fifo", true, true, false)]
    [InlineData("lru", true, true, false)]
    [InlineData("lru", false, false, true)]
    [InlineData("fifo", true, false, true)]
    public void LookupMany_gives_what_one_lookup_per_chain_gives_in_matches_counters_and_eviction_order(string policy, bool sharedTags, bool stagedReads, bool hints)
    {
        // stagedReads: the early reads of a table beyond the CPU's caches, forced on this small one; else none (its size).
        // hints: the early reads as prefetch instructions a few chains ahead (x86), else as plain loads per group of chains.
        var batched = new PrefixCache<int>(Options(policy)) { StagedReadsThreshold = stagedReads ? 0 : PrefixCache<int>.StagedReadsAbove, PrefetchHints = hints && Kvasir.Net.CacheHints.IsSupported };
        AgreeWithOneLookupPerChain(policy, sharedTags, policy.Length * 8 + (sharedTags ? 1 : 0) + (stagedReads ? 2 : 0) + (hints ? 4 : 0), batched, batched.LookupMany);
    }

    [Theory]
    [InlineData("lru", false)]
    [InlineData("lru", true)]
    [InlineData("fifo", false)]
    [InlineData("fifo", true)]
    [InlineData("s3fifo", true)]
    public void Lookup_of_a_far_table_with_its_reads_ahead_and_deferred_order_move_gives_what_a_plain_lookup_gives(string policy, bool sharedTags)
    {
        // The far-table path of one Lookup (forced on this small table): the chain's entries asked for as soon as its first
        // bucket is read, and under LRU the chain's move to the back of the order left for the next call into the table,
        // its neighbours asked for meanwhile. Against the plain path in the same random run, down to the eviction order.
        var far = new PrefixCache<int>(Options(policy)) { StagedReadsThreshold = 0, PrefetchHints = Kvasir.Net.CacheHints.IsSupported };
        AgreeWithOneLookupPerChain(policy, sharedTags, 100 + policy.Length * 2 + (sharedTags ? 1 : 0), far, chains => chains.Select(far.Lookup).ToArray());
    }

    [Theory]
    [InlineData("evict")]
    [InlineData("insert")]
    [InlineData("invalidate")]
    [InlineData("lookup")]
    [InlineData("lookup many")]
    public void A_single_lookups_lru_move_left_for_the_next_call_is_made_before_that_call_reads_or_changes_the_order(string next)
    {
        // On a far table (forced here) a single Lookup leaves its chain's move to the back of the LRU order pending. Each
        // kind of next call must see the chain as most recent, as a plain cache does: otherwise the next eviction takes
        // the chain just looked up, a removal unlinks from a stale order, or a second move starts from a stale tail.
        var ids = Ids(12);
        var plain = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 12 });
        var far = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 12 }) { StagedReadsThreshold = 0, PrefetchHints = Kvasir.Net.CacheHints.IsSupported };
        foreach (var cache in new[] { plain, far })
        {
            cache.Insert(ids[..4], [0, 1, 2, 3]);
            cache.Insert(ids[4..8], [4, 5, 6, 7]);
            cache.Insert(ids[8..], [8, 9, 10, 11]);
            Assert.Equal(4, cache.Lookup(ids[..4]).NumBlocks);   // the least recent chain becomes the most recent
            switch (next)
            {
                case "evict":
                    break;
                case "insert":
                    cache.Insert(Ids(2, 100), [100, 101]);   // evicts the two least recent blocks, then links the new ones
                    break;
                case "invalidate":
                    cache.Invalidate([ids[1], ids[5]]);       // one block of the moved chain, one of the next
                    break;
                case "lookup":
                    Assert.Equal(2, cache.Lookup(ids[6..8]).NumBlocks);   // another run moves behind it
                    Assert.Equal(1, cache.Lookup(ids[3..4]).NumBlocks);   // and the moved chain's last block behind that
                    break;
                case "lookup many":
                    Assert.Equal([2, 1], cache.LookupMany([ids[4..6], ids[9..10]]).Select(m => m.NumBlocks));
                    break;
            }
        }
        var order = plain.Evict(plain.Count).Select(e => e.Key).ToArray();
        Assert.Equal(order, far.Evict(far.Count).Select(e => e.Key));
        Assert.NotEqual(ids[0], order[0]);   // the looked-up chain is not the first victim in any case
    }

    private const int Capacity = 200;

    private static PrefixCacheOptions Options(string policy) => new() { BlockSize = 2, MaxCachedBlocks = Capacity, Policy = EvictionManager.CreatePolicy(policy) };

    /// <summary>
    /// Feeds <paramref name="tested"/> and a plain cache the same random inserts, invalidations and lookups; the plain one
    /// looks chains up one <see cref="PrefixCache{TBlock}.Lookup"/> each on a table too small for early reads, the tested
    /// one through <paramref name="lookUp"/>, in batches of 0 to 40 chains (so across the 16-chain groups), including
    /// empty, one-block, repeated-block and 300-block chains (beyond the stack's slots). With sharedTags a third of the
    /// blocks share one index tag, so the second block's bucket often names another block. Matches, counters, evictions
    /// and, at the end, the eviction order must agree.
    /// </summary>
    private static void AgreeWithOneLookupPerChain(string policy, bool sharedTags, int seed, PrefixCache<int> tested, Func<BlockHash[][], IReadOnlyList<PrefixMatch<int>>> lookUp)
    {
        var single = new PrefixCache<int>(Options(policy));
        var tagged = SameTag(200);
        var prompts = Enumerable.Range(0, 60).Select(p =>
        {
            var ids = Ids(24, 1000 * (p + 1));
            if (sharedTags)
                for (int i = 0; i < ids.Length; i += 3) ids[i] = tagged[(p * 24 + i) % tagged.Length];
            return ids;
        }).ToArray();
        var random = new Random(seed);
        int hits = 0;
        for (int step = 0; step < 600; step++)
        {
            switch (random.Next(5))
            {
                case 0:
                    var inserted = Chain().Distinct().ToArray();
                    if (inserted.Length == 0) break;
                    var values = inserted.Select(_ => step).ToArray();
                    Assert.Equal(single.Insert(inserted, values).Evicted, tested.Insert(inserted, values).Evicted);
                    break;
                case 1:
                    BlockHash[] gone = [Chain().DefaultIfEmpty(tagged[0]).First()];
                    Assert.Equal(single.Invalidate(gone), tested.Invalidate(gone));
                    break;
                default:
                    var chains = Enumerable.Range(0, random.Next(41)).Select(_ => Chain()).ToArray();
                    var many = lookUp(chains);
                    Assert.Equal(chains.Length, many.Count);
                    for (int c = 0; c < chains.Length; c++)
                    {
                        var one = single.Lookup(chains[c]);
                        Assert.Equal(one.Blocks, many[c].Blocks);
                        Assert.Equal(one.Hashes, many[c].Hashes);
                        Assert.Equal(one.NumTokens, many[c].NumTokens);
                        hits += one.NumBlocks;
                    }
                    break;
            }
            Assert.Equal(single.GetStats(), tested.GetStats());
        }
        Assert.True(single.GetStats().Evictions > 500 && hits > 5000, $"the run should evict and hit often ({single.GetStats().Evictions} evictions, {hits} hits)");
        // The eviction order is the same: evicting everything gives the same victims in the same order.
        var flush = Ids(Capacity, 900_000);
        Assert.Equal(single.Insert(flush, new int[Capacity]).Evicted, tested.Insert(flush, new int[Capacity]).Evicted);

        BlockHash[] Chain()
        {
            var prompt = prompts[random.Next(prompts.Length)];
            BlockHash[] chain = random.Next(10) switch
            {
                0 => [],
                1 => [prompt[random.Next(prompt.Length)]],
                2 => [.. Enumerable.Range(0, 300).Select(i => prompt[i % prompt.Length])],   // repeats: no run in the order
                _ => prompt[..random.Next(1, prompt.Length + 1)],
            };
            if (random.Next(5) == 0) chain = [.. chain, .. prompts[random.Next(prompts.Length)][..random.Next(1, 6)]];
            if (random.Next(8) == 0 && chain.Length > 0) chain = [.. chain, chain[0]];
            return chain;
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task LookupMany_or_Lookup_beside_concurrent_inserts_invalidations_and_growth_finds_each_block_under_its_own_hash_only(bool batched)
    {
        // The cache is thread-safe: two threads look up batches, or the same chains one Lookup each (early reads forced
        // on, as prefetch hints where the CPU has them; a single Lookup's LRU move left for the next call) while two
        // insert prompts, invalidate blocks and grow the table from 64 slots. Every block's value names its hash, so a
        // match can be checked without a model: a prefix of the chain, each block its own value.
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 600 }) { StagedReadsThreshold = 0 };
        var prompts = Enumerable.Range(0, 64).Select(p => Ids(24, 10_000 * (p + 1))).ToArray();
        var valueOf = new Dictionary<BlockHash, int>();
        for (int p = 0; p < prompts.Length; p++)
            for (int i = 0; i < 24; i++) valueOf[prompts[p][i]] = p * 100 + i;
        int matched = 0;
        using var start = new Barrier(4);
        var workers = Enumerable.Range(0, 4).Select(t => Task.Factory.StartNew(() =>
        {
            var random = new Random(t);
            start.SignalAndWait();
            for (int step = 0; step < 1500; step++)
            {
                var prompt = prompts[random.Next(prompts.Length)];
                if (t < 2)
                {
                    var chain = prompt[..random.Next(1, 25)];
                    if (random.Next(10) == 0) cache.Invalidate([chain[random.Next(chain.Length)]]);
                    else cache.Insert(chain, chain.Select(h => valueOf[h]).ToArray());
                    continue;
                }
                var chains = Enumerable.Range(0, random.Next(41)).Select(_ => prompts[random.Next(prompts.Length)][..random.Next(0, 25)]).ToArray();
                var results = batched ? cache.LookupMany(chains) : chains.Select(cache.Lookup).ToArray();
                for (int c = 0; c < chains.Length; c++)
                {
                    Assert.Equal(chains[c][..results[c].NumBlocks], results[c].Hashes);
                    Assert.Equal(results[c].Hashes.Select(h => valueOf[h]), results[c].Blocks);
                    Interlocked.Add(ref matched, results[c].NumBlocks);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();   // a thread each, for the barrier
        await Task.WhenAll(workers);   // rethrows a worker's failed assertion
        Assert.True(matched > 10_000, $"the readers should find many blocks ({matched})");
        Assert.True(cache.Count > 64, "the table should have grown");
    }

    [Fact]
    public void The_second_block_found_by_a_tag_it_shares_with_other_blocks_is_checked_and_the_chain_still_found()
    {
        // The walk takes its step from the second block's bucket, found by tag alone. Here that bucket names another
        // block (same tag) or the first block itself; the full hash is checked there, and the hint, then the staged
        // probe, find the real second block.
        var same = SameTag(4);
        var a = Ids(4);
        var cache = new PrefixCache<string>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 16 }) { StagedReadsThreshold = 0 };
        cache.Insert([same[0]], ["s0"]);                         // slot 0: the first bucket with the shared tag
        cache.Insert([a[0], same[1], a[2]], ["a0", "s1", "a2"]); // slots 1..3; the second block's tag names slot 0 first
        Assert.Equal(["a0", "s1", "a2"], cache.Lookup([a[0], same[1], a[2]]).Blocks);
        Assert.Equal(["a0", "s1", "a2"], cache.LookupMany([new[] { a[0], same[1], a[2] }])[0].Blocks);
        Assert.Equal(["a0"], cache.Lookup([a[0], same[2]]).Blocks);     // the tag is held, this hash is not
        Assert.Equal(["a0"], cache.Lookup([a[0], a[1]]).Blocks);        // no bucket with this tag: not held
        Assert.Equal(["s0", "s0"], cache.Lookup([same[0], same[0]]).Blocks);   // the second block's bucket is the first's
        cache.Insert([same[2], same[3]], ["s2", "s3"]);                  // both after two others with their tag
        Assert.Equal(["s2", "s3"], cache.Lookup([same[2], same[3]]).Blocks);
        Assert.Equal(["s1", "a2"], cache.Lookup([same[1], a[2]]).Blocks);
        cache.Invalidate([same[0]]);                                     // the shared run shifts back over slot 0's bucket
        Assert.Equal(["a0", "s1", "a2"], cache.Lookup([a[0], same[1], a[2]]).Blocks);
        Assert.Empty(cache.Lookup([same[0], same[1]]).Blocks);
    }

    [Fact]
    public void A_chain_whose_blocks_share_a_tag_homed_in_the_last_bucket_is_found_across_the_wrap_through_removals()
    {
        // 64 slots have an index of 128 buckets (a bucket's home: the tag times 0x9E3779B9, top 7 bits). Blocks sharing
        // one tag homed in bucket 127 form a probe run that wraps to bucket 0 and on; every bucket probe of the chain
        // (the first block's, the second's by tag, the staged ones) crosses the wrap, and removals shift the run back
        // across it.
        uint tag = Enumerable.Range(0, 1 << 16).Select(t => (uint)t * 65_537).First(t => (t * 0x9E3779B9U) >> 25 == 127);
        var ids = Enumerable.Range(0, 6).Select(i =>
        {
            var bytes = new byte[BlockHash.Size];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, tag);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(28), i + 1);
            return BlockHash.FromBytes(bytes);
        }).ToArray();
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = 64 }) { StagedReadsThreshold = 0 };
        cache.Insert(ids[..5], [0, 1, 2, 3, 4]);
        Assert.Equal([0, 1, 2, 3, 4], cache.Lookup(ids[..5]).Blocks);
        Assert.Equal([2, 3, 4], cache.LookupMany([ids[2..5]])[0].Blocks);
        Assert.Equal([4], cache.Lookup([ids[4], ids[5]]).Blocks);       // ids[5]'s tag is held (by five others), it is not
        cache.Invalidate([ids[0], ids[3]]);                              // the run shifts back over bucket 127 and bucket 2
        Assert.Equal([1, 2], cache.Lookup(ids[1..5]).Blocks);
        Assert.Equal([4], cache.Lookup([ids[4]]).Blocks);
        cache.Insert([ids[5], ids[0], ids[3]], [5, 10, 13]);             // back into the freed slots, descending
        Assert.Equal([5, 10, 13], cache.LookupMany([ids[5..], new[] { ids[0], ids[3] }]).SelectMany(m => m.Blocks));
        Assert.Equal([10, 1, 2, 13, 4, 5], cache.Lookup([ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]]).Blocks);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LookupMany_matches_pinned_blocks_keeps_their_pins_and_misses_a_chain_hashed_with_other_extra_keys(bool stagedReads)
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 2, MaxCachedBlocks = 6, ExtraKeys = ["model-a"] })
        {
            StagedReadsThreshold = stagedReads ? 0 : PrefixCache<int>.StagedReadsAbove,
        };
        int[] tokens = [.. Enumerable.Range(1, 12)];
        var a = cache.ComputeBlockHashes(tokens);                              // 6 blocks
        var otherModel = new BlockHasher(2, ["model-b"]).ComputeBlockHashes(tokens);
        cache.Insert(a[..3], [0, 1, 2]);
        cache.Pin(a[..2]);
        var results = cache.LookupMany([a, otherModel, a[..2], a, []]);
        Assert.Equal([[0, 1, 2], [], [0, 1], [0, 1, 2], []], results.Select(r => r.Blocks.ToArray()));
        Assert.Equal([1, 1, 0], a[..3].Select(cache.PinCount));
        var stats = cache.GetStats();
        Assert.Equal((5, 8 * 2L, (3 + 6 + 0 + 3 + 0) * 2L, 2), (stats.Lookups, stats.HitTokens, stats.MissTokens, stats.PinnedBlocks));
        // The pinned blocks stay through the evictions an insert needs; once unpinned nothing is left pinned.
        var evicted = cache.Insert(otherModel[..4], [10, 11, 12, 13]).Evicted;
        Assert.Equal([a[2]], evicted.Select(e => e.Key));
        cache.Unpin(a[..2]);
        Assert.Equal(0, cache.GetStats().PinnedBlocks);
        Assert.Equal(6, cache.Evict(6).Count);
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public void LookupMany_of_no_chains_or_empty_chains_counts_each_and_a_null_chain_is_refused()
    {
        var cache = new PrefixCache<int>(new PrefixCacheOptions { BlockSize = 4, MaxCachedBlocks = 8 });
        var a = Ids(3);
        cache.Insert(a, [1, 2, 3]);
        Assert.Empty(cache.LookupMany([]));
        var results = cache.LookupMany([Array.Empty<BlockHash>(), new List<BlockHash>(a), a[..1]]);
        Assert.Equal([0L, 12L, 4L], results.Select(r => r.NumTokens));
        Assert.Equal([1, 2, 3], results[1].Blocks);
        Assert.Equal(3, cache.GetStats().Lookups);
        var error = Assert.Throws<ArgumentException>(() => cache.LookupMany([a, null!]));
        Assert.Contains("chain 1 is null", error.Message, StringComparison.Ordinal);
        Assert.Equal(3, cache.GetStats().Lookups);               // refused before any lookup
        Assert.Throws<ArgumentNullException>(() => cache.LookupMany(null!));
    }
}
