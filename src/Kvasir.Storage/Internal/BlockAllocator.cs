namespace Kvasir.Storage.Internal;

/// <summary>Fixed-size blocks handed out from a free stack: O(1), no fragmentation, waste = block - value length.</summary>
internal sealed class BlockAllocator : IAllocator
{
    private readonly int _blockSize;
    private readonly int[] _freeStack;
    private readonly bool[] _used;
    private int _freeCount;

    public BlockAllocator(long arenaBytes, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        long count = arenaBytes / blockSize;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, int.MaxValue, nameof(arenaBytes));
        ArgumentOutOfRangeException.ThrowIfZero(count, nameof(arenaBytes));
        _blockSize = blockSize;
        _freeStack = new int[count];
        _used = new bool[count];
        // Lowest blocks on top of the stack, so a fresh store fills the arena from its start.
        for (int i = 0; i < count; i++)
        {
            _freeStack[i] = (int)count - 1 - i;
        }

        _freeCount = (int)count;
    }

    public long CapacityBytes => (long)_used.Length * _blockSize;

    public long FreeBytes => (long)_freeCount * _blockSize;

    public long LargestFreeExtentBytes => _freeCount > 0 ? _blockSize : 0;

    public long SizeFor(long length) => length >= 0 && length <= _blockSize ? _blockSize : -1;

    public bool TryAllocate(long length, out long offset)
    {
        if (SizeFor(length) < 0 || _freeCount == 0)
        {
            offset = -1;
            return false;
        }

        int block = _freeStack[--_freeCount];
        _used[block] = true;
        offset = (long)block * _blockSize;
        return true;
    }

    public void Free(long offset)
    {
        long block = offset / _blockSize;
        if (offset < 0 || offset % _blockSize != 0 || block >= _used.Length || !_used[block])
        {
            throw new InvalidOperationException($"Offset {offset} is not an allocated block.");
        }

        _used[block] = false;
        _freeStack[_freeCount++] = (int)block;
    }
}
