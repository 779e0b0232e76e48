namespace Kvasir.Storage.Internal;

/// <summary>
/// Memory apart from the arena where cold reads that will not be published are staged for TCP and in-process
/// readers, so a read from a lower tier never evicts a published value (docs/tiers.md § GET). Allocated once at
/// start (no allocation per read), carved by its own TLSF allocator; a staged value is freed when its lease ends.
/// Shared-memory readers cannot map it: they are staged in free arena space only.
/// </summary>
/// <remarks>Thread-safe (one lock, held for the allocator call only). Dispose only after every lease ended.</remarks>
internal sealed class StagingArea : IDisposable
{
    private readonly Lock _gate = new();
    private readonly NativeArenaMemory _memory;
    private readonly TlsfAllocator _allocator;

    public StagingArea(long bytes)
    {
        _memory = new NativeArenaMemory(bytes);
        _allocator = new TlsfAllocator(bytes, 4096);
    }

    public long FreeBytes
    {
        get { lock (_gate) return _allocator.FreeBytes; }
    }

    /// <summary>Space for <paramref name="length"/> bytes (0 is legal); false when the staging area is full or the value is over 2 GiB.</summary>
    public bool TryAllocate(long length, out ValueVersion version, out nint address)
    {
        lock (_gate)
        {
            if (length > int.MaxValue || _allocator.SizeFor(length) < 0 || !_allocator.TryAllocate(length, out long offset))
            {
                (version, address) = (null!, 0);
                return false;
            }

            version = new StagedVersion(offset, length, this);
            address = _memory.BaseAddress + (nint)offset;
            return true;
        }
    }

    public void Free(ValueVersion version)
    {
        lock (_gate) _allocator.Free(version.Offset);
    }

    public void Dispose() => _memory.Dispose();
}
