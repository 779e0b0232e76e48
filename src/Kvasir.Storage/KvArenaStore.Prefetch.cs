using Kvasir.Storage.Internal;

namespace Kvasir.Storage;

/// <content>
/// Batch lookups' early loads: a batch hands its keys here before looking them up one by one, so that their index
/// misses overlap (<see cref="SlotIndex.Prefetch"/>). Nothing here takes the lock or changes state.
/// </content>
public sealed partial class KvArenaStore
{
    /// <summary>Most keys one <see cref="PrefetchIndex(IReadOnlyList{ReadOnlyMemory{byte}}, int, int)"/> call prefetches: their lines (about four a key) stay near the core until the batch reads them.</summary>
    public const int PrefetchWindow = 64;

    /// <summary>
    /// Starts the index loads that looking up <paramref name="keys"/>[<paramref name="start"/>..<paramref name="end"/>) will
    /// make (at most <see cref="PrefetchWindow"/> of them, from <paramref name="start"/>), so that a batch's cache misses
    /// overlap instead of queuing one behind another; the lookups that follow are made as before, one by one under the lock.
    /// Changes nothing and takes no lock (see <see cref="SlotIndex.Prefetch"/>). Returns where the prefetched window ends:
    /// call again when the batch's lookups reach it.
    /// </summary>
    public int PrefetchIndex(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end)
    {
        ArgumentNullException.ThrowIfNull(keys);
        int n = Math.Min(end - start, PrefetchWindow);
        if (n <= 0) return end;
        Span<int> hashes = stackalloc int[n];
        for (int i = 0; i < n; i++) hashes[i] = SlotIndex.Hash(keys[start + i].Span);
        _index.Prefetch(hashes);
        return start + n;
    }

    /// <summary>
    /// As <see cref="PrefetchIndex(IReadOnlyList{ReadOnlyMemory{byte}}, int, int)"/>, for keys given as
    /// (offset, length) ranges of <paramref name="buffer"/> (a request's metadata), from range <paramref name="start"/>.
    /// </summary>
    public int PrefetchIndex(ReadOnlySpan<byte> buffer, ReadOnlySpan<(int Offset, int Length)> ranges, int start)
    {
        int n = Math.Min(ranges.Length - start, PrefetchWindow);
        if (n <= 0) return ranges.Length;
        Span<int> hashes = stackalloc int[n];
        for (int i = 0; i < n; i++) hashes[i] = SlotIndex.Hash(buffer.Slice(ranges[start + i].Offset, ranges[start + i].Length));
        _index.Prefetch(hashes);
        return start + n;
    }
}
