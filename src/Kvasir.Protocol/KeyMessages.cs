namespace Kvasir.Protocol;

/// <summary>Tiers a SCAN reply says it listed (bit set), and the tier of an INFO entry (value).</summary>
public static class WireTiers
{
    public const byte None = 0, Dram = 1, Disk = 2, Shared = 3;

    /// <summary>The bit of <paramref name="tier"/> in a SCAN reply's tier set.</summary>
    public static byte Bit(byte tier) => (byte)(1 << (tier - 1));

    /// <summary>"dram", "disk", "shared" or "none".</summary>
    public static string Name(byte tier) => tier switch { Dram => "dram", Disk => "disk", Shared => "shared", _ => "none" };
}

/// <summary>SCAN request metadata: prefix (bytes16) · cursor (bytes16; empty: from the start) · limit (u32, 1..max_batch_keys).</summary>
public sealed record ScanRequest(byte[] Prefix, byte[] Cursor, uint Limit)
{
    public int Size => 2 + Prefix.Length + 2 + Cursor.Length + 4;

    public void Write(ref MetaWriter writer)
    {
        writer.Key(Prefix);
        writer.Key(Cursor);
        writer.U32(Limit);
    }

    /// <summary>Parses and checks the limits: a prefix or cursor longer than <paramref name="maxKey"/> is BadFrame, a limit of 0 BadFrame, above <paramref name="maxBatch"/> BatchTooLarge.</summary>
    public static ScanRequest Read(ReadOnlySpan<byte> meta, int maxKey, int maxBatch)
    {
        var r = new MetaReader(meta);
        var prefix = r.Key().ToArray();
        var cursor = r.Key().ToArray();
        uint limit = r.U32();
        r.End();
        if (prefix.Length > maxKey || cursor.Length > maxKey)
            throw new ProtocolException(WireStatus.BadFrame, $"SCAN prefix or cursor longer than the {maxKey}-byte key limit");
        if (limit == 0) throw new ProtocolException(WireStatus.BadFrame, "SCAN limit must be at least 1");
        if (limit > (uint)maxBatch) throw new ProtocolException(WireStatus.BatchTooLarge, $"SCAN limit {limit} exceeds the batch limit of {maxBatch}");
        return new ScanRequest(prefix, cursor, limit);
    }
}

/// <summary>One key of a SCAN reply.</summary>
public readonly record struct ScanEntry(byte[] Key, long Length);

/// <summary>
/// SCAN reply metadata: tiers listed (u8 bit set: 0x1 DRAM, 0x2 disk, 0x4 shared) · count (u32) · count × (key bytes16 ·
/// value length u64) · cursor (bytes16: pass it to the next SCAN; empty when the listing is complete).
/// </summary>
public sealed record ScanReply(byte Tiers, IReadOnlyList<ScanEntry> Entries, byte[] Cursor)
{
    public int Size => 1 + 4 + Entries.Sum(e => 2 + e.Key.Length + 8) + 2 + Cursor.Length;

    public void Write(ref MetaWriter writer)
    {
        writer.U8(Tiers);
        writer.U32((uint)Entries.Count);
        foreach (var e in Entries)
        {
            writer.Key(e.Key);
            writer.U64((ulong)e.Length);
        }
        writer.Key(Cursor);
    }

    public static ScanReply Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        byte tiers = r.U8();
        uint count = r.U32();
        if (count * 10L > r.Remaining) throw new ProtocolException(WireStatus.BadFrame, "SCAN reply count does not fit the metadata");
        var entries = new ScanEntry[count];
        for (int i = 0; i < entries.Length; i++)
        {
            var key = r.Key().ToArray();
            entries[i] = new ScanEntry(key, checked((long)r.U64()));
        }
        var cursor = r.Key().ToArray();
        r.End();
        return new ScanReply(tiers, entries, cursor);
    }
}

/// <summary>One entry of an INFO reply. Status Ok or NotFound (then every other field is zero) or InvalidKey.</summary>
/// <param name="Status">Per-key status.</param>
/// <param name="Tier">Where the value is (<see cref="WireTiers"/>).</param>
/// <param name="Length">Value length in bytes.</param>
/// <param name="AgeMs">Milliseconds since the value was written (0 when served from below DRAM).</param>
/// <param name="TtlMs">Milliseconds until it expires; 0 when it does not.</param>
/// <param name="Pins">Pins on the value.</param>
/// <param name="Leases">Readers holding the value now.</param>
/// <param name="NamespaceBudget">The budget of the key's namespace in bytes; 0 when the key is in none.</param>
/// <param name="NamespaceUsed">Bytes the namespace's keys hold in the node's DRAM now (what the budget limits).</param>
/// <param name="NamespacePrefix">The namespace's prefix; empty when none.</param>
public sealed record InfoEntry(WireStatus Status, byte Tier, long Length, long AgeMs, long TtlMs, uint Pins, uint Leases,
    long NamespaceBudget, long NamespaceUsed, byte[] NamespacePrefix)
{
    /// <summary>Fixed bytes of an entry, before the namespace prefix's bytes.</summary>
    public const int FixedSize = 1 + 1 + 8 + 8 + 8 + 4 + 4 + 8 + 8 + 2;

    public int Size => FixedSize + NamespacePrefix.Length;

    public static InfoEntry Missing(WireStatus status) => new(status, WireTiers.None, 0, 0, 0, 0, 0, 0, 0, []);
}

/// <summary>
/// INFO request metadata: a key batch. Reply metadata: count (u32) · count × (status u8 · tier u8 · length u64 ·
/// age_ms u64 · ttl_ms u64 · pins u32 · leases u32 · namespace budget u64 · namespace used u64 · namespace prefix bytes16).
/// </summary>
public static class InfoReply
{
    public static int Size(IReadOnlyList<InfoEntry> entries) => 4 + entries.Sum(e => e.Size);

    public static void Write(ref MetaWriter writer, IReadOnlyList<InfoEntry> entries)
    {
        writer.U32((uint)entries.Count);
        foreach (var e in entries)
        {
            writer.U8(checked((byte)e.Status));
            writer.U8(e.Tier);
            writer.U64((ulong)e.Length);
            writer.U64((ulong)e.AgeMs);
            writer.U64((ulong)e.TtlMs);
            writer.U32(e.Pins);
            writer.U32(e.Leases);
            writer.U64((ulong)e.NamespaceBudget);
            writer.U64((ulong)e.NamespaceUsed);
            writer.Key(e.NamespacePrefix);
        }
    }

    public static InfoEntry[] Read(ReadOnlySpan<byte> meta, int expectedCount)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count != expectedCount) throw new ProtocolException(WireStatus.BadFrame, $"INFO reply has {count} entries for {expectedCount} keys");
        var entries = new InfoEntry[count];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = new InfoEntry((WireStatus)r.U8(), r.U8(), (long)r.U64(), (long)r.U64(), (long)r.U64(), r.U32(), r.U32(),
                (long)r.U64(), (long)r.U64(), r.Key().ToArray());
        }
        r.End();
        return entries;
    }
}

/// <summary>REMOVE_PREFIX request metadata: prefix (bytes16; empty: every key). Reply metadata: removed (u64) · failed (u64).</summary>
public static class RemovePrefixMessages
{
    public static byte[] Request(ReadOnlySpan<byte> prefix)
    {
        var meta = new byte[2 + prefix.Length];
        var w = new MetaWriter(meta);
        w.Key(prefix);
        return meta;
    }

    public static byte[] ReadRequest(ReadOnlySpan<byte> meta, int maxKey)
    {
        var r = new MetaReader(meta);
        var prefix = r.Key().ToArray();
        r.End();
        if (prefix.Length > maxKey) throw new ProtocolException(WireStatus.BadFrame, $"REMOVE_PREFIX prefix longer than the {maxKey}-byte key limit");
        return prefix;
    }

    public static byte[] Reply(long removed, long failed)
    {
        var meta = new byte[16];
        var w = new MetaWriter(meta);
        w.U64((ulong)removed);
        w.U64((ulong)failed);
        return meta;
    }

    public static (long Removed, long Failed) ReadReply(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        var result = ((long)r.U64(), (long)r.U64());
        r.End();
        return result;
    }
}
