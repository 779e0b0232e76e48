namespace Kvasir.Protocol;

/// <summary>
/// Metadata of GET, EXISTS, REMOVE, PIN and UNPIN requests: count (u32) · count × (key length u16 · key).
/// </summary>
public static class KeyBatchRequest
{
    /// <summary>Metadata size for <paramref name="count"/> keys starting at <paramref name="start"/>.</summary>
    public static int Size(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int count)
    {
        int size = 4;
        for (int i = start; i < start + count; i++) size += 2 + keys[i].Length;
        return size;
    }

    public static void Write(ref MetaWriter writer, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int count)
    {
        writer.U32((uint)count);
        for (int i = start; i < start + count; i++) writer.Key(keys[i].Span);
    }
}

/// <summary>Walks the keys of a key-batch request without allocating.</summary>
public ref struct KeyBatchReader
{
    private MetaReader _reader;
    private int _left;

    /// <summary>Reads the count and checks it against <paramref name="maxBatch"/> and the metadata length.</summary>
    public KeyBatchReader(ReadOnlySpan<byte> meta, int maxBatch)
    {
        _reader = new MetaReader(meta);
        uint count = _reader.U32();
        if (count > (uint)maxBatch)
            throw new ProtocolException(WireStatus.BatchTooLarge, $"batch of {count} keys exceeds the limit of {maxBatch}");
        if ((long)count * 2 > _reader.Remaining)
            throw new ProtocolException(WireStatus.BadFrame, $"batch count {count} does not fit the metadata");
        Count = (int)count;
        _left = Count;
    }

    public int Count { get; }

    /// <summary>Offset in the metadata of the key returned by the last <see cref="Next"/>.</summary>
    public int KeyOffset { get; private set; }

    /// <summary>Returns the next key; after the last one checks that no bytes are left over.</summary>
    public bool Next(out ReadOnlySpan<byte> key)
    {
        if (_left == 0) { _reader.End(); key = default; return false; }
        _left--;
        int length = _reader.U16();
        KeyOffset = _reader.Position;
        key = _reader.Bytes(length);
        return true;
    }
}

/// <summary>
/// PUT request metadata: [parent key (u16 length · key) when the ChainParent flag is set] ·
/// count (u32) · count × (key length u16 · value length u64 · key). The payload is the values,
/// concatenated in entry order; its length must equal the sum of the value lengths. After the key, an entry carries
/// the value's CRC-32C (u32) with the ValueCrc flag, then the value's version (u64) with the Version flag, in that
/// order; with the Ttl flag a u32 time to live follows the last entry. With the CrcTrailer flag the entries carry no CRC:
/// each value in the payload is followed by its CRC-32C (u32), so the payload is the value lengths plus 4 per entry.
/// </summary>
public static class PutRequest
{
    /// <summary>Bytes after each value in the payload of a PUT with <see cref="FrameFlags.CrcTrailer"/>: its CRC-32C.</summary>
    public const int TrailerSize = 4;

    /// <summary>The payload length of a PUT: the values, and with <paramref name="crcTrailer"/> one CRC after each.</summary>
    public static long PayloadLength(long valueBytes, int count, bool crcTrailer) => valueBytes + (crcTrailer ? (long)count * TrailerSize : 0);

    /// <summary>Bytes of one entry with a key of <paramref name="keyLength"/> bytes.</summary>
    public static int EntrySize(int keyLength, bool valueCrc = false, bool version = false) =>
        2 + 8 + keyLength + (valueCrc ? 4 : 0) + (version ? ValueVersions.Size : 0);

    /// <summary>Bytes before the first entry.</summary>
    public static int PrefixSize(ReadOnlySpan<byte> parent, bool hasParent) => 4 + (hasParent ? 2 + parent.Length : 0);

    public static void WritePrefix(ref MetaWriter writer, ReadOnlySpan<byte> parent, bool hasParent, int count)
    {
        if (hasParent) writer.Key(parent);
        writer.U32((uint)count);
    }

    public static void WriteEntry(ref MetaWriter writer, ReadOnlySpan<byte> key, long valueLength)
    {
        writer.U16(checked((ushort)key.Length));
        writer.U64((ulong)valueLength);
        writer.Bytes(key);
    }

    /// <summary>An entry of a PUT with the ValueCrc flag: the entry, then the writer's CRC-32C of the value.</summary>
    public static void WriteEntry(ref MetaWriter writer, ReadOnlySpan<byte> key, long valueLength, uint crc32c)
    {
        WriteEntry(ref writer, key, valueLength);
        writer.U32(crc32c);
    }

    /// <summary>An entry of a PUT with <see cref="FrameFlags.Version"/>: the entry, then the value's version (u64).</summary>
    public static void WriteEntry(ref MetaWriter writer, ReadOnlySpan<byte> key, long valueLength, long version)
    {
        WriteEntry(ref writer, key, valueLength);
        writer.U64((ulong)version);
    }

    /// <summary>
    /// An entry with any of the per-entry extensions, in their wire order: the entry, then the writer's CRC-32C when
    /// <paramref name="crc32c"/> is set (ValueCrc flag), then the version when <paramref name="version"/> is set (Version flag).
    /// </summary>
    public static void WriteEntry(ref MetaWriter writer, ReadOnlySpan<byte> key, long valueLength, uint? crc32c, long? version)
    {
        WriteEntry(ref writer, key, valueLength);
        if (crc32c is uint crc) writer.U32(crc);
        if (version is long v) writer.U64((ulong)v);
    }

    /// <summary>Bytes after the last entry: 4 with the <see cref="FrameFlags.Ttl"/> flag, else 0.</summary>
    public static int SuffixSize(bool ttl) => ttl ? 4 : 0;

    /// <summary>With the <see cref="FrameFlags.Ttl"/> flag, after the last entry: every entry's time to live in seconds (0: never expires).</summary>
    public static void WriteTtl(ref MetaWriter writer, uint seconds) => writer.U32(seconds);
}

/// <summary>Walks the entries of a PUT request without allocating.</summary>
public ref struct PutBatchReader
{
    private MetaReader _reader;
    private int _left;
    private readonly bool _valueCrc;
    private readonly bool _ttl;
    private readonly bool _versioned;

    public PutBatchReader(ReadOnlySpan<byte> meta, FrameFlags flags, int maxBatch)
    {
        _reader = new MetaReader(meta);
        _valueCrc = (flags & FrameFlags.ValueCrc) != 0;
        if (_valueCrc && (flags & FrameFlags.CrcTrailer) != 0)
            throw new ProtocolException(WireStatus.BadFrame, "PUT flags VALUE_CRC and CRC_TRAILER exclude each other: a value's CRC is in its entry or after its bytes, not both");
        _ttl = (flags & FrameFlags.Ttl) != 0;
        _versioned = (flags & FrameFlags.Version) != 0;
        if ((flags & FrameFlags.ChainParent) != 0)
        {
            int parentLength = _reader.U16();
            ParentOffset = _reader.Position;
            Parent = _reader.Bytes(parentLength);
        }
        uint count = _reader.U32();
        if (count > (uint)maxBatch)
            throw new ProtocolException(WireStatus.BatchTooLarge, $"batch of {count} keys exceeds the limit of {maxBatch}");
        if ((long)count * (10 + (_valueCrc ? 4 : 0) + (_versioned ? ValueVersions.Size : 0)) > _reader.Remaining)
            throw new ProtocolException(WireStatus.BadFrame, $"batch count {count} does not fit the metadata");
        Count = (int)count;
        _left = Count;
    }

    public int Count { get; }

    /// <summary>The key the first entry continues; empty when the request has no ChainParent flag.</summary>
    public ReadOnlySpan<byte> Parent { get; }

    /// <summary>Offset of <see cref="Parent"/> in the metadata.</summary>
    public int ParentOffset { get; }

    /// <summary>Offset in the metadata of the key returned by the last <see cref="Next"/>.</summary>
    public int KeyOffset { get; private set; }

    /// <summary>The writer's CRC-32C of the value returned by the last <see cref="Next"/> (ValueCrc flag); 0 without it.</summary>
    public uint ValueCrc { get; private set; }

    /// <summary>With the <see cref="FrameFlags.Ttl"/> flag: the entries' time to live in seconds (0: never), read after the last entry; else null.</summary>
    public uint? TtlSeconds { get; private set; }
    /// <summary>The version of the entry returned by the last <see cref="Next"/>: 0 without <see cref="FrameFlags.Version"/>.</summary>
    public long Version { get; private set; }

    public bool Next(out ReadOnlySpan<byte> key, out long valueLength)
    {
        if (_left == 0)
        {
            if (_ttl) TtlSeconds = _reader.U32();
            _reader.End();
            key = default;
            valueLength = 0;
            return false;
        }
        _left--;
        ushort keyLength = _reader.U16();
        ulong length = _reader.U64();
        if (length > (ulong)ProtocolLimits.HardMaxValueBytes)
            throw new ProtocolException(WireStatus.FrameTooLarge, $"value of {length} bytes exceeds the hard limit of {ProtocolLimits.HardMaxValueBytes}");
        valueLength = (long)length;
        KeyOffset = _reader.Position;
        key = _reader.Bytes(keyLength);
        if (_valueCrc) ValueCrc = _reader.U32();
        if (_versioned)
        {
            ulong version = _reader.U64();
            if (version > ValueVersions.Max)
                throw new ProtocolException(WireStatus.BadFrame, $"version {version} exceeds the largest version {ValueVersions.Max}");
            Version = (long)version;
        }
        return true;
    }

    /// <summary>
    /// Checks the whole metadata (structure, limits, that the payload length equals the sum of the
    /// value lengths, plus 4 bytes per entry with <see cref="FrameFlags.CrcTrailer"/>) before the node acts on any entry.
    /// Returns the entry count.
    /// </summary>
    public static int Validate(ReadOnlySpan<byte> meta, FrameFlags flags, int maxBatch, long payloadLength)
    {
        var reader = new PutBatchReader(meta, flags, maxBatch);
        long sum = 0;
        while (reader.Next(out _, out long length)) sum += length;
        bool trailer = (flags & FrameFlags.CrcTrailer) != 0;
        long expected = PutRequest.PayloadLength(sum, reader.Count, trailer);
        if (expected != payloadLength)
            throw new ProtocolException(WireStatus.BadFrame, trailer
                ? $"payload length {payloadLength} differs from the sum of the value lengths {sum} plus a 4-byte CRC trailer per entry ({expected}): CRC_TRAILER"
                : $"payload length {payloadLength} differs from the sum of the value lengths {sum}");
        return reader.Count;
    }
}

/// <summary>
/// Reply metadata of PUT, EXISTS, REMOVE, PIN and UNPIN: count (u32) · count × status (u8).
/// For EXISTS, Ok means present and NotFound absent.
/// </summary>
public static class StatusListReply
{
    public static int Size(int count) => 4 + count;

    public static void Write(ref MetaWriter writer, ReadOnlySpan<WireStatus> statuses)
    {
        writer.U32((uint)statuses.Length);
        foreach (var s in statuses) writer.U8(checked((byte)s));
    }

    public static WireStatus[] Read(ReadOnlySpan<byte> meta, int expectedCount)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count != expectedCount)
            throw new ProtocolException(WireStatus.BadFrame, $"reply has {count} statuses for {expectedCount} keys");
        var statuses = new WireStatus[count];
        for (int i = 0; i < statuses.Length; i++) statuses[i] = (WireStatus)r.U8();
        r.End();
        return statuses;
    }
}

/// <summary>One entry of a GET reply.</summary>
public readonly record struct GetReplyEntry(WireStatus Status, long Length, uint Crc32C)
{
    /// <summary>The value's version, sent only on a connection granted <see cref="ValueVersions.Feature"/>; 0 for a miss.</summary>
    public long Version { get; init; }
}

/// <summary>
/// GET reply metadata: count (u32) · count × (status u8 · value length u64 · CRC32C u32).
/// Length and CRC are zero for a miss. The payload is the values of the Ok entries,
/// concatenated in key order; a value is always whole (a GET never returns a short read).
/// </summary>
public static class GetReply
{
    public const int EntrySize = 1 + 8 + 4;

    public static int Size(int count, bool versioned = false) => 4 + count * (versioned ? EntrySize + ValueVersions.Size : EntrySize);

    public static void WriteCount(ref MetaWriter writer, int count) => writer.U32((uint)count);

    /// <param name="writer">Where the entry goes.</param>
    /// <param name="entry">The entry.</param>
    /// <param name="versioned">The connection was granted <see cref="ValueVersions.Feature"/>: the entry ends with its version.</param>
    public static void WriteEntry(ref MetaWriter writer, GetReplyEntry entry, bool versioned = false)
    {
        writer.U8(checked((byte)entry.Status));
        writer.U64((ulong)entry.Length);
        writer.U32(entry.Crc32C);
        if (versioned) writer.U64((ulong)entry.Version);
    }

    /// <summary>Parses and checks that the Ok lengths add up to <paramref name="payloadLength"/>; <paramref name="versioned"/>: entries carry versions.</summary>
    public static GetReplyEntry[] Read(ReadOnlySpan<byte> meta, int expectedCount, long payloadLength, bool versioned = false)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count != expectedCount)
            throw new ProtocolException(WireStatus.BadFrame, $"reply has {count} entries for {expectedCount} keys");
        var entries = new GetReplyEntry[count];
        long sum = 0;
        for (int i = 0; i < entries.Length; i++)
        {
            var status = (WireStatus)r.U8();
            ulong length = r.U64();
            uint crc = r.U32();
            if (length > (ulong)ProtocolLimits.HardMaxValueBytes)
                throw new ProtocolException(WireStatus.BadFrame, "value length out of range in GET reply");
            if (status != WireStatus.Ok && length != 0)
                throw new ProtocolException(WireStatus.BadFrame, "a miss carries a non-zero length");
            ulong version = versioned ? r.U64() : 0;
            if (version > ValueVersions.Max)
                throw new ProtocolException(WireStatus.BadFrame, "version out of range in GET reply");
            entries[i] = new GetReplyEntry(status, (long)length, crc) { Version = (long)version };
            sum += (long)length;
        }
        r.End();
        if (sum != payloadLength)
            throw new ProtocolException(WireStatus.BadFrame, $"GET reply payload {payloadLength} differs from the sum of lengths {sum}");
        return entries;
    }
}

/// <summary>
/// STATS reply metadata: count (u32) · count × (name length u8 · ASCII name · value i64).
/// Fractions are sent in parts per million (names end in <c>_ppm</c>).
/// </summary>
public static class StatsReply
{
    public static int Size(IReadOnlyList<KeyValuePair<string, long>> stats)
    {
        int size = 4;
        foreach (var s in stats) size += 1 + s.Key.Length + 8;
        return size;
    }

    public static void Write(ref MetaWriter writer, IReadOnlyList<KeyValuePair<string, long>> stats)
    {
        writer.U32((uint)stats.Count);
        foreach (var (name, value) in stats)
        {
            if (name.Length == 0 || !System.Text.Ascii.IsValid(name)) throw new ArgumentException($"stat name '{name}' must be non-empty ASCII");
            writer.U8(checked((byte)name.Length));
            foreach (char c in name) writer.U8((byte)c);
            writer.U64((ulong)value);
        }
    }

    public static List<KeyValuePair<string, long>> Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count * 9L > r.Remaining)
            throw new ProtocolException(WireStatus.BadFrame, "stats count does not fit the metadata");
        var list = new List<KeyValuePair<string, long>>((int)count);
        for (int i = 0; i < count; i++)
        {
            var name = System.Text.Encoding.ASCII.GetString(r.Bytes(r.U8()));
            list.Add(new(name, (long)r.U64()));
        }
        r.End();
        return list;
    }
}

/// <summary>Metadata of a frame-level error reply: message length (u16) · UTF-8 message.</summary>
public static class ErrorReply
{
    public const int MaxMessageBytes = 1024;

    public static byte[] Encode(string message)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(message);
        if (bytes.Length > MaxMessageBytes)
        {
            int cut = MaxMessageBytes;
            while (cut > 0 && (bytes[cut] & 0xC0) == 0x80) cut--; // never split a UTF-8 sequence
            bytes = bytes[..cut];
        }
        var meta = new byte[2 + bytes.Length];
        var w = new MetaWriter(meta);
        w.Key(bytes);
        return meta;
    }

    public static string Read(ReadOnlySpan<byte> meta)
    {
        if (meta.IsEmpty) return "";
        var r = new MetaReader(meta);
        var text = System.Text.Encoding.UTF8.GetString(r.Key());
        r.End();
        return text;
    }
}
