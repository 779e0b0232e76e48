using Kvasir.Prefix.Internal;

namespace Kvasir.Prefix;

/// <summary>
/// Least recently used first: a hit moves a block to the back of the line. O(1) per call. Given to a
/// <see cref="PrefixCache{TBlock}"/> or an <see cref="EvictionManager"/>, the order is kept in the cache's own slot
/// array and this object's methods are not called; called directly, it keeps the order itself.
/// </summary>
public sealed class LruPolicy : IEvictionPolicy, IIntrusiveOrder
{
    private readonly LinkedOrder _order = new();

    /// <inheritdoc/>
    public string Name => "lru";

    bool IIntrusiveOrder.MovesOnAccess => true;

    /// <inheritdoc/>
    public void OnInsert(BlockHash block) => _order.AddLast(block);

    /// <inheritdoc/>
    public void OnAccess(BlockHash block) => _order.MoveToLast(block);

    /// <inheritdoc/>
    public void OnRemove(BlockHash block) => _order.Remove(block);

    /// <inheritdoc/>
    public IEnumerable<BlockHash> Candidates() => _order.InOrder();
}

/// <summary>
/// First in, first out: the oldest insert goes first, hits do not matter. O(1) per call. Like <see cref="LruPolicy"/>,
/// kept in the cache's slot array when given to a cache or manager.
/// </summary>
public sealed class FifoPolicy : IEvictionPolicy, IIntrusiveOrder
{
    private readonly LinkedOrder _order = new();

    /// <inheritdoc/>
    public string Name => "fifo";

    bool IIntrusiveOrder.MovesOnAccess => false;

    /// <inheritdoc/>
    public void OnInsert(BlockHash block) => _order.AddLast(block);

    /// <inheritdoc/>
    public void OnAccess(BlockHash block)
    {
    }

    /// <inheritdoc/>
    public void OnRemove(BlockHash block) => _order.Remove(block);

    /// <inheritdoc/>
    public IEnumerable<BlockHash> Candidates() => _order.InOrder();
}

/// <summary>A linked list with an index: add, move to the back and remove in O(1). Allocated on first use.</summary>
internal sealed class LinkedOrder
{
    private LinkedList<BlockHash>? _list;
    private Dictionary<BlockHash, LinkedListNode<BlockHash>>? _nodes;

    public void AddLast(BlockHash block)
    {
        _list ??= new();
        _nodes ??= [];
        if (_nodes.ContainsKey(block)) return;
        _nodes[block] = _list.AddLast(block);
    }

    public void MoveToLast(BlockHash block)
    {
        if (_nodes is null || _list is null || !_nodes.TryGetValue(block, out var node)) return;
        _list.Remove(node);
        _list.AddLast(node);
    }

    public void Remove(BlockHash block)
    {
        if (_nodes is not null && _list is not null && _nodes.Remove(block, out var node)) _list.Remove(node);
    }

    public IEnumerable<BlockHash> InOrder()
    {
        for (var node = _list?.First; node is not null; node = node.Next) yield return node.Value;
    }
}
