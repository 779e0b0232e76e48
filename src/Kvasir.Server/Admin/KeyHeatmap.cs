namespace Kvasir.Server.Admin;

/// <summary>
/// Key popularity over time for the dashboard: GET keys counted per second into 32 buckets of their
/// hash, for the last 60 seconds. Bounded (60 × 32 counters), lock-free, a few nanoseconds per key;
/// races at a second's boundary may misplace a count, which a picture can afford.
/// </summary>
public sealed class KeyHeatmap
{
    public const int Buckets = 32, Seconds = 60;

    private readonly long[] _counts = new long[Seconds * Buckets];
    private readonly long[] _stamps = new long[Seconds];

    public void Record(ReadOnlySpan<byte> key)
    {
        long second = Environment.TickCount64 / 1000;
        int slot = (int)(second % Seconds);
        long stamp = Volatile.Read(ref _stamps[slot]);
        if (stamp != second && Interlocked.CompareExchange(ref _stamps[slot], second, stamp) == stamp)
            Array.Clear(_counts, slot * Buckets, Buckets);
        int bucket = (int)((uint)Hash(key) % Buckets);
        Interlocked.Increment(ref _counts[slot * Buckets + bucket]);
    }

    private static int Hash(ReadOnlySpan<byte> key)
    {
        uint h = 2166136261;
        foreach (byte b in key) h = (h ^ b) * 16777619;
        return (int)(h ^ (h >> 15));
    }

    /// <summary>Rows oldest first: one per second of the last 60 (zeros for seconds without traffic), each 32 counts.</summary>
    public long[][] Snapshot()
    {
        long now = Environment.TickCount64 / 1000;
        var rows = new long[Seconds][];
        for (int age = Seconds - 1; age >= 0; age--)
        {
            long second = now - age;
            int slot = (int)(second % Seconds);
            var row = new long[Buckets];
            if (Volatile.Read(ref _stamps[slot]) == second)
                for (int b = 0; b < Buckets; b++) row[b] = Volatile.Read(ref _counts[slot * Buckets + b]);
            rows[Seconds - 1 - age] = row;
        }
        return rows;
    }
}
