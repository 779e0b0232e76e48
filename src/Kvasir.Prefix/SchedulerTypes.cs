namespace Kvasir.Prefix;

/// <summary>Where a request is in its life, as the scheduler decided for this step.</summary>
public enum RequestPhase
{
    /// <summary>Its prompt (or a chunk of it) is computed this step; the first time, its prefix is looked up.</summary>
    Prefill,
    /// <summary>One or more tokens were appended since the last step; it needs room for them.</summary>
    Decode,
    /// <summary>Taken off the device: its memory is freed, its cached blocks stay cached (a later prefill finds them).</summary>
    Preempted,
    /// <summary>Done: its memory is freed; its full blocks stay cached.</summary>
    Finished,
}

/// <summary>
/// One request as the scheduler hands it to <see cref="SchedulerBridge"/>: its id, every token of its sequence so
/// far (prompt and generated), its phase this step and its priority (higher is planned first; default 0).
/// </summary>
public sealed record ScheduledRequest(string RequestId, IReadOnlyList<long> TokenIds, RequestPhase Phase, int Priority = 0);

/// <summary>A block to bring from the store into <see cref="Handle"/>'s memory before the step runs.</summary>
public sealed record BlockLoad(string RequestId, BlockHash Hash, KvHandle Handle);

/// <summary>A newly computed (or loaded) full block: inserted into the prefix cache by <see cref="SchedulerBridge.Complete"/>; saved to the store when it was computed.</summary>
public sealed record BlockSave(string RequestId, BlockHash Hash, KvHandle Handle, BlockHash? Parent, bool Computed);

/// <summary>
/// What the bridge decided for one request. <see cref="CachedTokens"/> need no prefill (<see cref="LocalTokens"/>
/// already in engine memory, the rest loaded from the store); <see cref="ComputeTokens"/> must be computed into
/// <see cref="BlocksToCompute"/>. <see cref="Deferred"/>: the pool had no room even after evicting unpinned cached
/// blocks; nothing was allocated and the scheduler should retry it later.
/// </summary>
public sealed record RequestPlan(
    string RequestId, RequestPhase Phase, long LocalTokens, long CachedTokens, long ComputeTokens,
    IReadOnlyList<BlockLoad> BlocksToLoad, IReadOnlyList<KvHandle> BlocksToCompute,
    IReadOnlyList<KvHandle> Allocated, IReadOnlyList<KvHandle> Freed, IReadOnlyList<BlockSave> Inserts, bool Deferred);

/// <summary>One step's decisions: per request, and the pool and cache operations over all of them.</summary>
public sealed record BridgePlan(IReadOnlyList<RequestPlan> Requests, int Lookups)
{
    /// <summary>Handles allocated this step.</summary>
    public IEnumerable<KvHandle> Allocations => Requests.SelectMany(r => r.Allocated);

    /// <summary>Handles released this step (the request's references; cached blocks stay with the cache).</summary>
    public IEnumerable<KvHandle> Frees => Requests.SelectMany(r => r.Freed);

    /// <summary>Blocks to load from the store before the step.</summary>
    public IEnumerable<BlockLoad> Loads => Requests.SelectMany(r => r.BlocksToLoad);

    /// <summary>Full blocks the step completes, inserted into the cache by <see cref="SchedulerBridge.Complete"/>.</summary>
    public IEnumerable<BlockSave> Inserts => Requests.SelectMany(r => r.Inserts);

    /// <summary>Newly computed full blocks to save to the store after the step.</summary>
    public IEnumerable<BlockSave> Saves => Inserts.Where(s => s.Computed);

    /// <summary>The plan of <paramref name="requestId"/>.</summary>
    public RequestPlan For(string requestId) => Requests.Single(r => r.RequestId == requestId);
}
