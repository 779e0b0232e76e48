using System.Buffers;
using System.Runtime.InteropServices;

namespace Kvasir.Transfer;

/// <summary>
/// Memory for a transfer region outside the managed heap (docs/transfer.md § Region memory): anonymous pages from
/// <c>mmap</c>, 2 MiB aligned, which on Linux are advised <c>MADV_HUGEPAGE</c> so that the kernel backs them with
/// transparent huge pages wherever its policy allows (<c>/sys/kernel/mm/transparent_hugepage/enabled</c> is
/// <c>always</c> or <c>madvise</c>). A lane moves a slice with one kernel copy between the socket and the region; over
/// 2 MiB pages that copy walks a 64 MiB region through 32 TLB entries instead of 16,384. Pages are faulted in at
/// allocation (<c>MADV_POPULATE_WRITE</c> where the kernel has it), so the first transfer does not pay for them.
/// Zero-filled. Register it with <see cref="TransferEngine.Register(NativeRegion)"/>; it refuses to be disposed while
/// an engine has it registered (deregister first), so its memory is never unmapped under a lane.
/// </summary>
public sealed unsafe partial class NativeRegion : IDisposable, IPinnable
{
    /// <summary>Alignment and size granule of the mapping (one x86-64 huge page).</summary>
    public const long HugePageBytes = 2 << 20;

    private const int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
    private const int MADV_HUGEPAGE = 14, MADV_POPULATE_WRITE = 23;

    private readonly object _lock = new();
    private readonly nint _mapping;      // what to unmap (Linux) or free (elsewhere)
    private readonly long _mappedBytes;
    private int _pins;
    private bool _disposed;

    private NativeRegion(nint address, long length, nint mapping, long mappedBytes, bool hugePagesAdvised)
    {
        Address = address;
        Length = length;
        _mapping = mapping;
        _mappedBytes = mappedBytes;
        HugePagesAdvised = hugePagesAdvised;
    }

    /// <summary>The first byte, 2 MiB aligned.</summary>
    public nint Address { get; }

    /// <summary>The bytes asked for (the mapping behind them is rounded up to 2 MiB).</summary>
    public long Length { get; }

    /// <summary>
    /// Whether the kernel took the huge-page advice (Linux, and not refused). Whether it actually found huge pages is
    /// its policy and its free memory: <c>AnonHugePages</c> of the mapping in <c>/proc/self/smaps</c> tells.
    /// </summary>
    public bool HugePagesAdvised { get; }

    /// <summary>
    /// Maps <paramref name="length"/> bytes (1 B..1 TiB) of zeroed memory, 2 MiB aligned, advised for huge pages
    /// unless <paramref name="hugePages"/> is false (then 4 KiB pages, as any allocation). Throws
    /// <see cref="TransferException"/> (<see cref="TransferError.InvalidArgument"/>) for a bad length and
    /// <see cref="OutOfMemoryException"/> when the kernel refuses the mapping.
    /// </summary>
    public static NativeRegion Allocate(long length, bool hugePages = true)
    {
        if (length < 1 || length > 1L << 40) throw new TransferException(TransferError.InvalidArgument, $"a native region is 1 B..1 TiB, not {length} bytes");
        long rounded = (length + HugePageBytes - 1) / HugePageBytes * HugePageBytes;
        if (!OperatingSystem.IsLinux())
        {
            nint p = (nint)NativeMemory.AlignedAlloc((nuint)rounded, (nuint)HugePageBytes);
            NativeMemory.Clear((void*)p, (nuint)rounded);
            return new NativeRegion(p, length, p, rounded, false);
        }
        // Over-map by one huge page and trim both ends, so the region starts on a 2 MiB boundary (mmap only
        // promises 4 KiB) and every 2 MiB of it can be one huge page.
        long span = rounded + HugePageBytes;
        nint raw = Mmap(0, (nuint)span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == -1) throw new OutOfMemoryException($"mmap of {span} bytes failed (errno {Marshal.GetLastPInvokeError()})");
        nint start = (nint)(((long)raw + HugePageBytes - 1) & ~(HugePageBytes - 1));
        long head = start - raw, tail = span - head - rounded;
        if (head > 0) Munmap(raw, (nuint)head);
        if (tail > 0) Munmap(start + (nint)rounded, (nuint)tail);
        bool advised = hugePages && Madvise(start, (nuint)rounded, MADV_HUGEPAGE) == 0;
        if (Madvise(start, (nuint)rounded, MADV_POPULATE_WRITE) != 0)
        {
            // Kernels before 5.14: touch one byte per 4 KiB page (a huge page is taken at its first touch).
            for (long at = 0; at < rounded; at += 4096) ((byte*)start)[at] = 0;
        }
        return new NativeRegion(start, length, start, rounded, advised);
    }

    /// <summary>[<paramref name="offset"/>, +<paramref name="length"/>) of the region; throws when it is outside or the region is disposed.</summary>
    public Span<byte> AsSpan(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside the region's {Length} bytes");
        return new Span<byte>((byte*)Address + offset, length);
    }

    /// <summary>Held by an engine while the region is registered (<see cref="TransferEngine.Register(NativeRegion)"/>).</summary>
    MemoryHandle IPinnable.Pin(int elementIndex)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _pins++;
        }
        return new MemoryHandle((byte*)Address + elementIndex, default, this);
    }

    void IPinnable.Unpin()
    {
        lock (_lock) _pins--;
    }

    /// <summary>Unmaps the memory. Throws <see cref="InvalidOperationException"/> while an engine has it registered.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            if (_pins > 0) throw new InvalidOperationException($"the native region is registered with {_pins} engine(s): deregister it first");
            _disposed = true;
        }
        if (OperatingSystem.IsLinux()) Munmap(_mapping, (nuint)_mappedBytes);
        else NativeMemory.AlignedFree((void*)_mapping);
    }

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nuint length, int advice);
}
