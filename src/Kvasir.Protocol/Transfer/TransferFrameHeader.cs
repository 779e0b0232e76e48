using System.Buffers.Binary;

namespace Kvasir.Protocol.Transfer;

/// <summary>
/// The 32-byte header of every transfer frame (little-endian): magic "KVTX" (4) · version (1) ·
/// opcode (1) · flags (2) · request id (8) · status (2) · reserved (2, zero) · metadata length (4) ·
/// payload length (8). Metadata follows, then the payload.
/// </summary>
public readonly record struct TransferFrameHeader(
    TransferOpcode Opcode,
    TransferFlags Flags,
    ulong RequestId,
    TransferStatus Status,
    int MetaLength,
    long PayloadLength)
{
    /// <summary>The magic "KVTX" read as a little-endian integer. Not the cache node's "KVSR".</summary>
    public const uint Magic = 0x5854564B;

    public bool IsReply => (Flags & TransferFlags.Reply) != 0;

    /// <summary>A request header (status 0).</summary>
    public static TransferFrameHeader Request(TransferOpcode opcode, ulong requestId, int metaLength, long payloadLength = 0) =>
        new(opcode, TransferFlags.None, requestId, TransferStatus.Ok, metaLength, payloadLength);

    /// <summary>A reply header: the request's opcode and id with the REPLY flag.</summary>
    public static TransferFrameHeader Reply(TransferOpcode opcode, ulong requestId, TransferStatus status, int metaLength = 0, long payloadLength = 0) =>
        new(opcode, TransferFlags.Reply, requestId, status, metaLength, payloadLength);

    /// <summary>Writes the header into the first 32 bytes of <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination) =>
        HeaderLayout.Write(destination, Magic, TransferLimits.Version, (byte)Opcode, (ushort)Flags, RequestId, (ushort)Status, MetaLength, PayloadLength);

    /// <summary>
    /// Parses and validates a header: BAD_FRAME for a wrong magic, a version other than 1, an unknown
    /// flag bit or a non-zero reserved field (UNSUPPORTED_VERSION is HELLO's answer to a protocol
    /// version it does not speak, not the frame's); FRAME_TOO_LARGE for a
    /// <c>meta_length</c> above 65,600 or a <c>payload_length</c> above <paramref name="maxPayload"/>.
    /// The opcode is not checked here: the receiver answers UNKNOWN_OPCODE with the request id.
    /// </summary>
    public static TransferFrameHeader Read(ReadOnlySpan<byte> source, long maxPayload = TransferLimits.MaxSliceBytes)
    {
        if (source.Length < TransferLimits.HeaderSize)
            throw new TransferProtocolException(TransferStatus.BadFrame, "truncated frame header");
        if (BinaryPrimitives.ReadUInt32LittleEndian(source) != Magic)
            throw new TransferProtocolException(TransferStatus.BadFrame, "bad magic (expected \"KVTX\")");
        if (source[4] != TransferLimits.Version)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"unsupported frame version {source[4]}; this engine speaks 1");
        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(source[6..]);
        if ((flags & ~(ushort)TransferFlags.Reply) != 0)
            throw new TransferProtocolException(TransferStatus.BadFrame, $"unknown flag bits 0x{flags & ~(ushort)TransferFlags.Reply:x4}");
        if (BinaryPrimitives.ReadUInt16LittleEndian(source[18..]) != 0)
            throw new TransferProtocolException(TransferStatus.BadFrame, "reserved header field is not zero");
        uint meta = BinaryPrimitives.ReadUInt32LittleEndian(source[20..]);
        ulong payload = BinaryPrimitives.ReadUInt64LittleEndian(source[24..]);
        if (meta > TransferLimits.MaxMetaBytes)
            throw new TransferProtocolException(TransferStatus.FrameTooLarge, $"meta_length {meta} is above the limit of {TransferLimits.MaxMetaBytes}");
        if (payload > (ulong)maxPayload)
            throw new TransferProtocolException(TransferStatus.FrameTooLarge, $"payload_length {payload} is above this engine's max_slice of {maxPayload}");
        return new TransferFrameHeader(
            (TransferOpcode)source[5],
            (TransferFlags)flags,
            BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
            (TransferStatus)BinaryPrimitives.ReadUInt16LittleEndian(source[16..]),
            (int)meta,
            (long)payload);
    }

    /// <summary>The opcode and request id of a header that failed <see cref="Read"/>, for the error reply (zeros when truncated).</summary>
    public static (TransferOpcode Opcode, ulong RequestId) Peek(ReadOnlySpan<byte> source) =>
        source.Length < TransferLimits.HeaderSize ? (0, 0) : ((TransferOpcode)source[5], BinaryPrimitives.ReadUInt64LittleEndian(source[8..]));
}
