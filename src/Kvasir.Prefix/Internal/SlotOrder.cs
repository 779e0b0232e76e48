namespace Kvasir.Prefix.Internal;

/// <summary>
/// An eviction order kept per slot of a <see cref="BlockTable{TValue}"/>, in arrays indexed by slot (no object per block),
/// for the policies the node also runs (docs/eviction.md): the algorithms of the node's Kvasir.Storage policies, written
/// again here because this box may not depend on the store. Every call is made in the order the node makes the same call
/// (store a block: link it to its parent, then insert; re-store it: relink, then access; read it: access; evict:
/// pick, then remove), so both make the same choices on the same sequence of requests (tests/vectors/eviction_trace.json).
/// Pins are the table's: a pinned slot is passed over by <see cref="Pick"/> the way the node passes over a leased one.
/// The <c>key</c> arguments are the block hash's first 64 bits: what the node's FNV-1a of the key is to its
/// policies (the ghost queue's and the frequency sketch's index). Not thread-safe: the table's owner serialises calls.
/// </summary>
internal abstract class SlotOrder
{
    /// <summary>Makes room for slots 0 to <paramref name="slots"/> - 1 (called as the table grows; state of held slots is kept).</summary>
    public abstract void Resize(int slots);

    /// <summary>A block entered <paramref name="slot"/>, continuing the block in <paramref name="parent"/> (-1: none).</summary>
    public abstract void Insert(int slot, ulong key, int parent);

    /// <summary>A held block was stored again, now continuing <paramref name="parent"/> (-1: none): the node's overwrite.</summary>
    public virtual void Reinsert(int slot, ulong key, int parent) => Access(slot, key);

    /// <summary>A held block was read.</summary>
    public abstract void Access(int slot, ulong key);

    /// <summary>The block in <paramref name="slot"/> leaves: <paramref name="evicted"/> when it is the victim <see cref="Pick"/> chose, false when invalidated.</summary>
    public abstract void Remove(int slot, ulong key, bool evicted);

    /// <summary>The next victim that <paramref name="canEvict"/> accepts, or -1 when this search found none (the caller checked that one exists).</summary>
    public abstract int Pick(Func<int, bool> canEvict);

    /// <summary>The next <paramref name="count"/> victims without removing them (the caller checked that as many are evictable).</summary>
    public abstract void Peek(int count, Func<int, bool> canEvict, List<int> into);

    /// <summary>Bytes of per-slot state for <paramref name="slots"/> slots (for the docs and tests).</summary>
    public abstract long BytesFor(int slots);
}
