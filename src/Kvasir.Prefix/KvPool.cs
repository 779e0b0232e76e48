namespace Kvasir.Prefix;

/// <summary>
/// Budgets of KV memory in tokens and bytes, handed out as <see cref="KvHandle"/>s, in token ranges or in
/// fixed-size blocks (<see cref="KvPoolOptions.BlockSize"/>). Handles carry reference counts (the memory
/// returns to the pool when the last reference is freed) and pins (a pinned handle cannot be freed).
/// Thread-safe: every call takes one lock, so the budgets hold at every instant, under any interleaving.
/// The pool accounts; it does not allocate device memory.
/// </summary>
public sealed class KvPool
{
    private readonly object _lock = new();
    private readonly Dictionary<Guid, KvHandle> _live = [];
    private readonly Stack<int>? _freeBlocks;
    private readonly KvPoolOptions _options;
    private long _usedTokens, _usedBytes, _peakTokens, _peakBytes, _allocations, _frees;

    /// <summary>A pool with <paramref name="options"/>; see <see cref="KvPoolOptions"/> for defaults and limits.</summary>
    public KvPool(KvPoolOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxTokens is null && options.MaxBytes is null)
            throw new ConfigMissingException("a KV pool needs a token budget (MaxTokens) or a byte budget (MaxBytes)");
        if (options.MaxTokens is <= 0) throw Invalid("MaxTokens", options.MaxTokens, "must be positive");
        if (options.MaxBytes is <= 0) throw Invalid("MaxBytes", options.MaxBytes, "must be positive");
        if (options.BytesPerToken < 0) throw Invalid("BytesPerToken", options.BytesPerToken, "must be 0 (unknown) or positive");
        if (options.BlockSize is <= 0) throw Invalid("BlockSize", options.BlockSize, "must be positive");
        if (options.MaxTokensPerRequest is <= 0) throw Invalid("MaxTokensPerRequest", options.MaxTokensPerRequest, "must be positive");
        if (options.MaxBytes is not null && options.BytesPerToken == 0)
            throw new ConfigMissingException("a byte budget (MaxBytes) needs BytesPerToken", new Dictionary<string, object?> { ["max_bytes"] = options.MaxBytes });
        _options = options;
        if (options.BlockSize is int blockSize)
        {
            long tokens = Math.Min(options.MaxTokens ?? long.MaxValue, options.MaxBytes is long b ? b / options.BytesPerToken : long.MaxValue);
            long blocks = tokens / blockSize;
            if (blocks < 1 || blocks > Array.MaxLength) throw Invalid("BlockSize", blockSize, $"the budgets hold {blocks} blocks of it; need 1 .. {Array.MaxLength}");
            TotalBlocks = (int)blocks;
            _freeBlocks = new Stack<int>(TotalBlocks);
            for (int i = TotalBlocks - 1; i >= 0; i--) _freeBlocks.Push(i);
        }
    }

    /// <summary>A pool with a token budget only, as sagellm's <c>KVPool(max_tokens, node_rank=None)</c>.</summary>
    public KvPool(long maxTokens, int? nodeRank = null) : this(new KvPoolOptions { MaxTokens = maxTokens, NodeRank = nodeRank })
    {
    }

    /// <summary>Token budget, or null when only bytes are budgeted.</summary>
    public long? MaxTokens => _options.MaxTokens;

    /// <summary>Byte budget, or null when only tokens are budgeted.</summary>
    public long? MaxBytes => _options.MaxBytes;

    /// <summary>Tokens per block in block mode; null in token-range mode.</summary>
    public int? BlockSize => _options.BlockSize;

    /// <summary>Blocks the budgets hold in block mode; 0 in token-range mode.</summary>
    public int TotalBlocks { get; }

    /// <summary>Tokens charged to live handles now.</summary>
    public long UsedTokens { get { lock (_lock) return _usedTokens; } }

    /// <summary>Bytes charged to live handles now.</summary>
    public long UsedBytes { get { lock (_lock) return _usedBytes; } }

    /// <summary>Highest <see cref="UsedTokens"/> ever seen; never above the token budget.</summary>
    public long PeakTokens { get { lock (_lock) return _peakTokens; } }

    /// <summary>Highest <see cref="UsedBytes"/> ever seen; never above the byte budget.</summary>
    public long PeakBytes { get { lock (_lock) return _peakBytes; } }

    /// <summary>Tokens still free under the token budget (under the byte budget when only bytes are budgeted).</summary>
    public long FreeTokens
    {
        get
        {
            lock (_lock)
            {
                long byTokens = _options.MaxTokens is long t ? t - _usedTokens : long.MaxValue;
                long byBytes = _options.MaxBytes is long b ? (b - _usedBytes) / _options.BytesPerToken : long.MaxValue;
                return Math.Min(byTokens, byBytes);
            }
        }
    }

    /// <summary>Live handles now.</summary>
    public int LiveHandles { get { lock (_lock) return _live.Count; } }

    /// <summary>Allocations that succeeded so far.</summary>
    public long Allocations { get { lock (_lock) return _allocations; } }

    /// <summary>Handles whose memory went back to the pool so far.</summary>
    public long Frees { get { lock (_lock) return _frees; } }

    /// <summary>
    /// Takes <paramref name="numTokens"/> (at least 1) from the budgets. More than the whole budget or
    /// <see cref="KvPoolOptions.MaxTokensPerRequest"/>: <see cref="BudgetExceededException"/>. Not enough tokens
    /// free now: <see cref="PoolFullException"/>; not enough bytes free now: <see cref="MemoryExhaustedException"/>
    /// (both retryable). Nothing is taken when it throws.
    /// </summary>
    public KvHandle Alloc(long numTokens, string? requestId = null, long tokenStart = 0, string dtype = "float16",
        string device = "cpu", string layout = "contiguous", nint memoryPtr = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numTokens, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(tokenStart);
        int blockSize = _options.BlockSize ?? 1;
        long charged = checked((numTokens + blockSize - 1) / blockSize * blockSize);
        long bytes = checked(charged * _options.BytesPerToken);
        var context = new Dictionary<string, object?>
        {
            ["requested_tokens"] = numTokens,
            ["charged_tokens"] = charged,
            ["requested_bytes"] = bytes,
            ["max_tokens"] = _options.MaxTokens,
            ["max_bytes"] = _options.MaxBytes,
            ["request_id"] = requestId,
        };
        if (charged > (_options.MaxTokens ?? long.MaxValue) || bytes > (_options.MaxBytes ?? long.MaxValue) || numTokens > (_options.MaxTokensPerRequest ?? long.MaxValue))
            throw new BudgetExceededException($"{numTokens} tokens ({bytes} bytes) can never fit this pool's budget", context);
        lock (_lock)
        {
            if (_usedTokens + charged > (_options.MaxTokens ?? long.MaxValue))
            {
                context["used_tokens"] = _usedTokens;
                throw new PoolFullException($"{numTokens} tokens do not fit: {_usedTokens} of {_options.MaxTokens} tokens are in use", context);
            }
            if (_usedBytes + bytes > (_options.MaxBytes ?? long.MaxValue))
            {
                context["used_bytes"] = _usedBytes;
                throw new MemoryExhaustedException($"{bytes} bytes do not fit: {_usedBytes} of {_options.MaxBytes} bytes are in use", context);
            }
            int[] blockIds = [];
            if (_freeBlocks is not null)
            {
                blockIds = new int[charged / blockSize];
                for (int i = 0; i < blockIds.Length; i++) blockIds[i] = _freeBlocks.Pop();
            }
            var handle = new KvHandle(this, requestId, numTokens, charged, tokenStart, bytes, blockIds, dtype, device, layout, memoryPtr, _options.Rank, _options.NodeRank);
            _live.Add(handle.HandleId, handle);
            _usedTokens += charged;
            _usedBytes += bytes;
            _peakTokens = Math.Max(_peakTokens, _usedTokens);
            _peakBytes = Math.Max(_peakBytes, _usedBytes);
            _allocations++;
            return handle;
        }
    }

    /// <summary>
    /// Drops one reference; when it was the last, the memory goes back to the pool and this returns true.
    /// A handle of another pool: <see cref="InvalidHandleException"/>. Already back in the pool:
    /// <see cref="DoubleFreeException"/>. Pinned: <see cref="HandlePinnedException"/> (nothing changes).
    /// </summary>
    public bool Free(KvHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        lock (_lock)
        {
            CheckOwned(handle);
            if (handle.IsFreed)
                throw new DoubleFreeException($"handle {handle.HandleId} was already freed", Describe(handle));
            if (handle.PinCount > 0)
                throw new HandlePinnedException($"handle {handle.HandleId} is pinned {handle.PinCount} time(s); unpin before freeing", Describe(handle));
            if (--handle.RefCount > 0) return false;
            handle.IsFreed = true;
            _live.Remove(handle.HandleId);
            _usedTokens -= handle.ChargedTokens;
            _usedBytes -= handle.Bytes;
            if (_freeBlocks is not null)
                foreach (int block in handle.BlockIds) _freeBlocks.Push(block);
            _frees++;
            return true;
        }
    }

    /// <summary>Adds a reference (another owner will <see cref="Free"/> it too). A freed or foreign handle: <see cref="InvalidHandleException"/>.</summary>
    public void AddRef(KvHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        lock (_lock)
        {
            CheckLive(handle);
            handle.RefCount++;
        }
    }

    /// <summary>Pins the handle (pins nest): <see cref="Free"/> refuses it until every pin is dropped. Freed or foreign: <see cref="InvalidHandleException"/>.</summary>
    public void Pin(KvHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        lock (_lock)
        {
            CheckLive(handle);
            handle.PinCount++;
        }
    }

    /// <summary>Drops one pin; with none: <see cref="RefCountUnderflowException"/>. Freed or foreign: <see cref="InvalidHandleException"/>.</summary>
    public void Unpin(KvHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        lock (_lock)
        {
            CheckLive(handle);
            if (handle.PinCount == 0)
                throw new RefCountUnderflowException($"handle {handle.HandleId} has no pin to drop", Describe(handle));
            handle.PinCount--;
        }
    }

    /// <summary>The live handle with <paramref name="handleId"/>; none: <see cref="HandleNotFoundException"/>.</summary>
    public KvHandle Get(Guid handleId)
    {
        lock (_lock)
        {
            return _live.TryGetValue(handleId, out var handle) ? handle
                : throw new HandleNotFoundException($"no live handle {handleId}", new Dictionary<string, object?> { ["handle_id"] = handleId.ToString() });
        }
    }

    /// <summary>The live handle with <paramref name="handleId"/>, or null.</summary>
    public KvHandle? TryGet(Guid handleId)
    {
        lock (_lock) return _live.GetValueOrDefault(handleId);
    }

    /// <summary>Live handles of <paramref name="requestId"/> (a snapshot).</summary>
    public IReadOnlyList<KvHandle> HandlesOf(string requestId)
    {
        lock (_lock) return _live.Values.Where(h => h.RequestId == requestId).ToArray();
    }

    /// <summary>Counters by snake_case name, for logs and the Python parity (<c>get_stats()</c>).</summary>
    public IReadOnlyDictionary<string, long> GetStats()
    {
        lock (_lock)
        {
            return new Dictionary<string, long>
            {
                ["used_tokens"] = _usedTokens,
                ["used_bytes"] = _usedBytes,
                ["peak_tokens"] = _peakTokens,
                ["peak_bytes"] = _peakBytes,
                ["live_handles"] = _live.Count,
                ["allocations"] = _allocations,
                ["frees"] = _frees,
                ["max_tokens"] = _options.MaxTokens ?? -1,
                ["max_bytes"] = _options.MaxBytes ?? -1,
            };
        }
    }

    private void CheckOwned(KvHandle handle)
    {
        if (!ReferenceEquals(handle.Pool, this))
            throw new InvalidHandleException($"handle {handle.HandleId} belongs to another pool", Describe(handle));
    }

    private void CheckLive(KvHandle handle)
    {
        CheckOwned(handle);
        if (handle.IsFreed)
            throw new InvalidHandleException($"handle {handle.HandleId} was freed", Describe(handle));
    }

    private static Dictionary<string, object?> Describe(KvHandle handle) => new()
    {
        ["handle_id"] = handle.HandleId.ToString(),
        ["request_id"] = handle.RequestId,
        ["num_tokens"] = handle.NumTokens,
        ["ref_count"] = handle.RefCount,
        ["pin_count"] = handle.PinCount,
    };

    private static ConfigInvalidException Invalid(string option, object? value, string why)
        => new($"{option} = {value}: {why}", new Dictionary<string, object?> { ["option"] = option, ["value"] = value });
}
