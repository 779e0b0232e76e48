namespace Kvasir.Prefix;

/// <summary>Least recently used first: a hit moves a block to the back of the line. O(1) per call.</summary>
public sealed class LruPolicy : IEvictionPolicy
{
    private readonly LinkedOrder _order = new();

    /// <inheritdoc/>
    public string Name => "lru";

    /// <inheritdoc/>
    public void OnInsert(BlockHash block) => _order.AddLast(block);

    /// <inheritdoc/>
    public void OnAccess(BlockHash block) => _order.MoveToLast(block);

    /// <inheritdoc/>
    public void OnRemove(BlockHash block) => _order.Remove(block);

    /// <inheritdoc/>
    public IEnumerable<BlockHash> Candidates() => _order.InOrder();
}

/// <summary>First in, first out: the oldest insert goes first, hits do not matter. O(1) per call.</summary>
public sealed class FifoPolicy : IEvictionPolicy
{
    private readonly LinkedOrder _order = new();

    /// <inheritdoc/>
    public string Name => "fifo";

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

/// <summary>A linked list with an index: add, move to the back and remove in O(1).</summary>
internal sealed class LinkedOrder
{
    private readonly LinkedList<BlockHash> _list = new();
    private readonly Dictionary<BlockHash, LinkedListNode<BlockHash>> _nodes = [];

    public void AddLast(BlockHash block)
    {
        if (_nodes.ContainsKey(block)) return;
        _nodes[block] = _list.AddLast(block);
    }

    public void MoveToLast(BlockHash block)
    {
        if (!_nodes.TryGetValue(block, out var node)) return;
        _list.Remove(node);
        _list.AddLast(node);
    }

    public void Remove(BlockHash block)
    {
        if (_nodes.Remove(block, out var node)) _list.Remove(node);
    }

    public IEnumerable<BlockHash> InOrder()
    {
        for (var node = _list.First; node is not null; node = node.Next) yield return node.Value;
    }
}
