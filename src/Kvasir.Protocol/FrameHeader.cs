using System.Buffers.Binary;

namespace Kvasir.Protocol;

/// <summary>
/// The 32-byte header in front of every frame (little-endian):
/// magic "KVSR" (4) · version (1) · opcode (1) · flags (2) · request id (8) · status (2) ·
/// reserved (2, zero) · metadata length (4) · payload length (8).
/// The metadata section follows the header, then the payload section.
/// </summary>
public readonly record struct FrameHeader(
    Opcode Opcode,
    FrameFlags Flags,
    ulong RequestId,
    WireStatus Status,
    int MetaLength,
    long PayloadLength,
    byte Version = 1)
{
    /// <summary>The four magic bytes "KVSR" read as a little-endian integer.</summary>
    public const uint Magic = 0x5253564B;

    public bool IsReply => (Flags & FrameFlags.Reply) != 0;

    /// <summary>Writes the header into the first 32 bytes of <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination)
        => HeaderLayout.Write(destination, Magic, Version, (byte)Opcode, (ushort)Flags, RequestId, (ushort)Status, MetaLength, PayloadLength);

    /// <summary>
    /// Parses and validates a header. Throws <see cref="ProtocolException"/> with BadFrame for a
    /// bad magic or a non-zero reserved field, FrameTooLarge for lengths that cannot be represented,
    /// and UnsupportedVersion for any version other than 1. Opcode and flag checks belong to the
    /// receiver, which knows whether it expects a request or a reply.
    /// </summary>
    public static FrameHeader Read(ReadOnlySpan<byte> source)
    {
        if (source.Length < ProtocolLimits.HeaderSize)
            throw new ProtocolException(WireStatus.BadFrame, "truncated frame header");
        if (BinaryPrimitives.ReadUInt32LittleEndian(source) != Magic)
            throw new ProtocolException(WireStatus.BadFrame, "bad magic (expected \"KVSR\")");
        byte version = source[4];
        if (version != ProtocolLimits.Version)
            throw new ProtocolException(WireStatus.UnsupportedVersion, $"unsupported frame version {version}; this node speaks 1");
        if (BinaryPrimitives.ReadUInt16LittleEndian(source[18..]) != 0)
            throw new ProtocolException(WireStatus.BadFrame, "reserved header field is not zero");
        uint meta = BinaryPrimitives.ReadUInt32LittleEndian(source[20..]);
        ulong payload = BinaryPrimitives.ReadUInt64LittleEndian(source[24..]);
        if (meta > int.MaxValue || payload > long.MaxValue)
            throw new ProtocolException(WireStatus.FrameTooLarge, "frame length out of range");
        return new FrameHeader(
            (Opcode)source[5],
            (FrameFlags)BinaryPrimitives.ReadUInt16LittleEndian(source[6..]),
            BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
            (WireStatus)BinaryPrimitives.ReadUInt16LittleEndian(source[16..]),
            (int)meta,
            (long)payload,
            version);
    }
}

/// <summary>
/// The 32-byte header layout the cache node's frames and the transfer engine's frames share; each
/// protocol has its own magic, opcodes and statuses on top of it.
/// </summary>
internal static class HeaderLayout
{
    public static void Write(Span<byte> destination, uint magic, byte version, byte opcode, ushort flags, ulong requestId, ushort status, int metaLength, long payloadLength)
    {
        if (destination.Length < ProtocolLimits.HeaderSize)
            throw new ArgumentException("destination is shorter than a frame header", nameof(destination));
        BinaryPrimitives.WriteUInt32LittleEndian(destination, magic);
        destination[4] = version;
        destination[5] = opcode;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], requestId);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[16..], status);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[18..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[20..], checked((uint)metaLength));
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], checked((ulong)payloadLength));
    }
}
