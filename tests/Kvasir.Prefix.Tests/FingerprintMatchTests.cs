namespace Kvasir.Prefix.Tests;

/// <summary>
/// Pairs of hashes that differ but share their first eight bytes (the index tag and more) and their folded
/// <see cref="BlockHash.Fingerprint"/>: what a lookup that compares less than the full 32 bytes of every block would
/// confuse. Session 12 tried such a lookup (a 64-bit fingerprint per block, the full hash checked once per run of blocks
/// linked parent to child by entry ids; not kept, docs/benchmarks.md) and these tests forced what it could get wrong: a
/// hash sharing a cached block's fingerprint, a slot reused by one, a middle block invalidated and inserted again, and
/// chains stored in pieces. The lookup must give exactly the blocks a full-hash match gives.
/// </summary>
public sealed class FingerprintMatchTests
{
    private static BlockHash[] Ids(int n, int start = 0) =>
        Enumerable.Range(start, n).Select(i => BlockHash.FromBytes(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)))).ToArray();

    /// <summary>
    /// Another hash with <paramref name="hash"/>'s first eight bytes and fingerprint: bit 0 of the second word (byte 15)
    /// and bit 48 of the third (byte 17) land on the same bit of the folded fingerprint, so flipping both leaves it as it was.
    /// </summary>
    private static BlockHash Twin(BlockHash hash)
    {
        var bytes = hash.ToBytes();
        bytes[15] ^= 1;
        bytes[17] ^= 1;
        var twin = BlockHash.FromBytes(bytes);
        Assert.NotEqual(hash, twin);
        Assert.Equal((hash.Prefix, hash.Fingerprint), (twin.Prefix, twin.Fingerprint));
        return twin;
    }

    private static PrefixCache<string> Cache(int capacity, bool stagedReads) =>
        new(new PrefixCacheOptions { BlockSize = 1, MaxCachedBlocks = capacity }) { StagedReadsThreshold = stagedReads ? 0 : PrefixCache<string>.StagedReadsAbove };

    /// <summary>Lookup and LookupMany of the same chain: both must give <paramref name="expected"/>.</summary>
    private static void AssertMatch(PrefixCache<string> cache, BlockHash[] chain, params string[] expected)
    {
        Assert.Equal(expected, cache.Lookup(chain).Blocks);
        Assert.Equal(expected, cache.LookupMany([chain, chain])[1].Blocks);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_hash_sharing_a_cached_blocks_fingerprint_is_never_a_hit_alone_inside_or_at_the_end_of_a_chain(bool stagedReads)
    {
        var cache = Cache(16, stagedReads);
        var x = Ids(4);
        cache.Insert(x, ["x0", "x1", "x2", "x3"]);
        AssertMatch(cache, [Twin(x[0])]);
        AssertMatch(cache, [Twin(x[0]), x[1]]);
        AssertMatch(cache, [Twin(x[0]), Twin(x[1])]);
        AssertMatch(cache, [x[0], Twin(x[1])], "x0");
        AssertMatch(cache, [x[0], x[1], x[2], Twin(x[3])], "x0", "x1", "x2");
        AssertMatch(cache, [x[0], x[1], Twin(x[2]), Twin(x[3])], "x0", "x1");
        Assert.False(cache.Contains(Twin(x[3])));
        AssertMatch(cache, x, "x0", "x1", "x2", "x3");

        // Both twins held: each is its own block, whichever the walk's guess lands on first.
        cache.Insert([Twin(x[3])], ["twin3"]);
        cache.Insert([Twin(x[1])], ["twin1"]);
        AssertMatch(cache, x, "x0", "x1", "x2", "x3");
        AssertMatch(cache, [x[0], x[1], x[2], Twin(x[3])], "x0", "x1", "x2", "twin3");
        AssertMatch(cache, [x[0], Twin(x[1])], "x0", "twin1");
        AssertMatch(cache, [Twin(x[3]), x[3]], "twin3", "x3");
        Assert.Equal("twin3", cache.Get(Twin(x[3])));
        Assert.Equal("x3", cache.Get(x[3]));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_slot_reused_by_a_hash_sharing_the_freed_blocks_fingerprint_is_not_taken_for_it(bool stagedReads)
    {
        // a2 leaves; its twin takes the same slot (the free list gives back the last freed slot first), where the walk
        // guesses a2 and where a1's successor hint points.
        var cache = Cache(8, stagedReads);
        var a = Ids(5);
        cache.Insert(a, ["a0", "a1", "a2", "a3", "a4"]);
        cache.Invalidate([a[2]]);
        cache.Insert([Twin(a[2])], ["twin2"]);
        AssertMatch(cache, a, "a0", "a1");
        AssertMatch(cache, [a[0], a[1], Twin(a[2])], "a0", "a1", "twin2");
        AssertMatch(cache, [a[0], a[1], Twin(a[2]), a[3], a[4]], "a0", "a1", "twin2", "a3", "a4");
        AssertMatch(cache, a, "a0", "a1");
        AssertMatch(cache, a[3..], "a3", "a4");

        // The same through eviction: a full cache evicts the least recent block, whose slot the next insert reuses.
        var full = Cache(3, stagedReads);
        var b = Ids(3, 100);
        full.Insert(b, ["b0", "b1", "b2"]);
        full.Lookup(b[1..]);                                     // b0 is now the least recent
        Assert.Equal([b[0]], full.Insert([Twin(b[0])], ["twin0"]).Evicted.Select(e => e.Key));
        AssertMatch(full, b);
        AssertMatch(full, [Twin(b[0]), b[1], b[2]], "twin0", "b1", "b2");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_middle_block_invalidated_and_inserted_again_is_found_in_its_new_slot_and_linked_again(bool stagedReads)
    {
        var cache = Cache(16, stagedReads);
        var a = Ids(6);
        cache.Insert(a, ["a0", "a1", "a2", "a3", "a4", "a5"]);
        cache.Invalidate([a[2]]);
        AssertMatch(cache, a, "a0", "a1");
        AssertMatch(cache, a[3..], "a3", "a4", "a5");
        cache.Insert(Ids(1, 50), ["p"]);                        // takes a2's freed slot
        cache.Insert([a[2]], ["a2 again"]);                     // in a new slot: a1's hint and the step walk point elsewhere
        AssertMatch(cache, [a[0], a[1], Ids(1, 50)[0]], "a0", "a1", "p");
        AssertMatch(cache, a, "a0", "a1", "a2 again", "a3", "a4", "a5");
        AssertMatch(cache, [a[0], a[1], a[2], Twin(a[3])], "a0", "a1", "a2 again");
        AssertMatch(cache, [a[0], a[1], Twin(a[2])], "a0", "a1");
        cache.Invalidate([a[0]]);
        AssertMatch(cache, a);
        AssertMatch(cache, a[1..], "a1", "a2 again", "a3", "a4", "a5");
    }

    [Theory]
    [InlineData(false, 11)]
    [InlineData(true, 12)]
    [InlineData(false, 13)]
    [InlineData(true, 14)]
    public void Random_chains_with_fingerprint_twins_match_what_a_full_hash_model_holds(bool stagedReads, int seed)
    {
        // A tree of chained blocks: every hash sits at one place in it (so it names its parent, as a v1 block hash
        // does), and a third of the nodes are twins of other nodes, elsewhere in the tree, sharing their fingerprint.
        // Random inserts of pieces of paths (linked to their parent or not), invalidations (slots freed and reused) and
        // lookups of paths, some ending in a twin that is in no place of the tree; no eviction, so the model is the set
        // of held hashes and a lookup's answer is its longest held prefix.
        var rng = new Random(seed);
        var nodes = new List<(BlockHash Hash, int Parent)>();
        var raw = Ids(400, seed * 1000);
        for (int i = 0; i < raw.Length; i++)
        {
            int parent = i == 0 ? -1 : rng.Next(-1, i);
            var hash = i > 10 && rng.Next(3) == 0 ? Twin(nodes[rng.Next(nodes.Count)].Hash) : raw[i];
            if (nodes.Any(n => n.Hash == hash)) hash = raw[i];
            nodes.Add((hash, parent));
        }
        // Hashes in no place of the tree (never inserted, so they may follow anything in a query): twins of nodes.
        var inTree = nodes.Select(n => n.Hash).ToHashSet();
        var offTree = nodes.Select(n => Twin(n.Hash)).Where(h => !inTree.Contains(h)).ToArray();
        BlockHash[] PathTo(int node)
        {
            var path = new List<BlockHash>();
            for (int n = node; n >= 0; n = nodes[n].Parent) path.Add(nodes[n].Hash);
            path.Reverse();
            return [.. path];
        }
        var cache = Cache(1000, stagedReads);
        var held = new Dictionary<BlockHash, string>();
        for (int step = 0; step < 3000; step++)
        {
            int node = rng.Next(nodes.Count);
            var path = PathTo(node);
            switch (rng.Next(10))
            {
                case < 4:
                    {
                        int from = rng.Next(path.Length);
                        var piece = path[from..Math.Min(path.Length, from + 1 + rng.Next(6))];
                        var values = piece.Select(_ => $"v{step}").ToArray();
                        BlockHash? parent = from > 0 && rng.Next(2) == 0 ? path[from - 1] : null;
                        cache.Insert(piece, values, parent);
                        foreach (var hash in piece) held.TryAdd(hash, $"v{step}");
                        break;
                    }
                case < 5:
                    {
                        var gone = path.Where(_ => rng.Next(3) == 0).ToArray();
                        cache.Invalidate(gone);
                        foreach (var hash in gone) held.Remove(hash);
                        break;
                    }
                default:
                    {
                        var twin = Twin(path[^1]);
                        var query = rng.Next(3) switch
                        {
                            0 when !inTree.Contains(twin) => [.. path[..^1], twin],      // a twin of its last block
                            1 => [.. path, offTree[rng.Next(offTree.Length)]],           // a twin of some block after it
                            _ => path,
                        };
                        var expected = query.TakeWhile(held.ContainsKey).Select(h => held[h]).ToArray();
                        Assert.Equal(expected, cache.Lookup(query).Blocks);
                        var many = cache.LookupMany([query, PathTo(rng.Next(nodes.Count)), query]);
                        Assert.Equal(expected, many[0].Blocks);
                        Assert.Equal(expected, many[2].Blocks);
                        break;
                    }
            }
        }
        Assert.Equal(held.Count, cache.Count);
    }
}
