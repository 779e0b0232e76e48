using System.Buffers.Binary;
using Kvasir.Protocol;

namespace Kvasir.Server.Tests.Support;

/// <summary>Builds request frames with the protocol encoders; tests then bend single bytes of them.</summary>
public static class Frames
{
    public static byte[] Frame(Opcode opcode, ulong id, ReadOnlySpan<byte> meta, ReadOnlySpan<byte> payload = default,
        FrameFlags flags = FrameFlags.None, long? payloadLength = null)
    {
        var frame = new byte[ProtocolLimits.HeaderSize + meta.Length + payload.Length];
        new FrameHeader(opcode, flags, id, WireStatus.Ok, meta.Length, payloadLength ?? payload.Length).Write(frame);
        meta.CopyTo(frame.AsSpan(ProtocolLimits.HeaderSize));
        payload.CopyTo(frame.AsSpan(ProtocolLimits.HeaderSize + meta.Length));
        return frame;
    }

    /// <summary>A frame with raw header fields, for values the encoder refuses (undefined opcodes, huge lengths).</summary>
    public static byte[] RawHeader(byte opcode, ulong id, uint metaLength, ulong payloadLength, ushort flags = 0, ushort status = 0,
        byte version = 1, ushort reserved = 0, uint magic = FrameHeader.Magic)
    {
        var h = new byte[ProtocolLimits.HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(h, magic);
        h[4] = version;
        h[5] = opcode;
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(6), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), id);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(16), status);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(18), reserved);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), metaLength);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(24), payloadLength);
        return h;
    }

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    public static byte[] Hello(ulong id, ushort min = 1, ushort max = 1, string name = "raw-test", ulong features = 0)
    {
        var request = new HelloRequest(min, max, features, name);
        var meta = new byte[request.Size];
        var w = new MetaWriter(meta);
        request.Write(ref w);
        return Frame(Opcode.Hello, id, meta);
    }

    public static byte[] Auth(ulong id, byte[] clientNonce, byte[] clientProof)
    {
        var meta = new byte[AuthRequest.Size];
        var w = new MetaWriter(meta);
        new AuthRequest(clientNonce, clientProof).Write(ref w);
        return Frame(Opcode.Auth, id, meta);
    }

    public static byte[] Ping(ulong id, ReadOnlySpan<byte> echo = default) => Frame(Opcode.Ping, id, echo);

    public static byte[] KeyBatchMeta(params byte[][] keys)
    {
        var list = keys.Select(k => (ReadOnlyMemory<byte>)k).ToList();
        var meta = new byte[KeyBatchRequest.Size(list, 0, list.Count)];
        var w = new MetaWriter(meta);
        KeyBatchRequest.Write(ref w, list, 0, list.Count);
        return meta;
    }

    public static byte[] KeyOp(Opcode opcode, ulong id, params byte[][] keys) => Frame(opcode, id, KeyBatchMeta(keys));

    public static byte[] Get(ulong id, params byte[][] keys) => KeyOp(Opcode.Get, id, keys);

    public static byte[] Exists(ulong id, params byte[][] keys) => KeyOp(Opcode.Exists, id, keys);

    /// <summary>PUT metadata for entries of the given (key, declared value length).</summary>
    public static byte[] PutMeta((byte[] Key, long Length)[] entries, byte[]? parent = null)
    {
        int size = PutRequest.PrefixSize(parent, parent is not null) + entries.Sum(e => PutRequest.EntrySize(e.Key.Length));
        var meta = new byte[size];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, parent, parent is not null, entries.Length);
        foreach (var (key, length) in entries) PutRequest.WriteEntry(ref w, key, length);
        return meta;
    }

    public static byte[] Put(ulong id, params (byte[] Key, byte[] Value)[] entries)
    {
        var meta = PutMeta(entries.Select(e => (e.Key, (long)e.Value.Length)).ToArray());
        return Frame(Opcode.Put, id, meta, entries.SelectMany(e => e.Value).ToArray());
    }

    /// <summary>A PUT with the ValueCrc flag: each entry carries the given CRC (right or wrong) after its key.</summary>
    public static byte[] PutWithCrc(ulong id, params (byte[] Key, byte[] Value, uint Crc)[] entries)
    {
        var meta = new byte[4 + entries.Sum(e => PutRequest.EntrySize(e.Key.Length, valueCrc: true))];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, default, false, entries.Length);
        foreach (var (key, value, crc) in entries) PutRequest.WriteEntry(ref w, key, value.Length, crc);
        return Frame(Opcode.Put, id, meta, entries.SelectMany(e => e.Value).ToArray(), FrameFlags.ValueCrc);
    }

    /// <summary>
    /// A PUT with CRC_TRAILER: plain entries, each value in the payload followed by <c>Crc</c> (u32), as the writer sends it.
    /// </summary>
    public static byte[] PutWithTrailer(ulong id, params (byte[] Key, byte[] Value, uint Crc)[] entries)
        => Frame(Opcode.Put, id, PutMeta(entries.Select(e => (e.Key, (long)e.Value.Length)).ToArray()), TrailerPayload(entries), FrameFlags.CrcTrailer);

    /// <summary>The payload of a PUT with CRC_TRAILER: each value, then its CRC (u32).</summary>
    public static byte[] TrailerPayload(params (byte[] Key, byte[] Value, uint Crc)[] entries)
    {
        var payload = new List<byte>();
        foreach (var (_, value, crc) in entries)
        {
            payload.AddRange(value);
            var trailer = new byte[PutRequest.TrailerSize];
            BinaryPrimitives.WriteUInt32LittleEndian(trailer, crc);
            payload.AddRange(trailer);
        }
        return payload.ToArray();
    }

    /// <summary>Header and metadata of a PUT, without its payload.</summary>
    public static byte[] PutHead(ulong id, params (byte[] Key, long Length)[] entries)
        => Frame(Opcode.Put, id, PutMeta(entries), payloadLength: entries.Sum(e => e.Length));

    public static byte[] Filled(int length, byte b) => Enumerable.Repeat(b, length).ToArray();
}
