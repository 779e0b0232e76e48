using System.Runtime.InteropServices;

namespace Kvasir.Storage.Internal;

/// <summary>Arena in process-private native memory (<see cref="NativeMemory.AlignedAlloc"/>, page aligned, not zeroed).</summary>
internal sealed unsafe class NativeArenaMemory : IArenaMemory
{
    private const int Alignment = 4096;
    private void* _base;

    public NativeArenaMemory(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        long rounded = (length + Alignment - 1) & ~(long)(Alignment - 1);
        _base = NativeMemory.AlignedAlloc((nuint)rounded, Alignment);
        Length = length;
    }

    public nint BaseAddress => (nint)_base;

    public long Length { get; }

    public void Dispose()
    {
        if (_base == null)
        {
            return;
        }

        NativeMemory.AlignedFree(_base);
        _base = null;
    }
}
