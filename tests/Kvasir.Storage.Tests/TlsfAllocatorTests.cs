using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tests;

public sealed class TlsfAllocatorTests
{
    private const int Unit = 64;

    [Fact]
    public void Freeing_outer_neighbours_then_the_middle_coalesces_into_one_extent()
    {
        var allocator = new TlsfAllocator(10 * Unit, Unit);
        Assert.True(allocator.TryAllocate(3 * Unit, out long a));
        Assert.True(allocator.TryAllocate(5 * Unit, out long b));
        Assert.True(allocator.TryAllocate(2 * Unit, out long c));
        Assert.Equal(0, allocator.FreeBytes);

        allocator.Free(a);
        allocator.Free(c);
        Assert.Equal(5 * Unit, allocator.FreeBytes);
        Assert.Equal(3 * Unit, allocator.LargestFreeExtentBytes);
        Assert.False(allocator.TryAllocate(4 * Unit, out _));

        allocator.Free(b);
        Assert.Equal(10 * Unit, allocator.LargestFreeExtentBytes);
        Assert.True(allocator.TryAllocate(10 * Unit, out long whole));
        Assert.Equal(0, whole);
    }

    [Fact]
    public void Freeing_next_to_trailing_free_space_merges_with_it()
    {
        var allocator = new TlsfAllocator(100 * Unit, Unit);
        Assert.True(allocator.TryAllocate(10 * Unit, out long first));
        Assert.True(allocator.TryAllocate(10 * Unit, out long second));
        allocator.Free(second);
        Assert.Equal(90 * Unit, allocator.LargestFreeExtentBytes);
        allocator.Free(first);
        Assert.Equal(100 * Unit, allocator.LargestFreeExtentBytes);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(Unit - 1, 1)]
    [InlineData(Unit, 1)]
    [InlineData(Unit + 1, 2)]
    public void Sizes_round_up_to_whole_units_and_empty_values_take_one(long length, long units)
    {
        var allocator = new TlsfAllocator(8 * Unit, Unit);
        Assert.Equal(units * Unit, allocator.SizeFor(length));
        Assert.True(allocator.TryAllocate(length, out _));
        Assert.Equal((8 - units) * Unit, allocator.FreeBytes);
    }

    [Fact]
    public void A_request_larger_than_the_arena_never_fits()
    {
        var allocator = new TlsfAllocator(8 * Unit, Unit);
        Assert.Equal(-1, allocator.SizeFor(8 * Unit + 1));
        Assert.False(allocator.TryAllocate(8 * Unit + 1, out _));
        Assert.True(allocator.TryAllocate(8 * Unit, out _));
    }

    [Fact]
    public void An_extent_in_the_requests_own_size_class_is_found_when_large_enough()
    {
        // 17 units share a class with 16; the good-fit search skips that class, the bounded scan must find it.
        var allocator = new TlsfAllocator(17 * Unit, Unit);
        Assert.True(allocator.TryAllocate(17 * Unit, out long offset));
        Assert.Equal(0, offset);
    }

    [Fact]
    public void Double_free_and_foreign_offsets_are_refused()
    {
        var allocator = new TlsfAllocator(8 * Unit, Unit);
        Assert.True(allocator.TryAllocate(2 * Unit, out long offset));
        allocator.Free(offset);
        Assert.Throws<InvalidOperationException>(() => allocator.Free(offset));
        Assert.Throws<InvalidOperationException>(() => allocator.Free(3));
        Assert.Throws<InvalidOperationException>(() => allocator.Free(64 * Unit));
    }

    [Fact]
    public void Checkerboard_fragmentation_blocks_large_requests_until_neighbours_are_freed()
    {
        const int units = 64;
        var allocator = new TlsfAllocator(units * Unit, Unit);
        var offsets = new long[units];
        for (int i = 0; i < units; i++)
        {
            Assert.True(allocator.TryAllocate(Unit, out offsets[i]));
        }

        for (int i = 0; i < units; i += 2)
        {
            allocator.Free(offsets[i]);
        }

        Assert.Equal(units / 2 * Unit, allocator.FreeBytes);
        Assert.Equal(Unit, allocator.LargestFreeExtentBytes);
        Assert.False(allocator.TryAllocate(2 * Unit, out _));

        for (int i = 1; i < units; i += 2)
        {
            allocator.Free(offsets[i]);
        }

        Assert.True(allocator.TryAllocate(units * Unit, out _));
    }

    [Fact]
    public void Mixed_size_churn_never_overlaps_keeps_exact_accounting_and_fully_coalesces()
    {
        const int units = 4096;
        var allocator = new TlsfAllocator((long)units * Unit, Unit);
        var random = new Random(1234);
        var owner = new int[units]; // 0 = free, else allocation id
        var live = new Dictionary<int, (long Offset, int Units)>();
        int nextId = 1;
        long usedUnits = 0;
        int[] sizes = [1, 1, 1, 2, 3, 7, 16, 17, 64, 100, 300];

        for (int step = 0; step < 20_000; step++)
        {
            if (live.Count > 0 && random.Next(100) < 45)
            {
                int id = live.Keys.ElementAt(random.Next(live.Count));
                (long offset, int size) = live[id];
                live.Remove(id);
                allocator.Free(offset);
                Array.Fill(owner, 0, (int)(offset / Unit), size);
                usedUnits -= size;
            }
            else
            {
                int size = sizes[random.Next(sizes.Length)];
                if (allocator.TryAllocate((long)size * Unit, out long offset))
                {
                    int start = (int)(offset / Unit);
                    Assert.True(start + size <= units, "allocation runs past the arena");
                    for (int u = start; u < start + size; u++)
                    {
                        Assert.True(owner[u] == 0, $"unit {u} handed out twice");
                        owner[u] = nextId;
                    }

                    live[nextId++] = (offset, size);
                    usedUnits += size;
                }
                else
                {
                    Assert.True(allocator.LargestFreeExtentBytes < (long)size * Unit, "allocation failed although an extent was large enough");
                }
            }

            Assert.Equal((units - usedUnits) * Unit, allocator.FreeBytes);
        }

        foreach ((long offset, _) in live.Values)
        {
            allocator.Free(offset);
        }

        Assert.Equal((long)units * Unit, allocator.LargestFreeExtentBytes);
    }
}
