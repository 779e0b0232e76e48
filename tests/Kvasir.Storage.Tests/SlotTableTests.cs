using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tests;

public sealed class SlotTableTests
{
    /// <summary>
    /// Random adds and removes (the removals shift runs back) against a dictionary as reference: after every step the
    /// table finds exactly the reference's slots, by key and as the same objects, and stays at most three quarters full.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Lookups_match_a_dictionary_under_random_adds_and_removes(int seed)
    {
        var table = new SlotTable();
        var reference = new Dictionary<int, Slot>();
        var random = new Random(seed);
        for (int step = 0; step < 30_000; step++)
        {
            int id = random.Next(3000);
            if (reference.TryGetValue(id, out Slot? held) && random.Next(3) > 0)
            {
                Assert.True(table.Remove(held));
                Assert.False(table.Remove(held));
                reference.Remove(id);
            }
            else if (held is null)
            {
                Slot slot = SlotFor(id);
                table.Add(slot);
                reference.Add(id, slot);
            }

            Assert.Equal(reference.Count, table.Count);
            Assert.True(table.Count <= table.Capacity / 4 * 3);
            if (step % 1000 == 999)
            {
                for (int probe = 0; probe < 3000; probe++)
                {
                    bool found = table.TryGetValue(KeyFor(probe), out Slot? slot);
                    Assert.Equal(reference.TryGetValue(probe, out Slot? expected), found);
                    Assert.Same(expected, slot);
                }
            }
        }
    }

    [Fact]
    public void Removing_another_slot_with_an_equal_key_leaves_the_held_one()
    {
        var table = new SlotTable();
        Slot held = SlotFor(5);
        table.Add(held);
        Assert.False(table.Remove(SlotFor(5)));
        Assert.True(table.TryGetValue(KeyFor(5), out Slot? found));
        Assert.Same(held, found);
    }

    // Keys of 1..100 bytes: inline slots of every size and array-key slots share the table.
    private static byte[] KeyFor(int id) => [.. Enumerable.Range(0, 1 + (id % 100)).Select(i => (byte)(id >> (8 * (i % 2))))];

    private static Slot SlotFor(int id) => SlotKeys.NewHeapSlot(KeyFor(id), new ValueVersion(0, 0));
}
