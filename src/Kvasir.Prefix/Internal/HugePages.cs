using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kvasir.Prefix.Internal;

/// <summary>
/// Asks Linux to back a large array with 2 MiB pages (transparent huge pages), so that random reads across it do not
/// each need a page-table walk: a 1M-block table is 64 MB, 16,384 pages of 4 KiB (beyond the TLB) or 32 of 2 MiB.
/// The array stays an ordinary GC array (no unsafe code, no native memory): its address range is advised
/// MADV_HUGEPAGE and then collapsed at once (MADV_COLLAPSE, Linux 6.1+), which works where the system's THP mode is
/// "madvise". Only the 2 MiB-aligned pages inside the array change. A hint: where the kernel refuses (other systems,
/// older kernels, THP "never", no free huge pages), nothing changes and nothing fails.
/// </summary>
internal static class HugePages
{
    /// <summary>Arrays smaller than this are left alone (fewer than two whole huge pages inside them).</summary>
    public const long MinBytes = 4 << 20;

    private const int MadvHugePage = 14, MadvCollapse = 25;
    private const long HugePage = 2 << 20;

    private static bool s_unavailable = !OperatingSystem.IsLinux();

    /// <summary>Advises (and collapses) the whole huge pages inside <paramref name="array"/>; false when not done.</summary>
    public static bool Advise<T>(T[] array)
    {
        long bytes = (long)array.Length * Unsafe.SizeOf<T>();
        if (s_unavailable || bytes < MinBytes) return false;
        // The array's address, without pinning: a large array lives on the large object heap, which the GC does not
        // move unless told to compact it; were it moved, only the advice would be lost.
        long start = Unsafe.ByteOffset(ref Unsafe.NullRef<byte>(), ref Unsafe.As<T, byte>(ref MemoryMarshal.GetArrayDataReference(array)));
        long first = (start + HugePage - 1) & ~(HugePage - 1), end = (start + bytes) & ~(HugePage - 1);
        if (end - first < HugePage) return false;
        try
        {
            if (Madvise((nint)first, (nuint)(end - first), MadvHugePage) != 0) return false;
            return Madvise((nint)first, (nuint)(end - first), MadvCollapse) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            s_unavailable = true;
            return false;
        }
    }

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int Madvise(nint address, nuint length, int advice);
}
