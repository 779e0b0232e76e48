namespace Kvasir.Server.Admin;

/// <summary>
/// Key popularity over time for the dashboard: GET keys counted per second into 32 buckets of their
/// hash, for the last 60 seconds. Bounded (60 × 32 counters), lock-free, no allocation, ~15 ns per key;
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
        int bucket = (int)(Hash(key) >> 59);   // the top 5 bits: 32 buckets
        Interlocked.Increment(ref _counts[slot * Buckets + bucket]);
    }

    /// <summary>Eight bytes per step (a byte-at-a-time FNV cost 38 ns for a 38-byte key; docs/benchmarks.md).</summary>
    private static ulong Hash(ReadOnlySpan<byte> key)
    {
        ulong h = (ulong)key.Length * 0x9E3779B97F4A7C15;
        while (key.Length >= 8)
        {
            h = (h ^ System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(key)) * 0xFF51AFD7ED558CCD;
            h ^= h >> 32;
            key = key[8..];
        }
        ulong tail = 0;
        for (int i = 0; i < key.Length; i++) tail |= (ulong)key[i] << (8 * i);
        h = (h ^ tail) * 0xC4CEB9FE1A85EC53;
        return h ^ (h >> 29);
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
