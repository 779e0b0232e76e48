using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tests;

/// <summary>
/// The store's key → slot table (<see cref="SlotIndex"/>) against a plain dictionary: adds, removes and lookups through
/// several doublings and free-list reuse, keys of every inline length and longer, and prefetches (of present, removed and
/// arbitrary hashes) that must leave every answer as it was.
/// </summary>
public sealed class SlotIndexTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Lookups_match_a_dictionary_under_random_adds_and_removes_through_growth(int seed)
    {
        var random = new Random(seed);
        var index = new SlotIndex();
        var reference = new Dictionary<string, Slot>();
        var keys = new List<byte[]>();
        for (int step = 0; step < 30_000; step++)
        {
            // A key space of ~6k keys, 1..80 bytes: inline keys of every rounded length and array keys past 64 bytes.
            byte[] key = Key(random.Next(6_000), 1 + (step % 80));
            string name = Convert.ToHexString(key);
            if (reference.TryGetValue(name, out Slot? present) && random.Next(100) < 45)
            {
                Assert.True(index.Remove(present));
                Assert.False(index.Remove(present));   // the very object, once
                reference.Remove(name);
            }
            else if (present is null)
            {
                Slot slot = SlotKeys.NewHeapSlot(key, new ValueVersion(step, 1));
                index.Add(slot);
                reference.Add(name, slot);
                keys.Add(key);
            }

            if (step % 3000 == 2999) AssertAgrees(index, reference, keys, random);
        }

        AssertAgrees(index, reference, keys, random);
        foreach (Slot slot in reference.Values) Assert.True(index.Remove(slot));
        Assert.Equal(0, index.Count);
        Assert.All(keys, key => Assert.False(index.Contains(key)));
    }

    [Fact]
    public void Removed_places_are_reused_before_the_table_grows()
    {
        var index = new SlotIndex();
        var slots = Enumerable.Range(0, SlotIndex.InitialCapacity).Select(i => (Slot)SlotKeys.NewListSlot(Key(i, 32), new ValueVersion(i, 1))).ToList();
        foreach (Slot slot in slots) index.Add(slot);
        Assert.Equal(SlotIndex.InitialCapacity, index.Capacity);

        for (int round = 0; round < 100; round++)
        {
            Slot gone = slots[round % slots.Count];
            Assert.True(index.Remove(gone));
            Slot fresh = SlotKeys.NewListSlot(Key(1000 + round, 32), new ValueVersion(round, 1));
            index.Add(fresh);
            slots[round % slots.Count] = fresh;
        }

        Assert.Equal(SlotIndex.InitialCapacity, index.Capacity);
        Assert.Equal(SlotIndex.InitialCapacity, index.Count);
        Assert.All(slots, slot => Assert.True(index.TryGetValue(slot.Key, out Slot? found) && ReferenceEquals(found, slot)));

        index.Add(SlotKeys.NewListSlot(Key(5000, 32), new ValueVersion(0, 1)));
        Assert.Equal(2 * SlotIndex.InitialCapacity, index.Capacity);
    }

    [Fact]
    public void A_store_prefetching_a_batch_answers_as_without_it()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 4 << 20, Granule = 64, MaxValueBytes = 64 });
        var stored = Enumerable.Range(0, 500).Select(i => Key(i, 32)).ToList();
        foreach (byte[] key in stored)
        {
            Assert.Equal(Protocol.WireStatus.Ok, store.TryReserve(key, 8, out Reservation? reservation));
            store.Commit(reservation!, 0);
        }

        // A batch of stored keys, absent keys, a removed key and keys of odd lengths, prefetched window by window as the callers do.
        Assert.Equal(Protocol.WireStatus.Ok, store.Remove(stored[7]));
        var batch = stored.Take(150).Concat(Enumerable.Range(10_000, 30).Select(i => Key(i, 32))).Append(new byte[1]).Append(new byte[600])
            .Select(k => (ReadOnlyMemory<byte>)k).ToList();
        var answers = new List<bool>();
        for (int i = 0, prefetched = 0; i < batch.Count; i++)
        {
            if (i == prefetched)
            {
                prefetched = store.PrefetchIndex(batch, i, batch.Count);
                Assert.Equal(Math.Min(batch.Count, i + KvArenaStore.PrefetchWindow), prefetched);
            }

            answers.Add(store.Exists(batch[i].Span));
        }

        Assert.Equal(batch.Select((k, i) => i < 150 && i != 7), answers);
        Assert.Equal(batch.Count, store.PrefetchIndex(batch, batch.Count, batch.Count));

        // The metadata form: ranges into one buffer.
        byte[] meta = [.. stored[3], .. stored[7], .. Key(20_000, 32)];
        (int, int)[] ranges = [(0, 32), (32, 32), (64, 32)];
        Assert.Equal(3, store.PrefetchIndex(meta, ranges, 0));
        Assert.Equal([true, false, false], ranges.Select(r => store.Exists(meta.AsSpan(r.Item1, r.Item2))));
        Assert.Equal(499, store.GetStats().Keys);
    }

    private static void AssertAgrees(SlotIndex index, Dictionary<string, Slot> reference, List<byte[]> keys, Random random)
    {
        Assert.Equal(reference.Count, index.Count);
        // Prefetch of every key ever added (present or removed) and of arbitrary hashes: a hint that changes nothing.
        index.Prefetch(keys.Select(k => SlotIndex.Hash(k)).ToArray());
        index.Prefetch(Enumerable.Range(0, 64).Select(_ => random.Next(int.MinValue, int.MaxValue)).ToArray());
        foreach (byte[] key in keys)
        {
            bool present = reference.TryGetValue(Convert.ToHexString(key), out Slot? expected);
            Assert.Equal(present, index.TryGetValue(key, out Slot? found));
            Assert.Same(expected, found);
        }
    }

    /// <summary>A key of <paramref name="length"/> bytes that differs by <paramref name="n"/> in its first bytes (and in its length).</summary>
    private static byte[] Key(int n, int length)
    {
        var key = new byte[length];
        for (int i = 0; i < length; i++) key[i] = (byte)((n >> (8 * (i % 4))) + i);
        return key;
    }
}
