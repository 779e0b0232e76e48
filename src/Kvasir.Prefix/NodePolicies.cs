using Kvasir.Prefix.Internal;

namespace Kvasir.Prefix;

/// <summary>
/// A policy that the node also runs (docs/eviction.md), with the node's algorithm and parameters: given to a
/// <see cref="PrefixCache{TBlock}"/> or an <see cref="EvictionManager"/>, it keeps its state in arrays beside the cache's
/// slot array and makes the choices the node makes on the same requests (checked on a production trace slice against
/// the node's simulator: tests/vectors/eviction_trace.json). These policies are not called per block by hash: their
/// <see cref="IEvictionPolicy"/> methods throw <see cref="NotSupportedException"/>; a policy instance belongs to one cache.
/// </summary>
public abstract class NodePolicy : IEvictionPolicy
{
    private protected NodePolicy()
    {
    }

    /// <inheritdoc/>
    public abstract string Name { get; }

    internal abstract SlotOrder CreateOrder();

    /// <inheritdoc/>
    public void OnInsert(BlockHash block) => throw NotPerBlock();

    /// <inheritdoc/>
    public void OnAccess(BlockHash block) => throw NotPerBlock();

    /// <inheritdoc/>
    public void OnRemove(BlockHash block) => throw NotPerBlock();

    /// <inheritdoc/>
    public IEnumerable<BlockHash> Candidates() => throw NotPerBlock();

    private NotSupportedException NotPerBlock()
        => new($"the {Name} policy is kept by the PrefixCache or EvictionManager it is given to, not called per block");
}

/// <summary>
/// LFU with dynamic aging (LFU-DA), the node's <c>lfu</c>: priority = the cache's age + reads (1 at insert, capped at
/// 65,535); the lowest goes first and its priority becomes the age, so a newcomer starts just above the last victim and
/// a block that was popular once sinks as the age passes its count. Ties: the block reordered longest ago. O(log n) per
/// insert, hit and eviction; 28 bytes a block beside the cache's slot.
/// </summary>
public sealed class LfuPolicy : NodePolicy
{
    /// <inheritdoc/>
    public override string Name => "lfu";

    internal override SlotOrder CreateOrder() => new LfuOrder();
}

/// <summary>
/// S3-FIFO (Yang et al., SOSP 2023), the node's <c>s3fifo</c>: a small FIFO for new blocks (searched while it holds a
/// tenth of them), a main FIFO with up to three second chances, and a ghost queue of keys recently dropped from the
/// small one (a block stored again while remembered goes straight to main). One-hit blocks leave quickly. O(1) amortised
/// per operation; 10 bytes a block beside the cache's slot, plus about 40 per remembered key (at most one per block).
/// </summary>
public sealed class S3FifoPolicy : NodePolicy
{
    /// <inheritdoc/>
    public override string Name => "s3fifo";

    internal override SlotOrder CreateOrder() => new S3FifoOrder();
}

/// <summary>
/// Chain-aware LFU with dynamic aging, the node's default <c>chainlfu</c>: value = 1 + reads (capped at 8) + 1 while a
/// cached block continues this one, priority = age + value, the lowest evicted first. So among blocks of equal use a
/// chain is evicted from its tail and what stays of it is reachable; a block whose parent is gone is worth nothing. In a
/// cache the parent of a block is the block before it in the insert that stored it (the first one's: the insert's
/// parent argument). With <c>remember</c> (<c>chainsketch</c>) reads are also counted in a frequency sketch that
/// outlives the blocks, so a block evicted and stored again starts from its past reads. O(log n) per insert, hit, child
/// change and eviction; 44 bytes a block beside the cache's slot (52 with the sketch).
/// </summary>
public sealed class ChainLfuPolicy(bool remember = false) : NodePolicy
{
    /// <summary>Whether reads are remembered across evictions (the <c>chainsketch</c> variant).</summary>
    public bool Remember { get; } = remember;

    /// <inheritdoc/>
    public override string Name => Remember ? "chainsketch" : "chainlfu";

    internal override SlotOrder CreateOrder() => new ChainLfuOrder(Remember);
}
