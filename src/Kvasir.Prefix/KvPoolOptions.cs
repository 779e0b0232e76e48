namespace Kvasir.Prefix;

/// <summary>Budgets and layout of a <see cref="KvPool"/>. At least one of <see cref="MaxTokens"/> and <see cref="MaxBytes"/> must be set.</summary>
public sealed class KvPoolOptions
{
    /// <summary>
    /// Token budget: the most tokens (block mode: whole blocks × <see cref="BlockSize"/>) held by live handles
    /// at once. Default none. Must be positive when set. Too small and every prefill gets <see cref="PoolFullException"/>;
    /// larger than the engine's real KV memory and the pool promises memory the engine does not have.
    /// </summary>
    public long? MaxTokens { get; init; }

    /// <summary>
    /// Byte budget: the most bytes (tokens × <see cref="BytesPerToken"/>) held at once. Default none. Needs
    /// <see cref="BytesPerToken"/> (else <see cref="ConfigMissingException"/>).
    /// </summary>
    public long? MaxBytes { get; init; }

    /// <summary>
    /// KV bytes of one token (2 × layers × kv heads × head dim × dtype size). Default 0: unknown, handles report
    /// 0 bytes and only a token budget can apply.
    /// </summary>
    public long BytesPerToken { get; init; }

    /// <summary>
    /// Fixed-size blocks of this many tokens; default null: token ranges. In block mode an allocation is rounded
    /// up to whole blocks (charged in full against the budgets) and gets block indices from 0 .. total blocks − 1
    /// in <see cref="KvHandle.BlockIds"/>, reused after frees.
    /// </summary>
    public int? BlockSize { get; init; }

    /// <summary>
    /// The most tokens one allocation may take. Default none (the whole budget). A larger request throws
    /// <see cref="BudgetExceededException"/> at once, even when the pool is empty.
    /// </summary>
    public long? MaxTokensPerRequest { get; init; }

    /// <summary>This process's device rank, stamped on every handle (<see cref="KvHandle.Rank"/>). Default 0.</summary>
    public int Rank { get; init; }

    /// <summary>This process's node rank in a multi-node engine, stamped on handles. Default null (single node).</summary>
    public int? NodeRank { get; init; }
}
