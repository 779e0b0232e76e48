using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Kvasir.Protocol.Stats;
using Kvasir.Storage;

namespace Kvasir.Server.Admin;

/// <summary>
/// The node's own access statistics: the last <see cref="Capacity"/> GET and LEASE keys with their time, hit or
/// miss, tier and size, in a ring allocated once (<see cref="SlotBytes"/> + 24 bytes per entry: 15 MiB for the
/// default 100,000), served as the access statistics file, schema v1 (docs/engine-side.md), at
/// <c>GET /v1/access-stats</c> and drawn by the dashboard. Lock-free and allocation-free per access: a writer claims
/// a slot with one interlocked increment and stamps it last; a reader skips a slot whose stamp moved while it
/// copied. Two writers a whole ring apart racing for one slot may leave a mixed entry, which statistics can afford.
/// </summary>
public sealed class AccessStats
{
    /// <summary>Key bytes kept per entry; a longer key keeps its first 112 bytes and an 8-byte hash of the whole key.</summary>
    public const int SlotBytes = 128;

    private const int LongKeyPrefix = SlotBytes - 16;

    private readonly byte[] _keys;
    private readonly Entry[] _entries;
    private readonly long[] _stamps;
    private readonly long _originTicks = Stopwatch.GetTimestamp();
    private readonly long _originUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
    private long _recorded;

    private struct Entry
    {
        public long Ticks;
        public long Bytes;
        public short KeyLength;   // bytes kept in the slot; negative: a long key cut to LongKeyPrefix + its hash
        public bool Hit;
        public StoreTier Tier;
    }

    /// <param name="capacity">Entries kept (the oldest are dropped); 0 turns recording off.</param>
    public AccessStats(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        Capacity = capacity;
        _keys = new byte[(long)capacity * SlotBytes];
        _entries = new Entry[capacity];
        _stamps = new long[capacity];
    }

    public int Capacity { get; }

    /// <summary>Accesses recorded since the node started (kept or since dropped).</summary>
    public long Recorded => Interlocked.Read(ref _recorded);

    /// <summary>Records one access: <paramref name="tier"/> where a hit was served (ignored for a miss), <paramref name="bytes"/> its size.</summary>
    public void Record(ReadOnlySpan<byte> key, bool hit, StoreTier tier, long bytes)
    {
        if (Capacity == 0) return;
        long seq = Interlocked.Increment(ref _recorded) - 1;
        int slot = (int)(seq % Capacity);
        Volatile.Write(ref _stamps[slot], 0);
        var dest = _keys.AsSpan(slot * SlotBytes, SlotBytes);
        short length;
        if (key.Length <= SlotBytes)
        {
            key.CopyTo(dest);
            length = (short)key.Length;
        }
        else
        {
            key[..LongKeyPrefix].CopyTo(dest);
            BinaryPrimitives.WriteUInt64BigEndian(dest[LongKeyPrefix..], Fnv1a(key));
            length = -SlotBytes;
        }
        _entries[slot] = new Entry { Ticks = Stopwatch.GetTimestamp(), Bytes = hit ? bytes : -1, KeyLength = length, Hit = hit, Tier = hit ? tier : StoreTier.None };
        Volatile.Write(ref _stamps[slot], seq + 1);
    }

    private static ulong Fnv1a(ReadOnlySpan<byte> key)
    {
        ulong h = 0xcbf29ce484222325;
        foreach (byte b in key) h = (h ^ b) * 0x100000001b3;
        return h;
    }

    /// <summary>The block id of a key, as the schema names it: the key as UTF-8 when it is printable text, else its lowercase hex.</summary>
    public static string BlockId(ReadOnlySpan<byte> key)
    {
        foreach (byte b in key)
            if (b is < 0x20 or 0x7f) return Convert.ToHexStringLower(key);
        try { return new UTF8Encoding(false, true).GetString(key); }
        catch (DecoderFallbackException) { return Convert.ToHexStringLower(key); }
    }

    /// <summary>One kept access, for <see cref="Snapshot"/>.</summary>
    public readonly record struct Access(double TimeMs, string Block, bool Hit, StoreTier Tier, long? Bytes);

    /// <summary>The kept accesses in time order (at most the last <paramref name="last"/>), their time origin, and how many were not kept.</summary>
    public (List<Access> Accesses, long StartUnixMs, long EndUnixMs, long Dropped) Snapshot(int last = int.MaxValue)
    {
        long end = Recorded;
        long first = Math.Max(0, end - Math.Min(Capacity, Math.Max(0, last)));
        var list = new List<Access>((int)(end - first));
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);   // one string per distinct block
        Span<byte> key = stackalloc byte[SlotBytes];
        for (long seq = first; seq < end; seq++)
        {
            int slot = (int)(seq % Capacity);
            if (Volatile.Read(ref _stamps[slot]) != seq + 1) continue;
            var e = _entries[slot];
            _keys.AsSpan(slot * SlotBytes, SlotBytes).CopyTo(key);
            if (Volatile.Read(ref _stamps[slot]) != seq + 1) continue;
            string id = e.KeyLength >= 0
                ? BlockId(key[..e.KeyLength])
                : BlockId(key[..LongKeyPrefix]) + "~" + Convert.ToHexStringLower(key[LongKeyPrefix..]);
            id = ids.TryGetValue(id, out var same) ? same : ids[id] = id;
            double ms = Stopwatch.GetElapsedTime(_originTicks, e.Ticks).TotalMilliseconds;
            list.Add(new Access(ms, id, e.Hit, e.Tier, e.Hit ? e.Bytes : null));
        }
        list.Sort((a, b) => a.TimeMs.CompareTo(b.TimeMs));   // stable enough: concurrent writers may stamp out of order
        long nowMs = _originUnixMs + (long)Stopwatch.GetElapsedTime(_originTicks).TotalMilliseconds;
        long startMs = list.Count > 0 ? _originUnixMs + (long)Math.Floor(list[0].TimeMs) : nowMs;
        return (list, startMs, nowMs, end - list.Count);
    }

    /// <summary>The access statistics file, schema v1, with <c>source</c> "node:<paramref name="nodeId"/>".</summary>
    public byte[] ToJson(string nodeId, int last = int.MaxValue)
    {
        var (accesses, startMs, endMs, dropped) = Snapshot(last);
        double shift = startMs - _originUnixMs;   // times in the file count from start_unix_ms
        var records = accesses.ConvertAll(a => new AccessRecord(Math.Round(Math.Max(0, a.TimeMs - shift), 3), a.Block, a.Hit, TierName(a.Tier), a.Bytes));
        return AccessStatsJson.ToUtf8Bytes(new AccessStatsDocument("node:" + nodeId, startMs, endMs, dropped, records));
    }

    private static string? TierName(StoreTier tier) => tier switch
    {
        StoreTier.Dram => "dram",
        StoreTier.Disk => "disk",
        StoreTier.Shared => "shared",
        _ => null,
    };
}
