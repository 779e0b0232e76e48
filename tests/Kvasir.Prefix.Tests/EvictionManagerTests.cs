namespace Kvasir.Prefix.Tests;

public sealed class EvictionManagerTests
{
    private static BlockHash[] Ids(int n) => new BlockHasher(1).ComputeBlockHashes(Enumerable.Range(0, n).Select(i => (long)i).ToArray());

    [Fact]
    public void Lru_selects_the_least_recently_accessed_and_fifo_the_oldest()
    {
        var ids = Ids(3);
        var lru = new EvictionManager(EvictionManager.CreatePolicy("LRU"));
        var fifo = new EvictionManager(EvictionManager.CreatePolicy("fifo"));
        foreach (var m in new[] { lru, fifo })
        {
            foreach (var id in ids) Assert.True(m.Track(id));
            m.RecordAccess(ids[0]);
        }
        Assert.Equal([ids[1], ids[2]], lru.SelectVictims(2));
        Assert.Equal([ids[0], ids[1]], fifo.SelectVictims(2));
        Assert.Equal(3, lru.Count);            // selecting does not evict
        Assert.Equal(1, lru.Accesses);
        Assert.Equal("lru", lru.PolicyName);
        Assert.Equal("KV_CONFIG_INVALID", Assert.Throws<ConfigInvalidException>(() => EvictionManager.CreatePolicy("random")).Code);
        Assert.Throws<ConfigInvalidException>(() => new EvictionManager(evictedMemory: -1));
    }

    [Fact]
    public void Evict_counts_evictions_and_re_prefills()
    {
        var ids = Ids(2);
        var m = new EvictionManager();
        m.Track(ids[0]);
        m.Track(ids[1]);
        Assert.False(m.Track(ids[1]));
        Assert.Equal([ids[0]], m.Evict(1));
        Assert.Equal(1, m.Evictions);
        Assert.False(m.Contains(ids[0]));
        m.Track(ids[0]);
        Assert.Equal(1.0 / 3, m.RePrefillRate, 9);
        Assert.True(m.Untrack(ids[0]));
        Assert.False(m.Untrack(ids[0]));
        Assert.Empty(m.SelectVictims(0));
    }

    [Fact]
    public void Pins_block_eviction_with_the_right_errors()
    {
        var ids = Ids(2);
        var m = new EvictionManager();
        Assert.Equal("KV_NO_VICTIM", Assert.Throws<NoVictimException>(() => m.SelectVictims(1)).Code);
        m.Track(ids[0]);
        m.Track(ids[1]);
        m.Pin(ids[0]);
        Assert.Equal(1, m.PinnedCount);
        Assert.Equal([ids[1]], m.SelectVictims(1));
        Assert.Equal("KV_ALL_PINNED", Assert.Throws<AllPinnedException>(() => m.SelectVictims(2)).Code);
        Assert.Throws<NoVictimException>(() => m.SelectVictims(3));
        Assert.Throws<HandlePinnedException>(() => m.Untrack(ids[0]));
        m.Unpin(ids[0]);
        Assert.Throws<RefCountUnderflowException>(() => m.Unpin(ids[0]));
        Assert.Throws<CacheMissException>(() => m.Pin(Ids(3)[2]));
    }

    [Fact]
    public void A_policy_naming_an_untracked_block_is_EvictionFailed()
    {
        var m = new EvictionManager(new LyingPolicy());
        m.Track(Ids(1)[0]);
        Assert.Equal("KV_EVICTION_FAILED", Assert.Throws<EvictionFailedException>(() => m.Evict(1)).Code);
    }

    private sealed class LyingPolicy : IEvictionPolicy
    {
        public string Name => "lying";
        public void OnInsert(BlockHash block) { }
        public void OnAccess(BlockHash block) { }
        public void OnRemove(BlockHash block) { }
        public IEnumerable<BlockHash> Candidates() { yield return BlockHash.Parse(new string('f', 64)); }
    }
}
