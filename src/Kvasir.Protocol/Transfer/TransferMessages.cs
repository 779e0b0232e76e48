using System.Buffers.Binary;

namespace Kvasir.Protocol.Transfer;

/// <summary>
/// Fixed-layout metadata of the transfer frames (docs/transfer.md § Messages). Ids and tokens are 16
/// bytes carried as <see cref="UInt128"/> read little-endian, so writing one back gives the same bytes.
/// Every parser checks the exact length and the reserved fields and throws BAD_FRAME with the reason.
/// </summary>
internal static class Fields
{
    public static UInt128 Id(ReadOnlySpan<byte> source, int offset) => BinaryPrimitives.ReadUInt128LittleEndian(source[offset..]);

    public static void Id(Span<byte> destination, int offset, UInt128 value) => BinaryPrimitives.WriteUInt128LittleEndian(destination[offset..], value);

    public static void ExpectLength(ReadOnlySpan<byte> meta, int length, string what)
    {
        if (meta.Length != length)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"{what} metadata is {meta.Length} bytes, expected {length}");
    }

    public static void ExpectSpace(Span<byte> destination, int length)
    {
        if (destination.Length < length) throw new ArgumentException($"destination needs {length} bytes", nameof(destination));
    }

    public static void ExpectZero(ulong value, string what)
    {
        if (value != 0) throw new TransferProtocolException(TransferStatus.BadFrame, $"{what} is not zero");
    }
}

/// <summary>HELLO request metadata (56 bytes): the lane's place in its session and the initiator's ids.</summary>
public readonly record struct TransferHelloRequest(ushort ProtocolVersion, ushort LaneIndex, ushort LaneCount, UInt128 SessionId, UInt128 EngineId, UInt128 HostId)
{
    public const int Size = 56;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        BinaryPrimitives.WriteUInt16LittleEndian(d, ProtocolVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(d[2..], LaneIndex);
        BinaryPrimitives.WriteUInt16LittleEndian(d[4..], LaneCount);
        BinaryPrimitives.WriteUInt16LittleEndian(d[6..], 0);
        Fields.Id(d, 8, SessionId);
        Fields.Id(d, 24, EngineId);
        Fields.Id(d, 40, HostId);
        return Size;
    }

    public static TransferHelloRequest Parse(ReadOnlySpan<byte> m)
    {
        Fields.ExpectLength(m, Size, "HELLO");
        Fields.ExpectZero(BinaryPrimitives.ReadUInt16LittleEndian(m[6..]), "HELLO reserved field");
        return new(BinaryPrimitives.ReadUInt16LittleEndian(m), BinaryPrimitives.ReadUInt16LittleEndian(m[2..]),
            BinaryPrimitives.ReadUInt16LittleEndian(m[4..]), Fields.Id(m, 8), Fields.Id(m, 24), Fields.Id(m, 40));
    }
}

/// <summary>HELLO reply metadata (56 bytes): whether AUTH follows, the target's largest slice, its engine id and nonce.</summary>
public readonly record struct TransferHelloReply(bool AuthRequired, uint MaxSlice, UInt128 EngineId, byte[] ServerNonce)
{
    public const int Size = 56;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        if (ServerNonce.Length != TransferLimits.NonceBytes) throw new ArgumentException("the server nonce must be 32 bytes");
        d[..4].Clear();
        d[0] = AuthRequired ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32LittleEndian(d[4..], MaxSlice);
        Fields.Id(d, 8, EngineId);
        ServerNonce.CopyTo(d[24..]);
        return Size;
    }

    public static TransferHelloReply Parse(ReadOnlySpan<byte> m)
    {
        Fields.ExpectLength(m, Size, "HELLO reply");
        if (m[0] > 1) throw new TransferProtocolException(TransferStatus.BadFrame, $"auth_required is {m[0]}, not 0 or 1");
        Fields.ExpectZero((ulong)(m[1] | m[2] | m[3]), "HELLO reply reserved field");
        return new(m[0] == 1, BinaryPrimitives.ReadUInt32LittleEndian(m[4..]), Fields.Id(m, 8), m.Slice(24, TransferLimits.NonceBytes).ToArray());
    }
}

/// <summary>AUTH request metadata (64 bytes): the client nonce, then the client proof.</summary>
public readonly record struct TransferAuthRequest(byte[] ClientNonce, byte[] ClientProof)
{
    public const int Size = 64;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        if (ClientNonce.Length != 32 || ClientProof.Length != 32) throw new ArgumentException("nonce and proof must be 32 bytes each");
        ClientNonce.CopyTo(d);
        ClientProof.CopyTo(d[32..]);
        return Size;
    }

    public static TransferAuthRequest Parse(ReadOnlySpan<byte> m)
    {
        Fields.ExpectLength(m, Size, "AUTH");
        return new(m[..32].ToArray(), m[32..64].ToArray());
    }
}

/// <summary>
/// WRITE request metadata (64 bytes, then <c>notif_length</c> bytes of notification): which advertisement,
/// where in its window the transfer starts, and where this slice lies in the transfer.
/// </summary>
public readonly record struct WriteSlice(
    ulong AdvertId,
    UInt128 Token,
    ulong WindowOffset,
    ulong TransferLength,
    ulong SliceOffset,
    ulong KvTag,
    uint KvGeneration,
    ReadOnlyMemory<byte> Notification)
{
    public const int FixedSize = 64;

    public int Size => FixedSize + Notification.Length;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        if (Notification.Length > TransferLimits.MaxNotificationBytes)
            throw new ArgumentException($"a notification is at most {TransferLimits.MaxNotificationBytes} bytes");
        BinaryPrimitives.WriteUInt64LittleEndian(d, AdvertId);
        Fields.Id(d, 8, Token);
        BinaryPrimitives.WriteUInt64LittleEndian(d[24..], WindowOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(d[32..], TransferLength);
        BinaryPrimitives.WriteUInt64LittleEndian(d[40..], SliceOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(d[48..], KvTag);
        BinaryPrimitives.WriteUInt32LittleEndian(d[56..], KvGeneration);
        BinaryPrimitives.WriteUInt32LittleEndian(d[60..], (uint)Notification.Length);
        Notification.Span.CopyTo(d[64..]);
        return Size;
    }

    /// <summary>Parses the metadata; the notification is copied out (it outlives the receive buffer).</summary>
    public static WriteSlice Parse(ReadOnlySpan<byte> m)
    {
        if (m.Length < FixedSize)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"WRITE metadata is {m.Length} bytes, expected at least {FixedSize}");
        uint notif = BinaryPrimitives.ReadUInt32LittleEndian(m[60..]);
        if (notif != (uint)(m.Length - FixedSize))
            throw new TransferProtocolException(TransferStatus.BadFrame, $"WRITE notif_length {notif} does not match the {m.Length - FixedSize} bytes after the fields");
        if (BinaryPrimitives.ReadUInt64LittleEndian(m[32..]) == 0)
            throw new TransferProtocolException(TransferStatus.BadFrame, "WRITE transfer_length is 0");
        if (notif != 0 && BinaryPrimitives.ReadUInt64LittleEndian(m[40..]) != 0)
            throw new TransferProtocolException(TransferStatus.BadFrame, "a notification rides only on the slice at offset 0");
        if (BinaryPrimitives.ReadUInt64LittleEndian(m[48..]) == 0 && BinaryPrimitives.ReadUInt32LittleEndian(m[56..]) != 0)
            throw new TransferProtocolException(TransferStatus.BadFrame, "WRITE kv_generation set without a kv_tag");
        return new(BinaryPrimitives.ReadUInt64LittleEndian(m), Fields.Id(m, 8), BinaryPrimitives.ReadUInt64LittleEndian(m[24..]),
            BinaryPrimitives.ReadUInt64LittleEndian(m[32..]), BinaryPrimitives.ReadUInt64LittleEndian(m[40..]),
            BinaryPrimitives.ReadUInt64LittleEndian(m[48..]), BinaryPrimitives.ReadUInt32LittleEndian(m[56..]),
            notif == 0 ? ReadOnlyMemory<byte>.Empty : m[FixedSize..].ToArray());
    }

    /// <summary>The WRITE reply's metadata: the slice offset it answers (8 bytes).</summary>
    public static void WriteReplyMeta(Span<byte> d, ulong sliceOffset) => BinaryPrimitives.WriteUInt64LittleEndian(d, sliceOffset);

    public static ulong ParseReplyMeta(ReadOnlySpan<byte> m)
    {
        Fields.ExpectLength(m, 8, "WRITE reply");
        return BinaryPrimitives.ReadUInt64LittleEndian(m);
    }
}

/// <summary>READ request metadata (48 bytes): advertisement, token, offset in the window, length.</summary>
public readonly record struct ReadSlice(ulong AdvertId, UInt128 Token, ulong Offset, ulong Length)
{
    public const int Size = 48;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        BinaryPrimitives.WriteUInt64LittleEndian(d, AdvertId);
        Fields.Id(d, 8, Token);
        BinaryPrimitives.WriteUInt64LittleEndian(d[24..], Offset);
        BinaryPrimitives.WriteUInt64LittleEndian(d[32..], Length);
        BinaryPrimitives.WriteUInt64LittleEndian(d[40..], 0);
        return Size;
    }

    public static ReadSlice Parse(ReadOnlySpan<byte> m)
    {
        Fields.ExpectLength(m, Size, "READ");
        Fields.ExpectZero(BinaryPrimitives.ReadUInt64LittleEndian(m[40..]), "READ reserved field");
        if (BinaryPrimitives.ReadUInt64LittleEndian(m[32..]) == 0) throw new TransferProtocolException(TransferStatus.BadFrame, "READ length is 0");
        return new(BinaryPrimitives.ReadUInt64LittleEndian(m), Fields.Id(m, 8), BinaryPrimitives.ReadUInt64LittleEndian(m[24..]),
            BinaryPrimitives.ReadUInt64LittleEndian(m[32..]));
    }
}

/// <summary>
/// STAGED_WRITE request metadata: <c>staging_offset</c> and <c>length</c> (8 bytes each), then a WRITE slice's metadata.
/// The slice <c>[slice_offset, +length)</c> of the write is at <c>[staging_offset, +length)</c> of the connection's
/// staging file; the frame has no payload. The reply is a WRITE reply's (the slice offset).
/// </summary>
public readonly record struct StagedWrite(ulong StagingOffset, ulong Length, WriteSlice Slice)
{
    public const int PrefixSize = 16;

    public int Size => PrefixSize + Slice.Size;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        BinaryPrimitives.WriteUInt64LittleEndian(d, StagingOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(d[8..], Length);
        return PrefixSize + Slice.Write(d[PrefixSize..]);
    }

    public static StagedWrite Parse(ReadOnlySpan<byte> m)
    {
        if (m.Length < PrefixSize + WriteSlice.FixedSize)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"STAGED_WRITE metadata is {m.Length} bytes, expected at least {PrefixSize + WriteSlice.FixedSize}");
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(m[8..]);
        if (length == 0) throw new TransferProtocolException(TransferStatus.BadFrame, "STAGED_WRITE length is 0");
        return new(BinaryPrimitives.ReadUInt64LittleEndian(m), length, WriteSlice.Parse(m[PrefixSize..]));
    }
}

/// <summary>
/// STAGED_READ request metadata (56 bytes): <c>staging_offset</c> (8 bytes), then a READ slice's metadata. The target
/// copies the window's bytes to <c>[staging_offset, +length)</c> of the staging file and replies with neither metadata
/// nor payload.
/// </summary>
public readonly record struct StagedRead(ulong StagingOffset, ReadSlice Slice)
{
    public const int Size = 8 + ReadSlice.Size;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        BinaryPrimitives.WriteUInt64LittleEndian(d, StagingOffset);
        return 8 + Slice.Write(d[8..]);
    }

    public static StagedRead Parse(ReadOnlySpan<byte> m)
    {
        Fields.ExpectLength(m, Size, "STAGED_READ");
        return new(BinaryPrimitives.ReadUInt64LittleEndian(m), ReadSlice.Parse(m[8..]));
    }
}

/// <summary>KV_READY request metadata (56 bytes): a two-sided tag is ready for a generation in an advertisement.</summary>
public readonly record struct KvReady(ulong KvTag, uint KvGeneration, ulong AdvertId, UInt128 Token, ulong Capacity)
{
    public const int Size = 56;

    public int Write(Span<byte> d)
    {
        Fields.ExpectSpace(d, Size);
        BinaryPrimitives.WriteUInt64LittleEndian(d, KvTag);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], KvGeneration);
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(d[16..], AdvertId);
        Fields.Id(d, 24, Token);
        BinaryPrimitives.WriteUInt64LittleEndian(d[40..], Capacity);
        BinaryPrimitives.WriteUInt64LittleEndian(d[48..], 0);
        return Size;
    }

    public static KvReady Parse(ReadOnlySpan<byte> m)
    {
        Fields.ExpectLength(m, Size, "KV_READY");
        Fields.ExpectZero(BinaryPrimitives.ReadUInt32LittleEndian(m[12..]), "KV_READY reserved field");
        Fields.ExpectZero(BinaryPrimitives.ReadUInt64LittleEndian(m[48..]), "KV_READY reserved field");
        ulong tag = BinaryPrimitives.ReadUInt64LittleEndian(m);
        if (tag == 0) throw new TransferProtocolException(TransferStatus.BadFrame, "KV_READY kv_tag is 0");
        return new(tag, BinaryPrimitives.ReadUInt32LittleEndian(m[8..]), BinaryPrimitives.ReadUInt64LittleEndian(m[16..]),
            Fields.Id(m, 24), BinaryPrimitives.ReadUInt64LittleEndian(m[40..]));
    }
}
