using System.Buffers.Binary;
using Kvasir.Protocol;

namespace Kvasir.Storage.Tiers;

/// <summary>
/// The on-disk formats of the disk tier (docs/tiers.md § Disk layout): the record header written in
/// front of every key and value in a segment's data file, and the fixed-size entry that names the
/// record in the segment's index file. Recovery reads data only at offsets an index entry names, so
/// bytes inside a stored value are never taken for a record.
/// </summary>
internal static class DiskRecord
{
    /// <summary>"KVD2", little-endian: a version-2 record header.</summary>
    public const uint Magic = 0x3244564B;

    /// <summary>"KVIX", little-endian: an index entry.</summary>
    public const uint IndexMagic = 0x5849564B;

    public const ushort Version = 2;
    public const ushort KindValue = 1, KindTombstone = 2;

    /// <summary>Bytes of a record header, before the key.</summary>
    public const int HeaderSize = 48;

    /// <summary>Bytes of one index entry.</summary>
    public const int IndexEntrySize = 64;

    /// <summary>Longest key a record may carry (the protocol's limit).</summary>
    public const int MaxKeyBytes = 512;

    public static long Align8(long n) => (n + 7) & ~7L;

    /// <summary>Bytes a record of this key and value length takes in a segment, padding included.</summary>
    public static long RecordBytes(int keyLength, long valueLength) => Align8(HeaderSize + keyLength + valueLength);

    /// <summary>
    /// Writes header and key into <paramref name="buffer"/>: magic, version, kind, key length, value CRC-32C,
    /// value length, sequence, the record's own offset and segment, then a CRC-32C over bytes 0..43 and the key.
    /// </summary>
    /// <returns>Bytes written (header plus key).</returns>
    public static int WriteHeader(Span<byte> buffer, in RecordInfo r, ReadOnlySpan<byte> key)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[6..], r.Kind);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[8..], (uint)key.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[12..], r.ValueCrc);
        BinaryPrimitives.WriteInt64LittleEndian(buffer[16..], r.ValueLength);
        BinaryPrimitives.WriteInt64LittleEndian(buffer[24..], r.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(buffer[32..], r.Offset);
        BinaryPrimitives.WriteInt32LittleEndian(buffer[40..], r.Segment);
        key.CopyTo(buffer[HeaderSize..]);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[44..], HeaderCrc(buffer, key));
        return HeaderSize + key.Length;
    }

    /// <summary>
    /// Parses a header (<paramref name="header"/> holds at least <see cref="HeaderSize"/> bytes; the key follows it
    /// once its length is known). False when it is not a sound version-2 header.
    /// </summary>
    public static bool TryParseHeader(ReadOnlySpan<byte> header, out RecordInfo r, out int keyLength)
    {
        r = default;
        keyLength = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(header[8..]), int.MaxValue);
        ushort kind = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
        long length = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic || BinaryPrimitives.ReadUInt16LittleEndian(header[4..]) != Version
            || kind is not (KindValue or KindTombstone) || keyLength is < 1 or > MaxKeyBytes || length < 0
            || (kind == KindTombstone && length != 0))
        {
            return false;
        }

        r = new RecordInfo(kind, BinaryPrimitives.ReadUInt32LittleEndian(header[12..]), length,
            BinaryPrimitives.ReadInt64LittleEndian(header[24..]), BinaryPrimitives.ReadInt64LittleEndian(header[32..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[40..]));
        return true;
    }

    /// <summary>Whether the header's CRC covers its first 44 bytes and <paramref name="key"/>.</summary>
    public static bool HeaderCrcMatches(ReadOnlySpan<byte> header, ReadOnlySpan<byte> key)
        => BinaryPrimitives.ReadUInt32LittleEndian(header[44..]) == HeaderCrc(header, key);

    private static uint HeaderCrc(ReadOnlySpan<byte> header, ReadOnlySpan<byte> key)
        => Crc32C.Complete(Crc32C.Append(Crc32C.Append(Crc32C.InitialState, header[..44]), key));

    /// <summary>
    /// Writes an index entry: magic, kind, key length, sequence, offset, value length, value CRC-32C, CRC-32C of the
    /// key, the value's expiry (bytes 40..47: Unix milliseconds, 0 for none), zero padding, then a CRC-32C of bytes 0..59.
    /// </summary>
    /// <remarks>
    /// The expiry lives in the index entry only (the record header has no room for it): recovery reads entries, and
    /// entries written before it existed have zero there, which reads as no expiry.
    /// </remarks>
    public static void WriteIndexEntry(Span<byte> entry, in RecordInfo r, int keyLength, uint keyCrc, long expiresAtUnixMs = 0)
    {
        entry[..IndexEntrySize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(entry, IndexMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(entry[4..], r.Kind);
        BinaryPrimitives.WriteUInt16LittleEndian(entry[6..], (ushort)keyLength);
        BinaryPrimitives.WriteInt64LittleEndian(entry[8..], r.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(entry[16..], r.Offset);
        BinaryPrimitives.WriteInt64LittleEndian(entry[24..], r.ValueLength);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[32..], r.ValueCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[36..], keyCrc);
        BinaryPrimitives.WriteInt64LittleEndian(entry[40..], expiresAtUnixMs);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[60..], Crc32C.Compute(entry[..60]));
    }

    /// <summary>Parses an index entry of segment <paramref name="segment"/>; false when its CRC or fields are wrong.</summary>
    public static bool TryParseIndexEntry(ReadOnlySpan<byte> entry, int segment, out RecordInfo r, out int keyLength, out uint keyCrc)
        => TryParseIndexEntry(entry, segment, out r, out keyLength, out keyCrc, out _);

    /// <summary>As the overload without it, also giving the value's expiry (Unix ms; 0 for none, and for entries written before expiries were kept).</summary>
    public static bool TryParseIndexEntry(ReadOnlySpan<byte> entry, int segment, out RecordInfo r, out int keyLength, out uint keyCrc, out long expiresAtUnixMs)
    {
        r = default;
        expiresAtUnixMs = 0;
        keyLength = BinaryPrimitives.ReadUInt16LittleEndian(entry[6..]);
        keyCrc = BinaryPrimitives.ReadUInt32LittleEndian(entry[36..]);
        ushort kind = BinaryPrimitives.ReadUInt16LittleEndian(entry[4..]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(entry) != IndexMagic
            || BinaryPrimitives.ReadUInt32LittleEndian(entry[60..]) != Crc32C.Compute(entry[..60])
            || kind is not (KindValue or KindTombstone) || keyLength is < 1 or > MaxKeyBytes)
        {
            return false;
        }

        r = new RecordInfo(kind, BinaryPrimitives.ReadUInt32LittleEndian(entry[32..]), BinaryPrimitives.ReadInt64LittleEndian(entry[24..]),
            BinaryPrimitives.ReadInt64LittleEndian(entry[8..]), BinaryPrimitives.ReadInt64LittleEndian(entry[16..]), segment);
        expiresAtUnixMs = Math.Max(0, BinaryPrimitives.ReadInt64LittleEndian(entry[40..]));
        return r.Offset >= 0 && r.ValueLength >= 0;
    }
}

/// <summary>What a header or an index entry says about one record.</summary>
internal readonly record struct RecordInfo(ushort Kind, uint ValueCrc, long ValueLength, long Sequence, long Offset, int Segment);
