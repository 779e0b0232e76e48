using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tests;

public sealed class BlockAllocatorTests
{
    [Fact]
    public void Hands_out_each_block_once_then_reports_full_and_reuses_freed_blocks()
    {
        var allocator = new BlockAllocator(4 * 1000 + 999, 1000);
        var offsets = new HashSet<long>();
        for (int i = 0; i < 4; i++)
        {
            Assert.True(allocator.TryAllocate(1, out long offset));
            Assert.True(offsets.Add(offset));
            Assert.Equal(0, offset % 1000);
        }

        Assert.False(allocator.TryAllocate(1, out _));
        Assert.Equal(0, allocator.LargestFreeExtentBytes);

        allocator.Free(2000);
        Assert.True(allocator.TryAllocate(1000, out long reused));
        Assert.Equal(2000, reused);
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(999, true)]
    [InlineData(1000, true)]
    [InlineData(1001, false)]
    public void Values_up_to_the_block_size_fit_and_longer_ones_never_do(long length, bool fits)
    {
        var allocator = new BlockAllocator(10_000, 1000);
        Assert.Equal(fits ? 1000 : -1, allocator.SizeFor(length));
        Assert.Equal(fits, allocator.TryAllocate(length, out _));
    }

    [Fact]
    public void Double_free_and_misaligned_offsets_are_refused()
    {
        var allocator = new BlockAllocator(10_000, 1000);
        Assert.True(allocator.TryAllocate(10, out long offset));
        allocator.Free(offset);
        Assert.Throws<InvalidOperationException>(() => allocator.Free(offset));
        Assert.Throws<InvalidOperationException>(() => allocator.Free(500));
        Assert.Throws<InvalidOperationException>(() => allocator.Free(10_000));
    }
}
