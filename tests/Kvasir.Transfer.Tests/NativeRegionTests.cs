using System.Globalization;

namespace Kvasir.Transfer.Tests;

/// <summary>NativeRegion: huge-page-advised region memory (docs/transfer.md § Region memory), and its registration rules.</summary>
public sealed class NativeRegionTests
{
    private const long TwoMiB = 2 << 20;

    [Fact]
    public void A_native_region_is_2MiB_aligned_zeroed_and_advised_for_huge_pages_where_the_kernel_has_them()
    {
        using var region = NativeRegion.Allocate(3 * TwoMiB + 1);
        Assert.Equal(0, region.Address % TwoMiB);
        Assert.Equal(3 * TwoMiB + 1, region.Length);
        Assert.True(region.AsSpan(0, (int)region.Length).IndexOfAnyExcept((byte)0) < 0, "a fresh region reads as zeros");
        if (!OperatingSystem.IsLinux()) return;
        bool kernelHasThp = File.Exists("/sys/kernel/mm/transparent_hugepage/enabled");
        Assert.Equal(kernelHasThp, region.HugePagesAdvised);
        // The kernel's own record of the advice: the mapping's VmFlags carry "hg" (MADV_HUGEPAGE), and the
        // mapping covers the region rounded up to 2 MiB.
        var (start, end, flags) = Mapping(region.Address);
        Assert.True(start <= region.Address && end >= region.Address + (nint)(4 * TwoMiB), $"the mapping [0x{start:x}, 0x{end:x}) covers the region rounded up to 2 MiB");
        if (kernelHasThp) Assert.Contains("hg", flags);
    }

    [Fact]
    public void A_native_region_of_4KiB_pages_is_not_advised()
    {
        using var region = NativeRegion.Allocate(TwoMiB, hugePages: false);
        Assert.False(region.HugePagesAdvised);
        Assert.Equal(0, region.Address % TwoMiB);
        if (OperatingSystem.IsLinux()) Assert.DoesNotContain("hg", Mapping(region.Address).Flags);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData((1L << 40) + 1)]
    public void A_native_region_of_a_bad_length_is_refused(long length) =>
        Assert.Equal(TransferError.InvalidArgument, Assert.Throws<TransferException>(() => NativeRegion.Allocate(length)).Code);

    [Fact]
    public void A_span_outside_a_native_region_is_refused()
    {
        using var region = NativeRegion.Allocate(4096);
        Assert.Equal(4096, region.AsSpan(0, 4096).Length);
        Assert.Equal(1, region.AsSpan(4095, 1).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => region.AsSpan(4095, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.AsSpan(-1, 1));
        region.Dispose();
        Assert.Throws<ObjectDisposedException>(() => region.AsSpan(0, 1));
    }

    [Fact]
    public async Task Writes_and_reads_between_native_regions_land_byte_exact()
    {
        using var pair = await EnginePair.StartAsync(new TransferEngineOptions { Ncpus = 2, NconnPerCpu = 2, SliceBytes = 64 << 10 });
        const int size = (3 << 20) + 1;   // 49 slices: not a multiple of the slice or of the lanes
        using var src = NativeRegion.Allocate(size);
        using var dst = NativeRegion.Allocate(size, hugePages: false);
        Bytes.Pattern(size, 7).CopyTo(src.AsSpan(0, size));
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        Assert.Equal(src.Address, pair.Initiator.RegionAddress(s));
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, size);
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, size, window).WaitAsync(EnginePair.Deadline);
        Assert.True(src.AsSpan(0, size).SequenceEqual(dst.AsSpan(0, size)));
        src.AsSpan(0, size).Clear();
        await pair.Initiator.ReadAsync(pair.ConnId, s, 0, size, window).WaitAsync(EnginePair.Deadline);
        Assert.True(src.AsSpan(0, size).SequenceEqual(Bytes.Pattern(size, 7)));
        pair.Initiator.Deregister(s);
        pair.Target.Deregister(d);
    }

    [Fact]
    public async Task A_registered_native_region_cannot_be_disposed_until_every_engine_deregistered_it()
    {
        using var pair = await EnginePair.StartAsync();
        var region = NativeRegion.Allocate(4096);
        int a = pair.Initiator.Register(region), b = pair.Target.Register(region);
        Assert.Throws<InvalidOperationException>(region.Dispose);
        pair.Initiator.Deregister(a);
        Assert.Throws<InvalidOperationException>(region.Dispose);   // the target still has it
        Assert.Equal(0, region.AsSpan(0, 1)[0]);                     // and it is still mapped
        pair.Target.Deregister(b);
        region.Dispose();
        region.Dispose();   // twice is fine
        var e = Assert.Throws<TransferException>(() => pair.Initiator.Register(region));
        Assert.Equal(TransferError.InvalidArgument, e.Code);
    }

    [Fact]
    public void Disposing_an_engine_releases_its_native_regions()
    {
        var region = NativeRegion.Allocate(4096);
        using (var engine = TransferEngine.Start())
        {
            engine.Register(region);
            Assert.Throws<InvalidOperationException>(region.Dispose);
        }
        region.Dispose();
        Assert.Throws<ObjectDisposedException>(() => region.AsSpan(0, 1));
    }

    /// <summary>The /proc/self/smaps entry of the mapping that holds <paramref name="address"/>: its bounds and VmFlags.</summary>
    private static (nint Start, nint End, string[] Flags) Mapping(nint address)
    {
        var lines = File.ReadAllLines("/proc/self/smaps");
        for (int i = 0; i < lines.Length; i++)
        {
            var range = lines[i].Split(' ', 2)[0].Split('-');
            if (range.Length != 2 || !long.TryParse(range[0], NumberStyles.HexNumber, null, out long start)
                || !long.TryParse(range[1], NumberStyles.HexNumber, null, out long end) || address < start || address >= end) continue;
            for (int j = i + 1; j < lines.Length; j++)
            {
                if (lines[j].StartsWith("VmFlags:", StringComparison.Ordinal))
                    return ((nint)start, (nint)end, lines[j]["VmFlags:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries));
            }
        }
        throw new InvalidOperationException($"no mapping holds 0x{address:x} in /proc/self/smaps");
    }
}
