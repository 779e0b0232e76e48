using System.Buffers.Binary;
using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tests;

/// <summary>The ordered key chunks: keys added in order fill their chunks instead of leaving each split half empty.</summary>
public sealed class OrderedKeysTests
{
    private const int Keys = (5 * OrderedKeys.ChunkCapacity) + 7;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Keys_added_in_order_fill_their_chunks_and_stay_in_byte_order(bool ascending)
    {
        var ordered = new OrderedKeys();
        for (int i = 0; i < Keys; i++)
        {
            ordered.Add(SlotFor(ascending ? i : Keys - 1 - i));
        }

        Assert.Equal(Keys, ordered.Count);
        Assert.Equal((Keys + OrderedKeys.ChunkCapacity - 1) / OrderedKeys.ChunkCapacity, ordered.ChunkCount);
        Assert.Equal(Enumerable.Range(0, Keys), ordered.Between([], null).Select(s => BinaryPrimitives.ReadInt32BigEndian(s.Key)));
    }

    [Fact]
    public void A_key_between_full_chunks_still_splits_one_and_lands_in_order()
    {
        var ordered = new OrderedKeys();
        for (int i = 0; i < 2 * OrderedKeys.ChunkCapacity; i++)
        {
            ordered.Add(SlotFor(2 * i));   // even numbers: two full chunks
        }

        ordered.Add(SlotFor(1));                                  // inside the first full chunk: splits it
        ordered.Add(SlotFor((2 * OrderedKeys.ChunkCapacity) - 1));  // between the chunks: below the second one's first key
        ordered.Add(SlotFor((4 * OrderedKeys.ChunkCapacity) - 1));   // past the largest key

        var expected = Enumerable.Range(0, 2 * OrderedKeys.ChunkCapacity).Select(i => 2 * i)
            .Concat([1, (2 * OrderedKeys.ChunkCapacity) - 1, (4 * OrderedKeys.ChunkCapacity) - 1]).Order();
        Assert.Equal(expected, ordered.Between([], null).Select(s => BinaryPrimitives.ReadInt32BigEndian(s.Key)));
        Assert.Equal(2 * OrderedKeys.ChunkCapacity + 3, ordered.Count);
        Assert.True(ordered.Remove(SlotFor(1)));
        Assert.False(ordered.Remove(SlotFor(3)));
    }

    private static HeapSlot SlotFor(int i)
    {
        var key = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(key, i);
        return SlotKeys.NewHeapSlot(key, new ValueVersion(0, 0));
    }
}
