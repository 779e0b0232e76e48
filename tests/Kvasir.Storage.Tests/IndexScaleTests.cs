using Kvasir.Protocol;

namespace Kvasir.Storage.Tests;

/// <summary>
/// The index at a few thousand keys (enough to fill, split and empty the ordered key chunks, and to grow the hash
/// table several times): random puts, overwrites and removes against a plain sorted set as the reference; every scan
/// (whole store, paged, by prefix, from a cursor) and every lookup must agree with it.
/// </summary>
public sealed class IndexScaleTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Scans_and_lookups_match_a_sorted_reference_under_random_puts_and_removes(int seed)
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 8 << 20, Granule = 64, MaxValueBytes = 64 });
        var random = new Random(seed);
        var reference = new SortedSet<byte[]>(Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b)));
        for (int step = 0; step < 20_000; step++)
        {
            // Keys of 1..3 bytes from a small alphabet: many share prefixes, and the key space (~4k) forces chunk churn.
            byte[] key = RandomKey(random);
            if (random.Next(100) < 65)
            {
                Assert.Equal(WireStatus.Ok, store.TryReserve(key, random.Next(0, 65), out Reservation? reservation));
                store.Commit(reservation!, 0);
                reference.Add(key);
            }
            else
            {
                Assert.Equal(reference.Remove(key) ? WireStatus.Ok : WireStatus.NotFound, store.Remove(key));
            }

            if (step % 2000 == 1999)
            {
                AssertAgrees(store, reference, random);
            }
        }

        foreach (byte[] key in reference.ToList())
        {
            Assert.Equal(WireStatus.Ok, store.Remove(key));
        }

        Assert.Equal(0, store.GetStats().Keys);
        Assert.Empty(store.Scan([], [], 10).Keys);
    }

    private static byte[] RandomKey(Random random)
    {
        var key = new byte[random.Next(1, 4)];
        for (int i = 0; i < key.Length; i++) key[i] = (byte)(random.Next(16) * 17);
        return key;
    }

    private static void AssertAgrees(KvArenaStore store, SortedSet<byte[]> reference, Random random)
    {
        Assert.Equal(reference.Count, store.GetStats().Keys);
        Assert.Equal(reference.Select(Convert.ToHexString), ScanAll(store, [], pageSize: 1 + random.Next(700)).Select(Convert.ToHexString));
        for (int i = 0; i < 8; i++)
        {
            byte[] prefix = RandomKey(random)[..1];
            var expected = reference.Where(k => k.AsSpan().StartsWith(prefix)).Select(Convert.ToHexString);
            Assert.Equal(expected, ScanAll(store, prefix, pageSize: 1 + random.Next(50)).Select(Convert.ToHexString));

            byte[] probe = RandomKey(random);
            Assert.Equal(reference.Contains(probe), store.Exists(probe));
        }
    }

    private static List<byte[]> ScanAll(KvArenaStore store, byte[] prefix, int pageSize)
    {
        var keys = new List<byte[]>();
        byte[] after = [];
        for (int pages = 0; pages < 100_000; pages++)
        {
            KeyPage page = store.Scan(prefix, after, pageSize);
            keys.AddRange(page.Keys.Select(k => k.Key));
            if (!page.More) return keys;
            after = keys[^1];
        }

        throw new InvalidOperationException("the scan did not end within 100,000 pages");
    }
}
