using Kvasir.Prefix.Internal;

namespace Kvasir.Prefix.Tests;

/// <summary>The re-prefill memory: the last N evicted hashes in an open-addressed set of fingerprints and a ring.</summary>
public sealed class RecentEvictionsTests
{
    private static BlockHash Id(int i) => BlockHash.FromBytes(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)));

    [Fact]
    public void The_oldest_is_forgotten_first_and_a_forget_answers_once()
    {
        var recent = new RecentEvictions(3);
        for (int i = 0; i < 4; i++) recent.Remember(Id(i));
        Assert.Equal(3, recent.Count);
        Assert.False(recent.Forget(Id(0)));   // pushed out by the fourth
        Assert.True(recent.Forget(Id(1)));
        Assert.False(recent.Forget(Id(1)));
        recent.Remember(Id(3));               // already remembered: no second copy
        Assert.Equal(2, recent.Count);
        Assert.True(recent.Forget(Id(2)));
        Assert.True(recent.Forget(Id(3)));
        Assert.Equal(0, recent.Count);
    }

    [Fact]
    public void Zero_capacity_remembers_nothing()
    {
        var recent = new RecentEvictions(0);
        recent.Remember(Id(1));
        Assert.False(recent.Forget(Id(1)));
        Assert.Equal(0, recent.Count);
    }

    [Fact]
    public void Hashes_sharing_their_first_eight_bytes_are_told_apart()
    {
        var bytes = new byte[BlockHash.Size];
        bytes[31] = 1;
        var a = BlockHash.FromBytes(bytes);
        bytes[31] = 2;
        var b = BlockHash.FromBytes(bytes);
        var recent = new RecentEvictions(4);
        recent.Remember(a);
        Assert.False(recent.Forget(b));
        Assert.True(recent.Forget(a));
        Assert.True(recent.Forget(BlockHash.Zero) is false);
    }

    [Fact]
    public void Random_remembers_and_forgets_answer_as_a_set_and_a_queue_do()
    {
        // The model is the structure this one replaced: a HashSet for membership and a Queue for age, where the queue's
        // oldest entry, once past capacity, is taken out of the set whether or not it was forgotten and remembered since.
        var random = new Random(7);
        foreach (int capacity in new[] { 1, 5, 64 })
        {
            var recent = new RecentEvictions(capacity);
            var set = new HashSet<int>();
            var order = new Queue<int>();
            for (int step = 0; step < 20_000; step++)
            {
                int key = random.Next(3 * capacity + 5);
                if (random.Next(3) == 0)
                {
                    Assert.Equal(set.Remove(key), recent.Forget(Id(key)));
                }
                else
                {
                    recent.Remember(Id(key));
                    if (set.Add(key))
                    {
                        order.Enqueue(key);
                        while (order.Count > capacity) set.Remove(order.Dequeue());
                    }
                }
                Assert.Equal(set.Count, recent.Count);
            }
        }
    }
}
