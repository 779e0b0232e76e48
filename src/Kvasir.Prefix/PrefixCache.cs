using System.Buffers;
using System.Runtime.InteropServices;
using Kvasir.Prefix.Internal;

namespace Kvasir.Prefix;

/// <summary>
/// A cache of KV blocks by chained block hash: insert the blocks of a computed prefix, look up the longest
/// cached prefix of a new request, invalidate, pin blocks in use, and evict in the order of an
/// <see cref="IEvictionPolicy"/> once <see cref="PrefixCacheOptions.MaxCachedBlocks"/> is reached.
/// <typeparamref name="TBlock"/> is whatever the engine uses to find a block's KV (a block index, a
/// <see cref="KvHandle"/>): the cache stores it and hands it back, and reports evicted ones so the engine can
/// free them. With a <see cref="PrefixCacheOptions.Store"/> the node is the tier below: <see cref="LookupAsync"/>
/// reports how far the prefix continues there, <see cref="LoadAsync"/> brings blocks into the caller's buffers,
/// <see cref="SaveAsync"/> writes computed blocks. Thread-safe; every call is O(blocks named), independent of
/// the number of blocks cached.
/// </summary>
public sealed class PrefixCache<TBlock>
{
    private const int StackSlots = 256;
    private readonly object _lock = new();
    private readonly BlockTable<TBlock> _blocks;
    private readonly HashSet<BlockHash> _fresh = [];
    private readonly List<int> _kept = [];
    private readonly StoreTier? _store;
    private long _prefetched;   // what LookupMany's early reads summed to: kept so they are not optimised away
    private long _lookups, _hitTokens, _missTokens, _inserts, _invalidations, _storeLookups, _storeHitTokens, _storeLoaded, _storeSaved;

    /// <summary>A cache with <paramref name="options"/> (default <see cref="PrefixCacheOptions"/>: 16-token blocks, 10,000 blocks, LRU, no store).</summary>
    public PrefixCache(PrefixCacheOptions? options = null)
    {
        options ??= new PrefixCacheOptions();
        if (options.MaxCachedBlocks is < 1 or > BlockTable<TBlock>.MaxSlots)
            throw new ConfigInvalidException($"MaxCachedBlocks must be 1 to {BlockTable<TBlock>.MaxSlots:N0}, not {options.MaxCachedBlocks}", new Dictionary<string, object?> { ["max_cached_blocks"] = options.MaxCachedBlocks });
        Hasher = new BlockHasher(options.BlockSize, options.ExtraKeys);
        Capacity = options.MaxCachedBlocks;
        var policy = options.Policy ?? (options.EnableLru ? new LruPolicy() : new FifoPolicy());
        _blocks = new BlockTable<TBlock>(policy, evictedMemory: 100_000, maxSlots: Capacity);
        _store = options.Store is null ? null : new StoreTier(options.Store);
    }

    /// <summary>The hasher of this cache's block size and extra keys.</summary>
    public BlockHasher Hasher { get; }

    /// <summary>Tokens per block.</summary>
    public int BlockSize => Hasher.BlockSize;

    /// <summary>Most blocks held.</summary>
    public int Capacity { get; }

    /// <summary>Blocks held now.</summary>
    public int Count { get { lock (_lock) return _blocks.Count; } }

    /// <summary>True when a store is attached.</summary>
    public bool HasStore => _store is not null;

    /// <summary>The eviction policy's name ("lru", "fifo", ...).</summary>
    public string PolicyName => _blocks.PolicyName;

    /// <summary>The hashes of the full blocks of <paramref name="tokens"/> (see <see cref="BlockHasher.ComputeBlockHashes(ReadOnlySpan{long}, BlockHash)"/>).</summary>
    public BlockHash[] ComputeBlockHashes(ReadOnlySpan<long> tokens, BlockHash parent = default) => Hasher.ComputeBlockHashes(tokens, parent);

    /// <summary>As above for 32-bit token ids.</summary>
    public BlockHash[] ComputeBlockHashes(ReadOnlySpan<int> tokens, BlockHash parent = default) => Hasher.ComputeBlockHashes(tokens, parent);

    /// <summary>
    /// Caches <paramref name="blocks"/> under <paramref name="hashes"/> (same count). A hash already cached keeps
    /// its block (returned in <see cref="InsertResult{TBlock}.NotTaken"/>, for the caller to free) and counts as an
    /// access. Room is made by evicting unpinned blocks that are not part of this insert; evicted blocks are
    /// returned for the caller to free. More hashes than <see cref="Capacity"/>: <see cref="PrefixTooLongException"/>;
    /// not enough unpinned blocks to evict: <see cref="AllPinnedException"/>. Nothing changes when it throws.
    /// </summary>
    public InsertResult<TBlock> Insert(IReadOnlyList<BlockHash> hashes, IReadOnlyList<TBlock> blocks) => Insert(hashes, blocks, null);

    /// <summary>
    /// As <see cref="Insert(IReadOnlyList{BlockHash}, IReadOnlyList{TBlock})"/>, the blocks continuing
    /// <paramref name="parent"/> (the block before the first; null: the first starts a chain). The blocks form a chain:
    /// each one's parent is the block before it. Only the chain-aware policy (<see cref="ChainLfuPolicy"/>) uses the
    /// links: it evicts a chain from its tail. A parent not cached (or evicted to make room for this insert) is no
    /// link; a block already cached is relinked to its new parent, as the node does when a block is stored again.
    /// </summary>
    public InsertResult<TBlock> Insert(IReadOnlyList<BlockHash> hashes, IReadOnlyList<TBlock> blocks, BlockHash? parent)
    {
        ArgumentNullException.ThrowIfNull(hashes);
        ArgumentNullException.ThrowIfNull(blocks);
        if (hashes.Count != blocks.Count) throw new ArgumentException($"{hashes.Count} hashes but {blocks.Count} blocks", nameof(blocks));
        if (hashes.Count > Capacity)
            throw new PrefixTooLongException($"{hashes.Count} blocks cannot fit a cache of {Capacity}", new Dictionary<string, object?> { ["blocks"] = hashes.Count, ["capacity"] = Capacity });
        lock (_lock)
        {
            _fresh.Clear();
            _kept.Clear();
            foreach (var hash in hashes)
            {
                int slot = _blocks.Find(hash);
                if (slot >= 0) _kept.Add(slot);
                else _fresh.Add(hash);
            }
            var evicted = new List<KeyValuePair<BlockHash, TBlock>>();
            int need = _blocks.Count + _fresh.Count - Capacity;
            if (need > 0)
            {
                // Blocks of this very insert must survive the room-making: pin them for its duration.
                foreach (int slot in _kept) _blocks.Pin(slot);
                try
                {
                    _blocks.EvictVictims(need, evicted);
                }
                finally
                {
                    foreach (int slot in _kept) _blocks.Unpin(slot);
                }
            }
            var notTaken = new List<KeyValuePair<BlockHash, TBlock>>();
            int inserted = 0, previous = -1, link = parent is BlockHash p ? _blocks.Find(p) : -1;
            for (int i = 0; i < hashes.Count; i++)
            {
                if (_blocks.Track(hashes[i], blocks[i], out int slot, i == 0 ? link : previous)) inserted++;
                else notTaken.Add(new(hashes[i], blocks[i]));
                if (previous >= 0) _blocks.Follow(previous, slot);   // the chain's next block, for the next lookup
                previous = slot;
            }
            _inserts += inserted;
            return new InsertResult<TBlock>(inserted, evicted, notTaken);
        }
    }

    /// <summary>
    /// The longest cached prefix of <paramref name="hashes"/> (a chain, first block first): it stops at the first
    /// block not cached. Counts a lookup, hit tokens (matched blocks) and miss tokens (the rest), and records an
    /// access on each matched block. The whole chain is matched before any block is moved in the eviction order
    /// (see <see cref="BlockTable{TValue}.MatchPrefix"/>). On a table larger than <see cref="StagedReadsAbove"/> (x86)
    /// an LRU hit's move to the back of the order is made at the start of the next call that reads or changes the order,
    /// its two far neighbours asked for meanwhile (<see cref="BlockTable{TValue}.AccessRun"/>): every caller sees the
    /// same order as if it had been made here.
    /// </summary>
    public PrefixMatch<TBlock> Lookup(IReadOnlyList<BlockHash> hashes)
    {
        ArgumentNullException.ThrowIfNull(hashes);
        var chain = AsSpan(hashes);
        int[]? rented = chain.Length > StackSlots ? ArrayPool<int>.Shared.Rent(chain.Length) : null;
        Span<int> slots = rented is null ? stackalloc int[StackSlots] : rented;
        try
        {
            lock (_lock) return LookupLocked(chain, slots, deferMove: PrefetchHints && _blocks.TableBytes > StagedReadsThreshold);
        }
        finally
        {
            if (rented is not null) ArrayPool<int>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// <see cref="Lookup"/> of each chain in <paramref name="chains"/>, in their order, under one lock: the same matches,
    /// counters and moves in the eviction order as that many <see cref="Lookup"/> calls (a chain may repeat another or be
    /// empty; pins are neither taken nor dropped; a null chain is refused before any lookup). For a scheduler that looks up
    /// the prefixes of many waiting requests at once: on a cache larger than the CPU's caches, each chain's first reads
    /// (its first block's index bucket, its entries, under LRU its neighbours in the order) are far, and here they are
    /// asked for with prefetch instructions a few chains ahead of the one being matched, so they overlap the matching
    /// of the chains before it (on x86; elsewhere those of up to <see cref="LookupGroup"/> chains are read together
    /// before the chains are matched one by one). Only on a table larger than <see cref="StagedReadsAbove"/>; a smaller one
    /// is in the caches and is looked up chain after chain.
    /// </summary>
    public IReadOnlyList<PrefixMatch<TBlock>> LookupMany(IReadOnlyList<IReadOnlyList<BlockHash>> chains)
    {
        ArgumentNullException.ThrowIfNull(chains);
        var spans = new BlockHash[chains.Count][];
        int longest = 0;
        for (int c = 0; c < spans.Length; c++)
        {
            var chain = chains[c] ?? throw new ArgumentException($"chain {c} is null", nameof(chains));
            spans[c] = chain as BlockHash[] ?? [.. chain];
            longest = Math.Max(longest, spans[c].Length);
        }
        var results = new PrefixMatch<TBlock>[spans.Length];
        int[]? rented = longest > StackSlots ? ArrayPool<int>.Shared.Rent(longest) : null;
        Span<int> slots = rented is null ? stackalloc int[StackSlots] : rented;
        Span<BlockHash> firsts = stackalloc BlockHash[LookupGroup], seconds = stackalloc BlockHash[LookupGroup];
        Span<int> lengths = stackalloc int[LookupGroup];
        try
        {
            lock (_lock)
            {
                // A table this small is in the core's caches: its reads are near, so the early reads would only add their own work.
                bool far = _blocks.TableBytes > StagedReadsThreshold;
                if (far && PrefetchHints)
                {
                    LookupPipelined(spans, results, slots);
                    return results;
                }
                for (int start = 0; start < spans.Length; start += LookupGroup)
                {
                    int end = Math.Min(start + LookupGroup, spans.Length), group = 0;
                    for (int c = start; c < end && far; c++)
                    {
                        var chain = spans[c];
                        if (chain.Length == 0) continue;
                        firsts[group] = chain[0];
                        seconds[group] = chain[Math.Min(1, chain.Length - 1)];
                        lengths[group++] = chain.Length;
                    }
                    if (far) _prefetched += _blocks.Prefetch(firsts[..group], seconds[..group], lengths[..group]);
                    for (int c = start; c < end; c++) results[c] = LookupLocked(spans[c], slots);
                }
            }
            return results;
        }
        finally
        {
            if (rented is not null) ArrayPool<int>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// <see cref="LookupMany"/> on a far table with prefetch instructions: while chain c is matched, the CPU is already
    /// fetching what chain c + <see cref="HintNeighboursAhead"/> needs under LRU (its outer neighbours in the order: their
    /// addresses are in its first and last entries, asked for earlier), the entries of chain c + <see cref="HintEntriesAhead"/>
    /// (their slots come from its first bucket, asked for earlier still) and the first bucket of chain
    /// c + <see cref="HintBucketsAhead"/>. A prefetch, unlike a plain load, does not hold the core while its line is on the
    /// way, so a chain's far reads overlap the matching of the chains before it instead of stalling in a separate pass.
    /// The hints never change what a lookup finds or moves: a hint made stale by an earlier chain's move only wastes a line.
    /// </summary>
    private void LookupPipelined(BlockHash[][] spans, PrefixMatch<TBlock>[] results, Span<int> slots)
    {
        const int Ring = 8;   // a power of two above HintEntriesAhead: the first and last slots of the chains in between
        Span<int> firsts = stackalloc int[Ring], lasts = stackalloc int[Ring];
        int n = spans.Length;
        for (int c = 0; c < Math.Min(HintBucketsAhead, n); c++) HintBucket(spans[c]);
        for (int c = 0; c < Math.Min(HintEntriesAhead, n); c++) (firsts[c & (Ring - 1)], lasts[c & (Ring - 1)]) = _blocks.HintEntries(spans[c]);
        for (int c = 0; c < Math.Min(HintNeighboursAhead, n); c++) _blocks.HintNeighbours(firsts[c & (Ring - 1)], lasts[c & (Ring - 1)]);
        for (int c = 0; c < n; c++)
        {
            if (c + HintBucketsAhead < n) HintBucket(spans[c + HintBucketsAhead]);
            int e = c + HintEntriesAhead, h = c + HintNeighboursAhead;
            if (e < n) (firsts[e & (Ring - 1)], lasts[e & (Ring - 1)]) = _blocks.HintEntries(spans[e]);
            if (h < n) _blocks.HintNeighbours(firsts[h & (Ring - 1)], lasts[h & (Ring - 1)]);
            results[c] = LookupLocked(spans[c], slots);
        }
    }

    private void HintBucket(BlockHash[] chain)
    {
        if (chain.Length > 0) _blocks.HintBucket(chain[0]);
    }

    /// <summary>
    /// How many chains ahead of the one being matched <see cref="LookupMany"/> asks for a first bucket, for entries and for
    /// LRU neighbours. A chain's matching takes ~0.2 µs on this project's VMs and a far read (DRAM through a TLB walk under
    /// nested paging) 0.3-0.5 µs, so each stage leads the next by two to four chains (docs/benchmarks.md, issue 14, session
    /// 13: 8/4/1, 8/4/2 and 12/6/3 measured alike, 12/4/2 worse).
    /// </summary>
    internal const int HintBucketsAhead = 8, HintEntriesAhead = 4, HintNeighboursAhead = 2;

    /// <summary>
    /// Whether <see cref="LookupMany"/> on a far table uses prefetch instructions (<see cref="Kvasir.Net.CacheHints"/>;
    /// x86) rather than a pass of plain loads per group of chains (<see cref="LookupGroup"/>); tests set it to cover both.
    /// </summary>
    internal bool PrefetchHints { get; set; } = Kvasir.Net.CacheHints.IsSupported;

    /// <summary>Chains whose first reads <see cref="LookupMany"/> issues together.</summary>
    public const int LookupGroup = 16;

    /// <summary>
    /// The size of the block table (entries and index, in bytes) above which <see cref="LookupMany"/> issues a group's
    /// reads early: 4 MiB, a few times a server core's L2 (1-2 MiB). Below it (1,000 blocks are 64 KiB) the table stays in the core's own
    /// caches, a lookup's reads are near, and the early reads would only add their work (about 2.5 ns a block). Above
    /// it the reads come from the shared L3, which other work on the host evicts, or from DRAM, and the early reads
    /// overlap them: at 100,000 blocks (6.6 MiB) on this shared VM they saved a quarter under load and cost 13-18 % when
    /// it was quiet (the table then stayed in the L3); at 1,000,000 they save a third (docs/benchmarks.md, issue 14,
    /// session 9).
    /// </summary>
    public const long StagedReadsAbove = 4L << 20;

    /// <summary><see cref="StagedReadsAbove"/> for this cache; tests set 0 so that small tables take the staged path too.</summary>
    internal long StagedReadsThreshold { get; set; } = StagedReadsAbove;

    private static ReadOnlySpan<BlockHash> AsSpan(IReadOnlyList<BlockHash> hashes) => hashes switch
    {
        BlockHash[] array => array,
        List<BlockHash> list => CollectionsMarshal.AsSpan(list),
        _ => hashes.ToArray(),
    };

    /// <summary>One chain's lookup under the lock (<paramref name="slots"/>: room for its slots); <paramref name="deferMove"/>: whether an LRU hit's move in the order may wait for the next call (<see cref="BlockTable{TValue}.AccessRun"/>).</summary>
    private PrefixMatch<TBlock> LookupLocked(ReadOnlySpan<BlockHash> chain, Span<int> slots, bool deferMove = false)
    {
        int matched = _blocks.MatchPrefix(chain, slots);
        var blocks = new TBlock[matched];
        for (int i = 0; i < matched; i++) blocks[i] = _blocks.ValueAt(slots[i]);
        _blocks.AccessRun(slots[..matched], deferMove);
        _lookups++;
        _hitTokens += (long)matched * BlockSize;
        _missTokens += (long)(chain.Length - matched) * BlockSize;
        return new PrefixMatch<TBlock>(blocks, chain[..matched].ToArray(), (long)matched * BlockSize);
    }

    /// <summary>The block cached under <paramref name="hash"/> (no access recorded); none: <see cref="CacheMissException"/>.</summary>
    public TBlock Get(BlockHash hash)
    {
        return TryGet(hash, out var block) ? block
            : throw new CacheMissException($"block {hash} is not cached", new Dictionary<string, object?> { ["block"] = hash.Hex });
    }

    /// <summary>The block cached under <paramref name="hash"/>, if any (no access recorded).</summary>
    public bool TryGet(BlockHash hash, out TBlock block)
    {
        lock (_lock)
        {
            int slot = _blocks.Find(hash);
            block = slot >= 0 ? _blocks.ValueAt(slot) : default!;
            return slot >= 0;
        }
    }

    /// <summary>Whether <paramref name="hash"/> is cached.</summary>
    public bool Contains(BlockHash hash) { lock (_lock) return _blocks.Find(hash) >= 0; }

    /// <summary>
    /// Removes these blocks (those not cached are ignored) and returns them for the caller to free. Blocks that
    /// continue them stay until evicted but can no longer be reached by a lookup. A pinned one:
    /// <see cref="HandlePinnedException"/>, and nothing is removed.
    /// </summary>
    public IReadOnlyList<KeyValuePair<BlockHash, TBlock>> Invalidate(IReadOnlyList<BlockHash> hashes)
    {
        ArgumentNullException.ThrowIfNull(hashes);
        lock (_lock)
        {
            foreach (var hash in hashes)
            {
                int pins = PinsOf(hash);
                if (pins > 0) throw new HandlePinnedException($"block {hash} is pinned {pins} time(s); it cannot be invalidated", new Dictionary<string, object?> { ["block"] = hash.Hex, ["pins"] = pins });
            }
            var removed = new List<KeyValuePair<BlockHash, TBlock>>();
            foreach (var hash in hashes)
            {
                int slot = _blocks.Find(hash);
                if (slot < 0) continue;
                removed.Add(new(hash, _blocks.ValueAt(slot)));
                _blocks.Remove(slot);
            }
            _invalidations += removed.Count;
            return removed;
        }
    }

    /// <summary>Evicts <paramref name="count"/> unpinned blocks in policy order and returns them (to free engine memory early). Errors as <see cref="EvictionManager.Evict"/>.</summary>
    public IReadOnlyList<KeyValuePair<BlockHash, TBlock>> Evict(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        lock (_lock)
        {
            var evicted = new List<KeyValuePair<BlockHash, TBlock>>(count);
            _blocks.EvictVictims(count, evicted);
            return evicted;
        }
    }

    /// <summary>Pins each block (pins nest): pinned blocks are never evicted or invalidated. One not cached: <see cref="CacheMissException"/>, and none is pinned.</summary>
    public void Pin(IReadOnlyList<BlockHash> hashes)
    {
        ArgumentNullException.ThrowIfNull(hashes);
        lock (_lock)
        {
            foreach (var hash in hashes)
                if (_blocks.Find(hash) < 0) throw new CacheMissException($"block {hash} is not cached, so it cannot be pinned", new Dictionary<string, object?> { ["block"] = hash.Hex });
            foreach (var hash in hashes) _blocks.Pin(_blocks.Find(hash));
        }
    }

    /// <summary>Drops one pin per block. A block without a pin: <see cref="RefCountUnderflowException"/>, and none is unpinned.</summary>
    public void Unpin(IReadOnlyList<BlockHash> hashes)
    {
        ArgumentNullException.ThrowIfNull(hashes);
        lock (_lock)
        {
            var needed = hashes.GroupBy(h => h).ToDictionary(g => g.Key, g => g.Count());
            foreach (var (hash, times) in needed)
            {
                int pins = PinsOf(hash);
                if (pins < times) throw new RefCountUnderflowException($"block {hash} has {pins} pin(s), asked to drop {times}", new Dictionary<string, object?> { ["block"] = hash.Hex, ["pins"] = pins });
            }
            foreach (var hash in hashes) _blocks.Unpin(_blocks.Find(hash));
        }
    }

    /// <summary>Pins held on <paramref name="hash"/>.</summary>
    public int PinCount(BlockHash hash) { lock (_lock) return PinsOf(hash); }

    /// <summary>The cache's counters.</summary>
    public PrefixCacheStats GetStats()
    {
        lock (_lock)
        {
            return new PrefixCacheStats(_lookups, _hitTokens, _missTokens, _inserts, _blocks.Evictions, _invalidations,
                _blocks.Count, _blocks.PinnedCount, Capacity, _blocks.RePrefillRate,
                _storeLookups, _storeHitTokens, _storeLoaded, _storeSaved);
        }
    }

    /// <summary>
    /// <see cref="Lookup"/> locally, then one batched EXISTS on the store for the blocks after the local match:
    /// the longest run present there continues the prefix. No store: <see cref="ConfigMissingException"/>; the node
    /// unreachable: <see cref="TransferFailedException"/>. A key the node answers with an error ends the run.
    /// </summary>
    public async Task<StoreLookup<TBlock>> LookupAsync(IReadOnlyList<BlockHash> hashes, CancellationToken ct = default)
    {
        var tier = RequireStore();
        var local = Lookup(hashes);
        var rest = hashes.Skip(local.NumBlocks).ToArray();
        int run = await tier.PresentRunAsync(rest, ct).ConfigureAwait(false);
        lock (_lock)
        {
            _storeLookups++;
            _storeHitTokens += (long)run * BlockSize;
        }
        return new StoreLookup<TBlock>(local, rest[..run], BlockSize);
    }

    /// <summary>
    /// <see cref="LookupAsync"/> of each chain: <see cref="LookupMany"/> locally, then one batched EXISTS on the store for
    /// the blocks after every chain's local match (one round trip for all of them). The same results and counters as one
    /// <see cref="LookupAsync"/> per chain in order. No store: <see cref="ConfigMissingException"/>; the node unreachable:
    /// <see cref="TransferFailedException"/> (the local lookups are counted by then).
    /// </summary>
    public async Task<IReadOnlyList<StoreLookup<TBlock>>> LookupManyAsync(IReadOnlyList<IReadOnlyList<BlockHash>> chains, CancellationToken ct = default)
    {
        var tier = RequireStore();
        var local = LookupMany(chains);
        var rests = new BlockHash[chains.Count][];
        for (int c = 0; c < rests.Length; c++) rests[c] = chains[c].Skip(local[c].NumBlocks).ToArray();
        int[] runs = await tier.PresentRunsAsync(rests, ct).ConfigureAwait(false);
        lock (_lock)
        {
            _storeLookups += rests.Length;
            _storeHitTokens += (long)runs.Sum() * BlockSize;
        }
        var found = new StoreLookup<TBlock>[rests.Length];
        for (int c = 0; c < found.Length; c++) found[c] = new StoreLookup<TBlock>(local[c], rests[c][..runs[c]], BlockSize);
        return found;
    }

    /// <summary>
    /// Loads blocks from the store, each straight into its buffer (which must be exactly the block's size), and
    /// returns how many arrived, from the first: a block gone from the node since the lookup, or one whose bytes fail
    /// the client's CRC check (<see cref="Kvasir.Client.KvStoreOptions.VerifyValueCrc"/>, counted in the store), ends the run (the
    /// engine computes the rest). Size disagreement: <see cref="MetadataMismatchException"/>; node down:
    /// <see cref="TransferFailedException"/>; no answer in time: <see cref="TransferTimeoutException"/>. Loaded
    /// blocks are not inserted: the engine inserts them with its own block values once they are in place.
    /// </summary>
    public async Task<int> LoadAsync(IReadOnlyList<BlockHash> hashes, IReadOnlyList<Memory<byte>> destinations, CancellationToken ct = default)
    {
        var tier = RequireStore();
        int loaded = await tier.LoadAsync(hashes, destinations, ct).ConfigureAwait(false);
        lock (_lock) _storeLoaded += loaded;
        return loaded;
    }

    /// <summary>
    /// Saves computed blocks to the store as one chained PUT; <paramref name="parent"/> is the block before the
    /// first (null when the first starts the prefix). Any block not stored throws <see cref="TransferFailedException"/>
    /// or <see cref="TransferTimeoutException"/> (blocks before it may be stored).
    /// </summary>
    public async Task SaveAsync(IReadOnlyList<BlockHash> hashes, IReadOnlyList<ReadOnlyMemory<byte>> values, BlockHash? parent = null, CancellationToken ct = default)
    {
        var tier = RequireStore();
        await tier.SaveAsync(hashes, values, parent, ct).ConfigureAwait(false);
        lock (_lock) _storeSaved += hashes.Count;
    }

    private int PinsOf(in BlockHash hash)
    {
        int slot = _blocks.Find(hash);
        return slot < 0 ? 0 : _blocks.PinsAt(slot);
    }

    private StoreTier RequireStore() => _store ?? throw new ConfigMissingException("this prefix cache has no store attached (PrefixCacheOptions.Store)");
}
