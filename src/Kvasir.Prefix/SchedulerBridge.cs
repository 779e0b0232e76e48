namespace Kvasir.Prefix;

/// <summary>
/// Turns a scheduler's decisions into KV operations. Each step the engine passes its scheduled requests
/// (<see cref="ScheduledRequest"/>: ids, tokens, phase, priority); <see cref="Plan"/> (or <see cref="PlanAsync"/>,
/// which also asks the store below) looks new prompts up in the prefix cache (without a store, all of a step's at once:
/// <see cref="PrefixCache{TBlock}.LookupMany"/>), allocates one pool block per
/// block of tokens (evicting unpinned cached blocks when the pool is full), and frees what preempted and finished
/// requests held. The engine then loads <see cref="BridgePlan.Loads"/>, runs the model, calls
/// <see cref="Complete"/> (the step's full blocks enter the cache) and saves <see cref="BridgePlan.Saves"/>.
/// <para>Ownership: every block is a <see cref="KvHandle"/> of one block (the pool must be in block mode with the
/// cache's block size). A request holds one reference to each of its blocks; the cache holds one to each cached
/// block and frees it on eviction; blocks a request uses from the cache are pinned there until it ends. So the pool
/// returns to zero when every request ended and <see cref="ReleaseCache"/> ran.</para>
/// Calls are serialised by one lock; the pool and cache may be shared with other code.
/// </summary>
public sealed class SchedulerBridge
{
    private readonly object _lock = new();
    private readonly Dictionary<string, RequestState> _requests = [];

    /// <summary>A bridge over <paramref name="pool"/> (block mode, block size = the cache's) and <paramref name="cache"/>; a mismatch throws <see cref="ConfigInvalidException"/>.</summary>
    public SchedulerBridge(KvPool pool, PrefixCache<KvHandle> cache)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(cache);
        if (pool.BlockSize != cache.BlockSize)
            throw new ConfigInvalidException($"the pool's block size ({pool.BlockSize?.ToString() ?? "none: token ranges"}) must equal the cache's ({cache.BlockSize})",
                new Dictionary<string, object?> { ["pool_block_size"] = pool.BlockSize, ["cache_block_size"] = cache.BlockSize });
        Pool = pool;
        Cache = cache;
    }

    /// <summary>The pool blocks come from.</summary>
    public KvPool Pool { get; }

    /// <summary>The prefix cache that keeps full blocks after their requests end.</summary>
    public PrefixCache<KvHandle> Cache { get; }

    private int B => Cache.BlockSize;

    /// <summary>Requests holding memory now.</summary>
    public int ActiveRequests { get { lock (_lock) return _requests.Count; } }

    /// <summary>Plans one step with the local prefix cache only.</summary>
    public BridgePlan Plan(IReadOnlyList<ScheduledRequest> requests)
    {
        lock (_lock) return PlanLocked(requests, new Dictionary<string, StoreLookup<KvHandle>>());
    }

    /// <summary>
    /// Plans one step; new prompts are looked up through the cache and the store below, all at once
    /// (<see cref="PrefixCache{TBlock}.LookupManyAsync"/>: one EXISTS for every prompt), and blocks found there come back
    /// as <see cref="BridgePlan.Loads"/>. Without a store this is <see cref="Plan"/>.
    /// </summary>
    public async Task<BridgePlan> PlanAsync(IReadOnlyList<ScheduledRequest> requests, CancellationToken ct = default)
    {
        var found = new Dictionary<string, StoreLookup<KvHandle>>();
        if (Cache.HasStore)
        {
            List<string> ids;
            List<BlockHash[]> chains;
            lock (_lock) (ids, chains) = NewPrompts(requests.Where(r => r.Phase == RequestPhase.Prefill));
            if (ids.Count > 0)
            {
                var looked = await Cache.LookupManyAsync(chains, ct).ConfigureAwait(false);
                for (int k = 0; k < ids.Count; k++) found[ids[k]] = looked[k];
            }
        }
        lock (_lock) return PlanLocked(requests, found);
    }

    /// <summary>
    /// After the engine ran the step: inserts the step's full blocks into the cache (the cache takes a reference and
    /// the request pins them); blocks the insert evicted are freed. A block whose hash another request cached first
    /// stays the request's own.
    /// </summary>
    public void Complete(BridgePlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        lock (_lock)
        {
            foreach (var group in plan.Inserts.GroupBy(s => s.RequestId))
            {
                if (!_requests.TryGetValue(group.Key, out var state)) continue;
                var saves = group.ToArray();
                // A request's saves of one step are consecutive blocks of its chain: they continue the block before the
                // first (a cached prefix, or a block a previous step filled), so a chain-aware policy sees one chain.
                var result = Cache.Insert(saves.Select(s => s.Hash).ToArray(), saves.Select(s => s.Handle).ToArray(), saves[0].Parent);
                foreach (var (_, handle) in result.Evicted) Pool.Free(handle);
                var notTaken = result.NotTaken.Select(p => p.Key).ToHashSet();
                foreach (var save in saves)
                {
                    if (notTaken.Contains(save.Hash)) continue;
                    Pool.AddRef(save.Handle);
                    Cache.Pin([save.Hash]);
                    state.Pinned.Add(save.Hash);
                }
            }
        }
    }

    /// <summary>Evicts every unpinned cached block and frees it; returns how many. With no request active the pool is then empty.</summary>
    public int ReleaseCache()
    {
        lock (_lock)
        {
            int released = 0;
            while (Cache.Count - Cache.GetStats().PinnedBlocks > 0)
            {
                foreach (var (_, handle) in Cache.Evict(1)) Pool.Free(handle);
                released++;
            }
            return released;
        }
    }

    private BridgePlan PlanLocked(IReadOnlyList<ScheduledRequest> requests, Dictionary<string, StoreLookup<KvHandle>> found)
    {
        var plans = new List<RequestPlan>();
        int lookups = 0;
        // Releases first, so their memory serves this step's allocations; then by priority, highest first.
        foreach (var r in requests.Where(r => r.Phase is RequestPhase.Preempted or RequestPhase.Finished))
            plans.Add(Release(r));
        var running = requests.Where(r => r.Phase is RequestPhase.Prefill or RequestPhase.Decode).OrderByDescending(r => r.Priority).ToList();
        var looked = LookUpNewPrompts(running, found);
        foreach (var r in running)
        {
            if (_requests.TryGetValue(r.RequestId, out var state)) plans.Add(Grow(r, state));
            else
            {
                lookups++;
                plans.Add(Admit(r, found.GetValueOrDefault(r.RequestId), looked.GetValueOrDefault(r.RequestId)));
            }
        }
        return new BridgePlan(plans, lookups);
    }

    /// <summary>
    /// The local prefix of every new prompt of the step that the store lookup did not cover, found by one
    /// <see cref="PrefixCache{TBlock}.LookupMany"/> in priority order (its far reads overlap across the prompts), before
    /// any admission allocates. So the eviction order sees every waiting prefix used before this step's allocations
    /// evict; a prefix that an earlier admission's allocation still evicts is looked up again in <see cref="Admit"/>.
    /// </summary>
    private Dictionary<string, (BlockHash[] Hashes, PrefixMatch<KvHandle> Local)> LookUpNewPrompts(
        List<ScheduledRequest> running, Dictionary<string, StoreLookup<KvHandle>> found)
    {
        var (ids, chains) = NewPrompts(running.Where(r => !found.ContainsKey(r.RequestId)));
        var looked = new Dictionary<string, (BlockHash[], PrefixMatch<KvHandle>)>(ids.Count);
        if (ids.Count == 0) return looked;
        var matches = Cache.LookupMany(chains);
        for (int k = 0; k < ids.Count; k++) looked[ids[k]] = (chains[k], matches[k]);
        return looked;
    }

    /// <summary>The requests of <paramref name="candidates"/> the bridge does not hold yet, each once, with their block hashes. Under the lock.</summary>
    private (List<string> Ids, List<BlockHash[]> Chains) NewPrompts(IEnumerable<ScheduledRequest> candidates)
    {
        var ids = new List<string>();
        var chains = new List<BlockHash[]>();
        var seen = new HashSet<string>();
        foreach (var r in candidates)
        {
            if (_requests.ContainsKey(r.RequestId) || !seen.Add(r.RequestId)) continue;
            ids.Add(r.RequestId);
            chains.Add(Cache.ComputeBlockHashes(r.TokenIds.ToArray()));
        }
        return (ids, chains);
    }

    private RequestPlan Admit(ScheduledRequest r, StoreLookup<KvHandle>? storeLookup, (BlockHash[] Hashes, PrefixMatch<KvHandle> Local)? looked)
    {
        var tokens = r.TokenIds.ToArray();
        var hashes = looked?.Hashes ?? Cache.ComputeBlockHashes(tokens);
        var state = new RequestState();
        PrefixMatch<KvHandle> local;
        IReadOnlyList<BlockHash> below = [];
        try
        {
            local = storeLookup?.Local ?? looked?.Local ?? Cache.Lookup(hashes);
            Cache.Pin(local.Hashes.ToArray());
            if (storeLookup is not null) below = storeLookup.StoreHashes;
        }
        catch (CacheMissException)
        {
            // Evicted between the lookup (the store's, or this step's LookupMany) and now: look again, locally.
            local = Cache.Lookup(hashes);
            Cache.Pin(local.Hashes.ToArray());
        }
        state.Pinned.AddRange(local.Hashes);
        foreach (var handle in local.Blocks)
        {
            Pool.AddRef(handle);
            state.Blocks.Add(handle);
        }
        state.Hashes.AddRange(local.Hashes);
        var allocated = new List<KvHandle>();
        var loads = new List<BlockLoad>();
        var compute = new List<KvHandle>();
        var inserts = new List<BlockSave>();
        int totalBlocks = (tokens.Length + B - 1) / B;
        long room = Pool.FreeTokens / B + Cache.Count - Cache.GetStats().PinnedBlocks;
        if (totalBlocks - local.NumBlocks > room)
        {
            // Cannot fit even after evicting every unpinned cached block: defer without evicting anything.
            ReleaseState(state);
            return new RequestPlan(r.RequestId, r.Phase, 0, 0, 0, [], [], [], [], [], Deferred: true);
        }
        try
        {
            for (int i = local.NumBlocks; i < totalBlocks; i++)
            {
                var handle = AllocBlock(r.RequestId, (long)i * B);
                allocated.Add(handle);
                state.Blocks.Add(handle);
                if (i >= hashes.Length) { compute.Add(handle); continue; }   // the partial tail
                bool fromStore = i - local.NumBlocks < below.Count;
                if (fromStore) loads.Add(new BlockLoad(r.RequestId, hashes[i], handle));
                else compute.Add(handle);
                inserts.Add(new BlockSave(r.RequestId, hashes[i], handle, i == 0 ? null : hashes[i - 1], Computed: !fromStore));
                state.Hashes.Add(hashes[i]);
            }
        }
        catch (KvCacheException e) when (e is PoolFullException or MemoryExhaustedException)
        {
            ReleaseState(state);
            return new RequestPlan(r.RequestId, r.Phase, 0, 0, 0, [], [], [], [], [], Deferred: true);
        }
        _requests[r.RequestId] = state;
        state.Tokens = tokens.Length;
        long cached = local.NumTokens + (long)loads.Count * B;
        return new RequestPlan(r.RequestId, r.Phase, local.NumTokens, cached, tokens.Length - cached, loads, compute, allocated, [], inserts, Deferred: false);
    }

    private RequestPlan Grow(ScheduledRequest r, RequestState state)
    {
        var tokens = r.TokenIds.ToArray();
        var allocated = new List<KvHandle>();
        int totalBlocks = (tokens.Length + B - 1) / B;
        try
        {
            for (int i = state.Blocks.Count; i < totalBlocks; i++)
            {
                var handle = AllocBlock(r.RequestId, (long)i * B);
                allocated.Add(handle);
            }
        }
        catch (KvCacheException e) when (e is PoolFullException or MemoryExhaustedException)
        {
            foreach (var handle in allocated) Pool.Free(handle);
            return new RequestPlan(r.RequestId, r.Phase, 0, 0, 0, [], [], [], [], [], Deferred: true);
        }
        state.Blocks.AddRange(allocated);
        // Blocks that became full since the last step: hash them on the chain and insert them after the step.
        var inserts = new List<BlockSave>();
        int full = tokens.Length / B;
        if (full > state.Hashes.Count)
        {
            BlockHash parent = state.Hashes.Count == 0 ? BlockHash.Zero : state.Hashes[^1];
            var fresh = Cache.Hasher.ComputeBlockHashes(tokens.AsSpan(state.Hashes.Count * B, (full - state.Hashes.Count) * B), parent);
            foreach (var hash in fresh)
            {
                int index = state.Hashes.Count;
                inserts.Add(new BlockSave(r.RequestId, hash, state.Blocks[index], index == 0 ? null : state.Hashes[^1], Computed: true));
                state.Hashes.Add(hash);
            }
        }
        long newTokens = tokens.Length - state.Tokens;
        state.Tokens = tokens.Length;
        return new RequestPlan(r.RequestId, r.Phase, 0, 0, newTokens, [], allocated, allocated, [], inserts, Deferred: false);
    }

    private RequestPlan Release(ScheduledRequest r)
    {
        if (!_requests.Remove(r.RequestId, out var state))
            return new RequestPlan(r.RequestId, r.Phase, 0, 0, 0, [], [], [], [], [], Deferred: false);
        var freed = state.Blocks.ToArray();
        ReleaseState(state);
        return new RequestPlan(r.RequestId, r.Phase, 0, 0, 0, [], [], [], freed, [], Deferred: false);
    }

    private void ReleaseState(RequestState state)
    {
        Cache.Unpin(state.Pinned);
        foreach (var handle in state.Blocks) Pool.Free(handle);
        state.Pinned.Clear();
        state.Blocks.Clear();
    }

    /// <summary>One block from the pool; when it is full, evicts unpinned cached blocks one at a time and retries.</summary>
    private KvHandle AllocBlock(string requestId, long tokenStart)
    {
        while (true)
        {
            try
            {
                return Pool.Alloc(B, requestId, tokenStart);
            }
            catch (KvCacheException full) when (full is PoolFullException or MemoryExhaustedException)
            {
                IReadOnlyList<KeyValuePair<BlockHash, KvHandle>> evicted;
                try { evicted = Cache.Evict(1); }
                catch (KvCacheException e) when (e is NoVictimException or AllPinnedException) { throw full; }
                foreach (var (_, handle) in evicted) Pool.Free(handle);
            }
        }
    }

    private sealed class RequestState
    {
        public List<KvHandle> Blocks { get; } = [];
        public List<BlockHash> Hashes { get; } = [];
        public List<BlockHash> Pinned { get; } = [];
        public long Tokens { get; set; }
    }
}
