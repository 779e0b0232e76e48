namespace Kvasir.Client.Internal;

/// <summary>
/// How one large batch is split over several idle connections to its node (<see cref="KvStoreOptions.StripeBytes"/>):
/// contiguous runs of the batch's keys, about equal in bytes, each sent as a request of its own on a connection of its
/// own, so one request in flight moves its bytes over as many streams (and as many of the node's and the client's
/// cores) as there are idle connections. Entries are never split: a value travels whole on one connection.
/// </summary>
internal static class Stripes
{
    /// <summary>
    /// Cuts [<paramref name="start"/>, <paramref name="end"/>) into at most <paramref name="most"/> contiguous runs, and no
    /// more than the total (by <paramref name="length"/>) holds <paramref name="minBytes"/>, as equal in bytes as whole
    /// entries allow (uneven entries make uneven runs: a run may hold less than the minimum). One
    /// run (the whole range) when the bytes are under twice the minimum, when there is one entry or one connection, or
    /// when striping is off (<paramref name="minBytes"/> ≤ 0).
    /// </summary>
    public static List<(int Start, int End)> Split(int start, int end, int most, long minBytes, Func<int, long> length)
    {
        var runs = new List<(int, int)>();
        long total = 0;
        if (minBytes > 0 && most > 1 && end - start > 1)
            for (int i = start; i < end; i++) total += length(i);
        int n = minBytes <= 0 ? 1 : (int)Math.Min(Math.Min(most, end - start), total / minBytes);
        if (n <= 1)
        {
            runs.Add((start, end));
            return runs;
        }
        // The k-th cut falls at the first entry whose end reaches k/n of the bytes; a run never ends empty.
        long done = 0;
        int runStart = start;
        for (int i = start; i < end && runs.Count < n - 1; i++)
        {
            done += length(i);
            int left = end - (i + 1);                 // entries after i, still to place
            int runsLeft = n - runs.Count - 1;        // runs after this one
            if ((done * n >= total * (runs.Count + 1) && left >= runsLeft) || left == runsLeft)
            {
                runs.Add((runStart, i + 1));
                runStart = i + 1;
            }
        }
        runs.Add((runStart, end));
        return runs;
    }

    /// <summary>True when some key appears twice in [start, end): such a PUT is not striped, so the last value still wins.</summary>
    public static bool HasDuplicateKey(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end)
    {
        var seen = new HashSet<ReadOnlyMemory<byte>>(end - start, KeyBytes.Instance);
        for (int i = start; i < end; i++)
            if (!seen.Add(keys[i])) return true;
        return false;
    }

    private sealed class KeyBytes : IEqualityComparer<ReadOnlyMemory<byte>>
    {
        public static readonly KeyBytes Instance = new();

        public bool Equals(ReadOnlyMemory<byte> x, ReadOnlyMemory<byte> y) => x.Span.SequenceEqual(y.Span);

        public int GetHashCode(ReadOnlyMemory<byte> key)
        {
            var h = new HashCode();
            h.AddBytes(key.Span);
            return h.ToHashCode();
        }
    }
}
