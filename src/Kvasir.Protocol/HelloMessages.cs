using System.Text;

namespace Kvasir.Protocol;

/// <summary>
/// HELLO request metadata: min version (u16) · max version (u16) · features (u64) ·
/// client name (u16 length + UTF-8, at most 256 bytes).
/// </summary>
public sealed record HelloRequest(ushort MinVersion, ushort MaxVersion, ulong Features, string ClientName)
{
    public int Size => 2 + 2 + 8 + 2 + Encoding.UTF8.GetByteCount(ClientName);

    public void Write(ref MetaWriter writer)
    {
        writer.U16(MinVersion);
        writer.U16(MaxVersion);
        writer.U64(Features);
        var name = Encoding.UTF8.GetBytes(ClientName);
        if (name.Length > ProtocolLimits.MaxNameBytes)
            throw new ArgumentException($"client name is longer than {ProtocolLimits.MaxNameBytes} bytes");
        writer.Key(name);
    }

    public static HelloRequest Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        ushort min = r.U16(), max = r.U16();
        ulong features = r.U64();
        var name = r.Key();
        if (name.Length > ProtocolLimits.MaxNameBytes)
            throw new ProtocolException(WireStatus.BadFrame, "client name longer than 256 bytes");
        r.End();
        return new HelloRequest(min, max, features, DecodeName(name));
    }

    internal static string DecodeName(ReadOnlySpan<byte> bytes)
    {
        try { return new UTF8Encoding(false, true).GetString(bytes); }
        catch (DecoderFallbackException) { throw new ProtocolException(WireStatus.BadFrame, "name is not valid UTF-8"); }
    }
}

/// <summary>
/// HELLO reply metadata: version (u16) · features granted (u64) · auth required (u8, 0/1) ·
/// reserved (u8, 0) · server nonce (32 bytes; zeros without auth) · max value bytes (u64) ·
/// max key bytes (u16) · max batch keys (u32) · max metadata bytes (u32) · capacity (u64) ·
/// node id (u16 length + UTF-8).
/// </summary>
public sealed record HelloReply(
    ushort Version,
    ulong Features,
    bool AuthRequired,
    byte[] ServerNonce,
    ulong MaxValueBytes,
    ushort MaxKeyBytes,
    uint MaxBatchKeys,
    uint MaxMetaBytes,
    ulong Capacity,
    string NodeId)
{
    public int Size => 2 + 8 + 1 + 1 + ProtocolLimits.NonceBytes + 8 + 2 + 4 + 4 + 8 + 2 + Encoding.UTF8.GetByteCount(NodeId);

    public void Write(ref MetaWriter writer)
    {
        if (ServerNonce.Length != ProtocolLimits.NonceBytes)
            throw new ArgumentException("server nonce must be 32 bytes");
        writer.U16(Version);
        writer.U64(Features);
        writer.U8(AuthRequired ? (byte)1 : (byte)0);
        writer.U8(0);
        writer.Bytes(ServerNonce);
        writer.U64(MaxValueBytes);
        writer.U16(MaxKeyBytes);
        writer.U32(MaxBatchKeys);
        writer.U32(MaxMetaBytes);
        writer.U64(Capacity);
        writer.Key(Encoding.UTF8.GetBytes(NodeId));
    }

    public static HelloReply Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        ushort version = r.U16();
        ulong features = r.U64();
        byte auth = r.U8();
        if (auth > 1 || r.U8() != 0)
            throw new ProtocolException(WireStatus.BadFrame, "bad auth flag or reserved byte in HELLO reply");
        var nonce = r.Bytes(ProtocolLimits.NonceBytes).ToArray();
        var reply = new HelloReply(version, features, auth == 1, nonce, r.U64(), r.U16(), r.U32(), r.U32(), r.U64(),
            HelloRequest.DecodeName(r.Key()));
        r.End();
        return reply;
    }
}

/// <summary>AUTH request metadata: client nonce (32 bytes) · client proof (32 bytes).</summary>
public sealed record AuthRequest(byte[] ClientNonce, byte[] ClientProof)
{
    public const int Size = 2 * ProtocolLimits.NonceBytes;

    public void Write(ref MetaWriter writer)
    {
        if (ClientNonce.Length != ProtocolLimits.NonceBytes || ClientProof.Length != ProtocolLimits.NonceBytes)
            throw new ArgumentException("client nonce and proof must be 32 bytes each");
        writer.Bytes(ClientNonce);
        writer.Bytes(ClientProof);
    }

    public static AuthRequest Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        var request = new AuthRequest(r.Bytes(ProtocolLimits.NonceBytes).ToArray(), r.Bytes(ProtocolLimits.NonceBytes).ToArray());
        r.End();
        return request;
    }
}

/// <summary>AUTH reply metadata (status Ok): server proof (32 bytes).</summary>
public sealed record AuthReply(byte[] ServerProof)
{
    public const int Size = ProtocolLimits.NonceBytes;

    public void Write(ref MetaWriter writer)
    {
        if (ServerProof.Length != ProtocolLimits.NonceBytes)
            throw new ArgumentException("server proof must be 32 bytes");
        writer.Bytes(ServerProof);
    }

    public static AuthReply Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        var reply = new AuthReply(r.Bytes(ProtocolLimits.NonceBytes).ToArray());
        r.End();
        return reply;
    }
}
