using System.Buffers.Binary;

namespace Kvasir.Protocol.Tests;

public class FrameHeaderTests
{
    public static TheoryData<ulong, int, long> Boundaries => new()
    {
        { 0UL, 0, 0L },
        { ulong.MaxValue, 0, 0L },
        { 1UL, int.MaxValue, 0L },
        { 0UL, 0, long.MaxValue },
        { ulong.MaxValue, int.MaxValue, long.MaxValue },
        { 42UL, 1, ProtocolLimits.HardMaxValueBytes },
    };

    [Theory]
    [MemberData(nameof(Boundaries))]
    public void A_header_round_trips_at_boundary_ids_and_lengths(ulong requestId, int metaLength, long payloadLength)
    {
        var header = new FrameHeader(Opcode.Put, FrameFlags.Chain | FrameFlags.ChainParent, requestId, WireStatus.Ok, metaLength, payloadLength);
        var bytes = new byte[ProtocolLimits.HeaderSize];
        header.Write(bytes);
        Assert.Equal(header, FrameHeader.Read(bytes));
    }

    [Fact]
    public void The_header_layout_puts_each_field_at_its_documented_offset()
    {
        var bytes = new byte[32];
        new FrameHeader(Opcode.Get, FrameFlags.Reply, 0x0102030405060708, WireStatus.BatchTooLarge, 0x11223344, 0x5566778899AABBCC).Write(bytes);
        Assert.Equal("KVSR"u8.ToArray(), bytes[..4]);
        Assert.Equal(1, bytes[4]);
        Assert.Equal(0x11, bytes[5]);
        Assert.Equal(0x8000, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(6)));
        Assert.Equal(0x0102030405060708UL, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(39, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(16)));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(18)));
        Assert.Equal(0x11223344u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(20)));
        Assert.Equal(0x5566778899AABBCCUL, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(24)));
    }

    [Fact]
    public void Read_reports_the_reply_flag()
    {
        var bytes = new byte[32];
        new FrameHeader(Opcode.Ping, FrameFlags.Reply, 1, WireStatus.Ok, 0, 0).Write(bytes);
        Assert.True(FrameHeader.Read(bytes).IsReply);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(31)]
    public void Read_rejects_a_truncated_header_as_BadFrame(int length)
    {
        var ex = Assert.Throws<ProtocolException>(() => FrameHeader.Read(new byte[length]));
        Assert.Equal(WireStatus.BadFrame, ex.Status);
    }

    [Fact]
    public void Read_rejects_a_metadata_length_above_int_MaxValue_as_FrameTooLarge()
    {
        var bytes = Valid();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), uint.MaxValue);
        Assert.Equal(WireStatus.FrameTooLarge, Assert.Throws<ProtocolException>(() => FrameHeader.Read(bytes)).Status);
    }

    [Fact]
    public void Read_rejects_a_payload_length_above_long_MaxValue_as_FrameTooLarge()
    {
        var bytes = Valid();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(24), ulong.MaxValue);
        Assert.Equal(WireStatus.FrameTooLarge, Assert.Throws<ProtocolException>(() => FrameHeader.Read(bytes)).Status);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(255)]
    public void Read_rejects_any_version_but_1_as_UnsupportedVersion(byte version)
    {
        var bytes = Valid();
        bytes[4] = version;
        Assert.Equal(WireStatus.UnsupportedVersion, Assert.Throws<ProtocolException>(() => FrameHeader.Read(bytes)).Status);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void Read_rejects_a_corrupted_magic_byte_as_BadFrame(int index)
    {
        var bytes = Valid();
        bytes[index] ^= 0x20;
        Assert.Equal(WireStatus.BadFrame, Assert.Throws<ProtocolException>(() => FrameHeader.Read(bytes)).Status);
    }

    [Theory]
    [InlineData(18)]
    [InlineData(19)]
    public void Read_rejects_a_non_zero_reserved_byte_as_BadFrame(int index)
    {
        var bytes = Valid();
        bytes[index] = 0x80;
        Assert.Equal(WireStatus.BadFrame, Assert.Throws<ProtocolException>(() => FrameHeader.Read(bytes)).Status);
    }

    [Fact]
    public void Write_refuses_a_destination_shorter_than_32_bytes()
    {
        Assert.Throws<ArgumentException>(() => new FrameHeader(Opcode.Ping, 0, 1, 0, 0, 0).Write(new byte[31]));
    }

    [Fact]
    public void Read_leaves_unknown_opcodes_and_flags_to_the_receiver()
    {
        var bytes = Valid();
        bytes[5] = 0x7F;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), 0x4000);
        var h = FrameHeader.Read(bytes);
        Assert.False(Opcodes.IsDefined((byte)h.Opcode));
        Assert.Equal((FrameFlags)0x4000, h.Flags);
    }

    [Fact]
    public void Frame_level_statuses_close_the_connection_and_per_key_statuses_do_not()
    {
        foreach (var status in Enum.GetValues<WireStatus>())
        {
            bool frameLevel = (ushort)status >= 32;
            Assert.Equal(frameLevel, WireStatuses.ClosesConnection(status));
            Assert.Equal(!frameLevel, WireStatuses.IsPerKey(status));
        }
    }

    private static byte[] Valid()
    {
        var bytes = new byte[ProtocolLimits.HeaderSize];
        new FrameHeader(Opcode.Ping, FrameFlags.None, 7, WireStatus.Ok, 4, 0).Write(bytes);
        return bytes;
    }
}
