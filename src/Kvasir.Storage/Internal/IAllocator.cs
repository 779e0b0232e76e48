namespace Kvasir.Storage.Internal;

/// <summary>
/// Carves arena offsets. Not thread-safe: the store calls it under its lock. Offsets are byte offsets from the
/// arena base. Every allocation takes at least one unit, even for an empty value, so the number of values is
/// bounded by the arena and not only by the managed heap.
/// </summary>
internal interface IAllocator
{
    /// <summary>Bytes the allocator can hand out in total (the arena rounded down to whole units).</summary>
    long CapacityBytes { get; }

    /// <summary>Bytes not currently allocated (possibly fragmented).</summary>
    long FreeBytes { get; }

    /// <summary>Longest value that fits in one free extent right now. May scan one free list.</summary>
    long LargestFreeExtentBytes { get; }

    /// <summary>Bytes an allocation for a value of <paramref name="length"/> bytes occupies; -1 if such a value can never fit.</summary>
    long SizeFor(long length);

    /// <summary>Allocates room for <paramref name="length"/> bytes; false when no free extent is large enough.</summary>
    bool TryAllocate(long length, out long offset);

    /// <summary>Frees an allocation. Throws <see cref="InvalidOperationException"/> on an offset that is not allocated (double free).</summary>
    void Free(long offset);
}
