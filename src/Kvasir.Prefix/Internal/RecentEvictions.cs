namespace Kvasir.Prefix.Internal;

/// <summary>
/// The hashes of the last N evicted blocks, oldest forgotten first: an insert of one of them is a re-prefill (work
/// done twice). About 100 bytes per remembered hash. Not thread-safe (its table's owner serialises calls).
/// </summary>
internal sealed class RecentEvictions(int capacity)
{
    private readonly HashSet<BlockHash> _hashes = [];
    private readonly Queue<BlockHash> _order = new();

    public void Remember(in BlockHash hash)
    {
        if (capacity == 0 || !_hashes.Add(hash)) return;
        _order.Enqueue(hash);
        while (_order.Count > capacity) _hashes.Remove(_order.Dequeue());
    }

    /// <summary>True when <paramref name="hash"/> was remembered (and forgets it: one re-prefill per eviction).</summary>
    public bool Forget(in BlockHash hash) => _hashes.Count > 0 && _hashes.Remove(hash);
}
