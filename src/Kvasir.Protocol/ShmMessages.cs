using System.Text;

namespace Kvasir.Protocol;

/// <summary>
/// SHM_INFO reply: the arena file, its length, a 16-byte token the node also wrote to the file
/// <c>PATH.token</c> (mode 0600), and the node's lease timeout. A client that reads the same token
/// from there has opened this very node's arena on this very host, with permission; any other
/// outcome means "use TCP". The node holds every lease and reservation for at least
/// <see cref="LeaseTimeoutMs"/> after granting it.
/// </summary>
public sealed record ShmInfoReply(string Path, ulong ArenaLength, byte[] Token, uint LeaseTimeoutMs)
{
    public const int TokenBytes = 16;

    public int Size => 2 + Encoding.UTF8.GetByteCount(Path) + 8 + TokenBytes + 4;

    public void Write(ref MetaWriter w)
    {
        w.Key(Encoding.UTF8.GetBytes(Path));
        w.U64(ArenaLength);
        w.Bytes(Token);
        w.U32(LeaseTimeoutMs);
    }

    public static ShmInfoReply Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        var path = Encoding.UTF8.GetString(r.Key());
        ulong length = r.U64();
        byte[] token = r.Bytes(TokenBytes).ToArray();
        var reply = new ShmInfoReply(path, length, token, r.U32());
        r.End();
        return reply;
    }
}

/// <summary>One LEASE reply entry: a value readable at arena offset <see cref="Offset"/> until released.</summary>
public readonly record struct LeaseEntry(WireStatus Status, ulong Offset, ulong Length, uint Crc32C, ulong LeaseId)
{
    public const int Size = 1 + 8 + 8 + 4 + 8;
}

/// <summary>One ALLOC reply entry: arena space at <see cref="Offset"/> for the client to fill, then COMMIT.</summary>
public readonly record struct AllocEntry(WireStatus Status, ulong Offset, ulong ReservationId)
{
    public const int Size = 1 + 8 + 8;
}

/// <summary>Encoders and decoders of the shared-memory transport's messages (docs/protocol.md § Shared memory).</summary>
public static class ShmMessages
{
    public static int LeaseReplySize(int count) => 4 + count * LeaseEntry.Size;

    public static void WriteLeaseEntry(ref MetaWriter w, LeaseEntry e)
    {
        w.U8((byte)e.Status); w.U64(e.Offset); w.U64(e.Length); w.U32(e.Crc32C); w.U64(e.LeaseId);
    }

    public static LeaseEntry[] ReadLeaseReply(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count * (long)LeaseEntry.Size != r.Remaining) throw new ProtocolException(WireStatus.BadFrame, "LEASE reply length does not match its count");
        var list = new LeaseEntry[count];
        for (int i = 0; i < count; i++) list[i] = new LeaseEntry((WireStatus)r.U8(), r.U64(), r.U64(), r.U32(), r.U64());
        return list;
    }

    /// <summary>RELEASE and COMMIT requests: u32 count, then a u64 id each.</summary>
    public static int IdListSize(int count) => 4 + count * 8;

    public static void WriteIdList(ref MetaWriter w, ReadOnlySpan<ulong> ids)
    {
        w.U32((uint)ids.Length);
        foreach (var id in ids) w.U64(id);
    }

    public static ulong[] ReadIdList(ReadOnlySpan<byte> meta, int maxCount)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count > (uint)maxCount) throw new ProtocolException(WireStatus.BatchTooLarge, $"{count} ids exceed the batch limit of {maxCount}");
        if (count * 8L != r.Remaining) throw new ProtocolException(WireStatus.BadFrame, "id list length does not match its count");
        var ids = new ulong[count];
        for (int i = 0; i < count; i++) ids[i] = r.U64();
        return ids;
    }

    /// <summary>ALLOC request: u32 count, then per key a bytes16 key and a u64 value length.</summary>
    public static int AllocRequestSize(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int count)
    {
        int size = 4;
        for (int i = start; i < start + count; i++) size += 2 + keys[i].Length + 8;
        return size;
    }

    public static void WriteAllocEntry(ref MetaWriter w, ReadOnlySpan<byte> key, long length)
    {
        w.Key(key);
        w.U64((ulong)length);
    }

    public static int AllocReplySize(int count) => 4 + count * AllocEntry.Size;

    public static void WriteAllocEntry(ref MetaWriter w, AllocEntry e)
    {
        w.U8((byte)e.Status); w.U64(e.Offset); w.U64(e.ReservationId);
    }

    public static AllocEntry[] ReadAllocReply(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count * (long)AllocEntry.Size != r.Remaining) throw new ProtocolException(WireStatus.BadFrame, "ALLOC reply length does not match its count");
        var list = new AllocEntry[count];
        for (int i = 0; i < count; i++) list[i] = new AllocEntry((WireStatus)r.U8(), r.U64(), r.U64());
        return list;
    }
}
