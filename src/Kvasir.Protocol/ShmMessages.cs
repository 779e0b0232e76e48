using System.Text;

namespace Kvasir.Protocol;

/// <summary>
/// SHM_INFO reply: the arena file, its length, a 16-byte token the node also wrote to the file
/// <c>PATH.token</c> (mode 0600), and the node's lease timeout. A client that reads the same token
/// from there has opened this very node's arena on this very host, with permission; any other
/// outcome means "use TCP". The node holds every lease and reservation for at least
/// <see cref="LeaseTimeoutMs"/> after granting it. On a connection granted <see cref="ProtocolFeatures.ArenaProof"/>
/// the reply ends with <see cref="Challenge"/>, this connection's 16 random bytes for <see cref="ArenaProof"/>.
/// </summary>
public sealed record ShmInfoReply(string Path, ulong ArenaLength, byte[] Token, uint LeaseTimeoutMs, byte[]? Challenge = null)
{
    public const int TokenBytes = 16;

    public int Size => 2 + Encoding.UTF8.GetByteCount(Path) + 8 + TokenBytes + 4 + (Challenge is null ? 0 : ArenaProof.ChallengeBytes);

    public void Write(ref MetaWriter w)
    {
        w.Key(Encoding.UTF8.GetBytes(Path));
        w.U64(ArenaLength);
        w.Bytes(Token);
        w.U32(LeaseTimeoutMs);
        if (Challenge is not null) w.Bytes(Challenge);
    }

    /// <summary>Reads either form: the challenge is there exactly when 16 bytes follow the lease timeout.</summary>
    public static ShmInfoReply Read(ReadOnlySpan<byte> meta)
    {
        var r = new MetaReader(meta);
        var path = Encoding.UTF8.GetString(r.Key());
        ulong length = r.U64();
        byte[] token = r.Bytes(TokenBytes).ToArray();
        uint timeout = r.U32();
        byte[]? challenge = r.Remaining == ArenaProof.ChallengeBytes ? r.Bytes(ArenaProof.ChallengeBytes).ToArray() : null;
        r.End();
        return new ShmInfoReply(path, length, token, timeout, challenge);
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

    /// <summary>
    /// Bytes after an ALLOC's entries: the u32 time to live with <see cref="FrameFlags.Ttl"/>, then the
    /// <see cref="ArenaProof.ProofBytes"/>-byte proof with <see cref="FrameFlags.Mapped"/>.
    /// </summary>
    public static int AllocSuffixSize(bool ttl, bool mapped) => (ttl ? 4 : 0) + (mapped ? ArenaProof.ProofBytes : 0);

    public static void WriteAllocSuffix(ref MetaWriter w, uint? ttlSeconds, ReadOnlySpan<byte> proof)
    {
        if (ttlSeconds is { } seconds) w.U32(seconds);
        w.Bytes(proof);
    }

    /// <summary>COMMIT with <see cref="FrameFlags.CommitCrc"/>: the id list, then one u32 CRC-32C per id.</summary>
    public static int CommitCrcRequestSize(int count) => IdListSize(count) + count * 4;

    public static void WriteCommitCrcs(ref MetaWriter w, ReadOnlySpan<ulong> ids, ReadOnlySpan<uint> crcs)
    {
        if (ids.Length != crcs.Length) throw new ArgumentException("one CRC per id");
        WriteIdList(ref w, ids);
        foreach (var crc in crcs) w.U32(crc);
    }

    /// <summary>
    /// Reads a COMMIT request: the ids, with <paramref name="crcs"/> (flag <see cref="FrameFlags.CommitCrc"/>) their CRCs,
    /// and with <paramref name="parent"/> (flag <see cref="FrameFlags.ChainParent"/>) the chain parent's key, last.
    /// </summary>
    public static CommitRequest ReadCommitRequest(ReadOnlySpan<byte> meta, int maxCount, bool crcs, bool parent = false)
    {
        var r = new MetaReader(meta);
        uint count = r.U32();
        if (count > (uint)maxCount) throw new ProtocolException(WireStatus.BatchTooLarge, $"{count} ids exceed the batch limit of {maxCount}");
        long fixedBytes = count * (crcs ? 12L : 8L);
        if (parent ? fixedBytes + 2 > r.Remaining : fixedBytes != r.Remaining)
            throw new ProtocolException(WireStatus.BadFrame, crcs
                ? "COMMIT with CRCs: length does not match its count (u64 ids, then a u32 CRC each" + (parent ? ", then the chain parent)" : ")")
                : parent ? "COMMIT with CHAIN_PARENT: length does not match its count (u64 ids, then the chain parent)" : "id list length does not match its count");
        var ids = new ulong[count];
        for (int i = 0; i < count; i++) ids[i] = r.U64();
        uint[]? list = null;
        if (crcs)
        {
            list = new uint[count];
            for (int i = 0; i < count; i++) list[i] = r.U32();
        }
        byte[]? parentKey = null;
        if (parent)
        {
            int length = r.U16();
            if (length != r.Remaining)
                throw new ProtocolException(WireStatus.BadFrame, $"COMMIT's CHAIN_PARENT declares a {length}-byte key but {r.Remaining} bytes follow");
            parentKey = r.Bytes(length).ToArray();
        }
        return new CommitRequest(ids, list, parentKey);
    }

    /// <summary>Bytes of a COMMIT's chain parent (flag <see cref="FrameFlags.ChainParent"/>), written after the ids and CRCs.</summary>
    public static int CommitParentSize(ReadOnlySpan<byte> parent) => 2 + parent.Length;

    public static void WriteCommitParent(ref MetaWriter w, ReadOnlySpan<byte> parent) => w.Key(parent);

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

/// <summary>
/// A decoded COMMIT request: the reservation ids, the writer's CRCs (flag <see cref="FrameFlags.CommitCrc"/>) and the key
/// the first id's block continues (flag <see cref="FrameFlags.ChainParent"/>).
/// </summary>
public readonly record struct CommitRequest(ulong[] Ids, uint[]? Crcs, byte[]? Parent);
