using System.Buffers.Binary;

namespace Kvasir.Protocol;

/// <summary>Appends little-endian fields to a caller-owned buffer. Throws when the buffer is too small.</summary>
public ref struct MetaWriter(Span<byte> buffer)
{
    private readonly Span<byte> _buffer = buffer;
    private int _position;

    public readonly int Written => _position;

    public readonly ReadOnlySpan<byte> WrittenSpan => _buffer[.._position];

    public void U8(byte value) => _buffer[_position++] = value;

    public void U16(ushort value) { BinaryPrimitives.WriteUInt16LittleEndian(_buffer[_position..], value); _position += 2; }

    public void U32(uint value) { BinaryPrimitives.WriteUInt32LittleEndian(_buffer[_position..], value); _position += 4; }

    public void U64(ulong value) { BinaryPrimitives.WriteUInt64LittleEndian(_buffer[_position..], value); _position += 8; }

    public void Bytes(ReadOnlySpan<byte> value) { value.CopyTo(_buffer[_position..]); _position += value.Length; }

    /// <summary>A u16 length followed by the bytes.</summary>
    public void Key(ReadOnlySpan<byte> key) { U16(checked((ushort)key.Length)); Bytes(key); }
}

/// <summary>Reads little-endian fields with bounds checks; any overrun is a BadFrame.</summary>
public ref struct MetaReader(ReadOnlySpan<byte> buffer)
{
    private readonly ReadOnlySpan<byte> _buffer = buffer;
    private int _position;

    public readonly int Remaining => _buffer.Length - _position;

    public readonly int Position => _position;

    public byte U8() { Need(1); return _buffer[_position++]; }

    public ushort U16() { Need(2); var v = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[_position..]); _position += 2; return v; }

    public uint U32() { Need(4); var v = BinaryPrimitives.ReadUInt32LittleEndian(_buffer[_position..]); _position += 4; return v; }

    public ulong U64() { Need(8); var v = BinaryPrimitives.ReadUInt64LittleEndian(_buffer[_position..]); _position += 8; return v; }

    public ReadOnlySpan<byte> Bytes(int length) { Need(length); var s = _buffer.Slice(_position, length); _position += length; return s; }

    /// <summary>A u16 length followed by that many bytes.</summary>
    public ReadOnlySpan<byte> Key() => Bytes(U16());

    /// <summary>Throws BadFrame unless every byte was consumed.</summary>
    public readonly void End()
    {
        if (_position != _buffer.Length)
            throw new ProtocolException(WireStatus.BadFrame, $"{_buffer.Length - _position} unexpected bytes at the end of the metadata");
    }

    private readonly void Need(int count)
    {
        if (count < 0 || _buffer.Length - _position < count)
            throw new ProtocolException(WireStatus.BadFrame, "a length points past the end of the metadata");
    }
}
