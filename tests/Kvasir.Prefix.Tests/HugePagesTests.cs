using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kvasir.Prefix.Internal;

namespace Kvasir.Prefix.Tests;

/// <summary>
/// The huge-page advice a block table's large arrays get: the kernel's collapse copies live data into 2 MiB pages,
/// so what matters is that nothing in the array changes, that small arrays are left alone, and that "done" is only
/// said where the kernel really maps the range with huge pages (read back from /proc/self/smaps).
/// </summary>
public sealed class HugePagesTests
{
    [Fact]
    public void A_large_array_keeps_every_value_and_is_mapped_with_huge_pages_whenever_advice_says_so()
    {
        var array = new long[3 << 20];   // 24 MiB: at least ten whole 2 MiB pages inside it
        for (int i = 0; i < array.Length; i++) array[i] = (i * 7919L) ^ 0x5A5A;
        bool advised = HugePages.Advise(array);
        for (int i = 0; i < array.Length; i++)
            Assert.True(array[i] == ((i * 7919L) ^ 0x5A5A), $"element {i} changed");
        if (!OperatingSystem.IsLinux())
        {
            Assert.False(advised);
            return;
        }
        long start = Unsafe.ByteOffset(ref Unsafe.NullRef<byte>(), ref Unsafe.As<long, byte>(ref MemoryMarshal.GetArrayDataReference(array)));
        // The advice covers the whole 2 MiB pages inside the array, a mapping of its own from the first of them.
        long hugeKiB = AnonHugePagesKiB((start + (2 << 20) - 1) & ~((2L << 20) - 1));
        // Without free huge pages (or with THP off) the kernel may refuse: then advice must say false, not true.
        if (advised) Assert.True(hugeKiB >= 2048, $"advice said done but the array's mapping has {hugeKiB} KiB of huge pages");
        if (File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[never]", StringComparison.Ordinal)) Assert.False(advised);
        GC.KeepAlive(array);
    }

    [Fact]
    public void Arrays_under_four_mebibytes_are_left_alone()
    {
        Assert.False(HugePages.Advise(new long[(int)(HugePages.MinBytes / sizeof(long)) - 1]));
        Assert.False(HugePages.Advise(Array.Empty<long>()));
    }

    /// <summary>AnonHugePages of the mapping in /proc/self/smaps that contains <paramref name="address"/>.</summary>
    private static long AnonHugePagesKiB(long address)
    {
        bool inside = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-', StringComparison.Ordinal);
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash && long.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out long from)
                && long.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out long to))
            {
                inside = address >= from && address < to;
            }
            else if (inside && line.StartsWith("AnonHugePages:", StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan("AnonHugePages:".Length).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidOperationException($"no mapping in /proc/self/smaps contains 0x{address:x}");
    }
}
