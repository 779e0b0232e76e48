namespace Kvasir.Prefix;

/// <summary>
/// A live allocation from a <see cref="KvPool"/>: the tokens (and bytes) it holds against the pool's budgets,
/// where they live and who owns them. Descriptive fields never change; <see cref="RefCount"/>,
/// <see cref="PinCount"/> and <see cref="IsFreed"/> change through the pool only. After the pool has taken the
/// memory back (<see cref="IsFreed"/>) every pool call with this handle is rejected.
/// </summary>
public sealed class KvHandle
{
    internal KvHandle(KvPool pool, string? requestId, long numTokens, long chargedTokens, long tokenStart, long bytes, int[] blockIds,
        string dtype, string device, string layout, nint memoryPtr, int rank, int? nodeRank)
    {
        Pool = pool;
        HandleId = Guid.NewGuid();
        RequestId = requestId;
        NumTokens = numTokens;
        ChargedTokens = chargedTokens;
        TokenStart = tokenStart;
        Bytes = bytes;
        BlockIds = blockIds;
        DType = dtype;
        Device = device;
        Layout = layout;
        MemoryPtr = memoryPtr;
        Rank = rank;
        NodeRank = nodeRank;
        RefCount = 1;
    }

    internal KvPool Pool { get; }

    /// <summary>Unique id (a random UUID), as sagellm's <c>handle_id</c>.</summary>
    public Guid HandleId { get; }

    /// <summary>The request this memory serves; null when not given.</summary>
    public string? RequestId { get; }

    /// <summary>Tokens asked for.</summary>
    public long NumTokens { get; }

    /// <summary>Tokens charged against the budget: <see cref="NumTokens"/>, rounded up to whole blocks in block mode.</summary>
    public long ChargedTokens { get; }

    /// <summary>Position of the first token in the request's sequence (as given to <see cref="KvPool.Alloc"/>).</summary>
    public long TokenStart { get; }

    /// <summary>One past the last token: <see cref="TokenStart"/> + <see cref="NumTokens"/>.</summary>
    public long TokenEnd => TokenStart + NumTokens;

    /// <summary>Bytes charged: <see cref="ChargedTokens"/> × the pool's bytes per token (0 when unknown).</summary>
    public long Bytes { get; }

    /// <summary>Block indices in block mode (distinct among live handles), empty in token-range mode.</summary>
    public IReadOnlyList<int> BlockIds { get; }

    /// <summary>Element type of the KV tensors, as the caller named it (default "float16").</summary>
    public string DType { get; }

    /// <summary>Device the KV lives on, as the caller named it (default "cpu").</summary>
    public string Device { get; }

    /// <summary>Memory layout, as the caller named it (default "contiguous").</summary>
    public string Layout { get; }

    /// <summary>Address of the KV memory when the engine gave one; 0 otherwise. The pool accounts budgets, it never owns or touches memory.</summary>
    public nint MemoryPtr { get; }

    /// <summary>Device rank of the process that allocated it.</summary>
    public int Rank { get; }

    /// <summary>Node rank of the process that allocated it; null on a single node.</summary>
    public int? NodeRank { get; }

    /// <summary>References held; the memory goes back to the pool when the last one is freed.</summary>
    public int RefCount { get; internal set; }

    /// <summary>Pins held; a pinned handle cannot be freed.</summary>
    public int PinCount { get; internal set; }

    /// <summary>True once the memory went back to the pool.</summary>
    public bool IsFreed { get; internal set; }

    /// <summary>True when the handle's memory is on device rank <paramref name="rank"/>.</summary>
    public bool IsLocal(int rank) => Rank == rank;

    /// <summary>The handle as sagellm's <c>to_dict()</c> gives it (snake_case names; handle_id as a string).</summary>
    public IReadOnlyDictionary<string, object?> ToDictionary() => new Dictionary<string, object?>
    {
        ["handle_id"] = HandleId.ToString(),
        ["request_id"] = RequestId,
        ["num_tokens"] = NumTokens,
        ["token_start"] = TokenStart,
        ["token_end"] = TokenEnd,
        ["dtype"] = DType,
        ["device"] = Device,
        ["layout"] = Layout,
        ["memory_ptr"] = (long)MemoryPtr,
        ["rank"] = Rank,
        ["node_rank"] = NodeRank,
        ["bytes"] = Bytes,
        ["block_ids"] = BlockIds.ToArray(),
        ["ref_count"] = RefCount,
        ["pin_count"] = PinCount,
    };
}
