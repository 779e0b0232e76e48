using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tests;

public sealed class SlotHeapTests
{
    /// <summary>
    /// A heap whose stamp clock passes <see cref="int.MaxValue"/> (renumbering its slots' stamps) gives up its slots in
    /// exactly the order of one whose clock starts at 0, under the same inserts, re-placements (many of equal priority,
    /// so the stamps decide) and removals.
    /// </summary>
    [Fact]
    public void Slots_come_out_in_the_same_order_when_the_stamp_clock_wraps()
    {
        Assert.Equal(Run(clockStart: 0), Run(clockStart: int.MaxValue - 300));
    }

    private static List<int> Run(int clockStart)
    {
        var heap = new SlotHeap { Clock = clockStart };
        var random = new Random(7);
        var slots = new List<HeapSlot>();
        for (int i = 0; i < 200; i++)
        {
            HeapSlot slot = SlotKeys.NewHeapSlot(BitConverter.GetBytes(i), new ValueVersion(0, 0));
            slots.Add(slot);
            Place(heap, slot, random.Next(8));
        }

        for (int step = 0; step < 2000; step++)
        {
            HeapSlot slot = slots[random.Next(slots.Count)];
            if (random.Next(10) == 0) heap.Remove(slot);
            else Place(heap, slot, random.Next(8));
        }

        var order = new List<int>();
        while (heap.TakeMin(out HeapPlace min))
        {
            order.Add(BitConverter.ToInt32(min.Slot.Key));
        }

        Assert.True(heap.Clock < clockStart || clockStart == 0, "the clock wrapped and was renumbered");
        return order;
    }

    private static void Place(SlotHeap heap, HeapSlot slot, long priority) => heap.Place(slot, priority);
}
