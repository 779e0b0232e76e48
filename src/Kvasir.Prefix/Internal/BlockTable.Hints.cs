namespace Kvasir.Prefix.Internal;

/// <summary>
/// <see cref="BlockTable{TValue}"/>'s reads ahead for batched lookups (<see cref="PrefixCache{TBlock}"/>'s
/// <c>LookupMany</c> on a table beyond the caches): they read or ask the CPU for what <see cref="MatchPrefix"/> of the
/// chains to come will read, and change nothing.
/// </summary>
internal sealed partial class BlockTable<TValue>
{
    /// <summary>
    /// Reads, without changing anything, what <see cref="MatchPrefix"/> of chains starting with these blocks will
    /// read: the index bucket of each chain's first block (and of its second where the first's bucket has no step
    /// bits), then the entries a fixed step apart that the walk will guess, then under LRU the entries of each chain's two outer neighbours in the order (the links its move
    /// rewrites). Called for a group of chains before matching them one by one, so the far loads of the group are in
    /// flight together instead of one chain's after another's. Plain loads, for CPUs without the prefetch
    /// instruction of <see cref="Kvasir.Net.CacheHints"/> (where it exists, <see cref="HintBucket"/>,
    /// <see cref="HintEntries"/> and <see cref="HintNeighbours"/> serve instead): nothing waits for their values, which
    /// are summed only so the loads are not optimised away.
    /// </summary>
    /// <param name="firsts">each chain's first block</param>
    /// <param name="seconds">each chain's second block (for a one-block chain, its first again)</param>
    /// <param name="lengths">each chain's length in blocks</param>
    public long Prefetch(ReadOnlySpan<BlockHash> firsts, ReadOnlySpan<BlockHash> seconds, ReadOnlySpan<int> lengths)
    {
        var buckets = _buckets;
        var entries = _entries;
        long touched = 0;
        for (int c = 0; c < firsts.Length; c++) touched += (long)buckets[Home(Tag(firsts[c]))];
        Span<int> ends = firsts.Length <= 64 ? stackalloc int[2 * firsts.Length] : new int[2 * firsts.Length];
        for (int c = 0; c < firsts.Length; c++)
        {
            ends[2 * c] = ends[2 * c + 1] = None;
            if (!GuessRun(firsts[c], seconds[c], out int first, out int step)) continue;
            int last = first;
            for (int k = 0, slot = first; k < lengths[c] && (uint)slot < (uint)_used; k++, slot += step)
            {
                touched += entries[slot].Prev ^ (long)entries[slot].Hash.Prefix;
                last = slot;
            }
            (ends[2 * c], ends[2 * c + 1]) = (first, last);
        }
        // Under LRU a matched chain leaves the order between its first block's predecessor and its last block's
        // successor, whose links the move rewrites: their entries are the last far reads of a lookup.
        if (_moveOnAccess)
        {
            for (int c = 0; c < firsts.Length; c++)
            {
                if (ends[2 * c] == None) continue;
                int before = entries[ends[2 * c]].Prev, after = entries[ends[2 * c + 1]].Next;
                if (before >= 0) touched += entries[before].Next;
                if (after >= 0) touched += entries[after].Prev;
            }
        }
        return touched;
    }

    /// <summary>Asks the CPU for the index bucket where a probe for <paramref name="first"/> starts (a prefetch: nothing waits for it, nothing changes).</summary>
    public void HintBucket(in BlockHash first) => Kvasir.Net.CacheHints.Prefetch(ref _buckets[Home(Tag(first))]);

    /// <summary>
    /// Reads the bucket of <paramref name="chain"/>'s first block (asked for earlier by <see cref="HintBucket"/>; without
    /// step bits also its second block's) and asks for the entries <see cref="MatchPrefix"/> will guess; returns the first
    /// and the last slot guessed, or (-1, -1). Changes nothing.
    /// </summary>
    public (int First, int Last) HintEntries(ReadOnlySpan<BlockHash> chain)
    {
        if (chain.IsEmpty || !GuessRun(chain[0], chain[chain.Length > 1 ? 1 : 0], out int first, out int step)) return (None, None);
        var entries = _entries;
        int last = first;
        for (int k = 0, slot = first; k < chain.Length && (uint)slot < (uint)_used; k++, slot += step)
        {
            Kvasir.Net.CacheHints.Prefetch(ref entries[slot]);
            last = slot;
        }
        return (first, last);
    }

    /// <summary>
    /// Under LRU, asks for the entries of a chain's two outer neighbours in the order, whose links its move rewrites
    /// (<paramref name="first"/> and <paramref name="last"/> from <see cref="HintEntries"/>, whose entries are read here:
    /// asked for earlier). Changes nothing.
    /// </summary>
    public void HintNeighbours(int first, int last)
    {
        if (!_moveOnAccess || first == None) return;
        var entries = _entries;
        int before = entries[first].Prev, after = entries[last].Next;
        if (before >= 0) Kvasir.Net.CacheHints.Prefetch(ref entries[before]);
        if (after >= 0) Kvasir.Net.CacheHints.Prefetch(ref entries[after]);
    }

    /// <summary>
    /// The slots <see cref="MatchPrefix"/> will guess for a chain starting with <paramref name="first"/> then
    /// <paramref name="second"/> (for a one-block chain, <paramref name="first"/> again), found by tag alone: the first
    /// block's slot, and the step to the next from its bucket's step bits, else from the second block's bucket (0 for a
    /// one-block chain). False where either bucket names no slot. Changes nothing.
    /// </summary>
    private bool GuessRun(in BlockHash first, in BlockHash second, out int slot, out int step)
    {
        ulong head = BucketByTag(Tag(first));
        slot = SlotOf(head);
        step = StepOf(head);
        if (slot == None) return false;
        if (step != 0) return true;
        int next = SlotByTag(Tag(second));
        step = next - slot;
        return next != None;
    }
}
