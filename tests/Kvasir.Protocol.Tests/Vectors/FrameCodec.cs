using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace Kvasir.Protocol.Tests.Vectors;

/// <summary>
/// Turns complete frames into the vector file's "frame" objects and back, using only the readers and
/// writers of src/Kvasir.Protocol. Names follow the vector file: UPPER_SNAKE for opcodes, flags and statuses.
/// </summary>
public static class FrameCodec
{
    /// <summary>
    /// Decodes a whole frame (header, metadata, payload). Throws <see cref="ProtocolException"/> as the node would.
    /// <paramref name="versions"/>: the connection was granted <see cref="ValueVersions.Feature"/> (GET reply entries end with a version).
    /// </summary>
    public static JsonObject Decode(byte[] frame, int maxBatch = ProtocolLimits.DefaultMaxBatchKeys, bool versions = false)
    {
        // In stream order, as the node reads: header, metadata (checked, PUT entries included), then the payload.
        var h = FrameHeader.Read(frame);
        if (frame.Length < ProtocolLimits.HeaderSize + (long)h.MetaLength)
            throw new ProtocolException(WireStatus.BadFrame, "the metadata length points past the end of the frame");
        var meta = frame.AsSpan(ProtocolLimits.HeaderSize, h.MetaLength);
        var decodedMeta = h.IsReply ? DecodeReply(h, meta, versions) : DecodeRequest(h, meta, maxBatch);
        if (frame.Length != ProtocolLimits.HeaderSize + (long)h.MetaLength + h.PayloadLength)
            throw new ProtocolException(WireStatus.BadFrame, "the payload length does not match the end of the frame");
        return new JsonObject
        {
            ["opcode"] = Name(h.Opcode),
            ["flags"] = FlagNames(h.Flags),
            ["request_id"] = h.RequestId,
            ["status"] = Name(h.Status),
            ["meta"] = decodedMeta,
            ["payload"] = Hex(frame.AsSpan(ProtocolLimits.HeaderSize + h.MetaLength)),
        };
    }

    /// <summary>Builds the frame bytes from a vector's "frame" object through the src encoders.</summary>
    public static byte[] Encode(JsonObject frame)
    {
        var opcode = Parse<Opcode>((string)frame["opcode"]!);
        var flags = frame["flags"]!.AsArray().Aggregate(FrameFlags.None, (f, n) => f | Parse<FrameFlags>((string)n!));
        var status = Parse<WireStatus>((string)frame["status"]!);
        ulong requestId = (ulong)frame["request_id"]!;
        var meta = frame["meta"]!.AsObject();
        var payload = VectorFile.Hex(frame["payload"]);
        bool reply = (flags & FrameFlags.Reply) != 0;
        byte[] metaBytes = reply ? EncodeReply(opcode, status, meta) : EncodeRequest(opcode, flags, meta);

        var bytes = new byte[ProtocolLimits.HeaderSize + metaBytes.Length + payload.Length];
        new FrameHeader(opcode, flags, requestId, status, metaBytes.Length, payload.Length).Write(bytes);
        metaBytes.CopyTo(bytes, ProtocolLimits.HeaderSize);
        payload.CopyTo(bytes, ProtocolLimits.HeaderSize + metaBytes.Length);
        return bytes;
    }

    private static JsonObject DecodeRequest(in FrameHeader h, ReadOnlySpan<byte> meta, int maxBatch)
    {
        switch (h.Opcode)
        {
            case Opcode.Hello:
                var hello = HelloRequest.Read(meta);
                return new JsonObject
                {
                    ["min_version"] = hello.MinVersion,
                    ["max_version"] = hello.MaxVersion,
                    ["features"] = hello.Features,
                    ["client_name"] = hello.ClientName,
                };
            case Opcode.Auth:
                var auth = AuthRequest.Read(meta);
                return new JsonObject { ["client_nonce"] = Hex(auth.ClientNonce), ["client_proof"] = Hex(auth.ClientProof) };
            case Opcode.Ping:
                return new JsonObject { ["echo"] = Hex(meta) };
            case Opcode.Stats or Opcode.ShmInfo:
                if (!meta.IsEmpty) throw new ProtocolException(WireStatus.BadFrame, $"{h.Opcode} takes no metadata");
                return new JsonObject();
            case Opcode.Release or Opcode.Commit:
                var (ids, crcs, chainParent) = ShmMessages.ReadCommitRequest(meta, maxBatch, (h.Flags & FrameFlags.CommitCrc) != 0,
                    h.Opcode == Opcode.Commit && (h.Flags & FrameFlags.ChainParent) != 0);
                var idList = new JsonObject { ["ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()) };
                if (crcs is not null) idList["crcs"] = new JsonArray(crcs.Select(c => (JsonNode)c).ToArray());
                if (chainParent is not null) idList["parent"] = Hex(chainParent);
                return idList;
            case Opcode.Alloc:
                var ar = new MetaReader(meta);
                uint n = ar.U32();
                var allocs = new JsonArray();
                for (int i = 0; i < n; i++) { var key = Hex(ar.Key()); allocs.Add(new JsonObject { ["key"] = key, ["value_length"] = (long)ar.U64() }); }
                var alloc = new JsonObject { ["entries"] = allocs };
                if ((h.Flags & FrameFlags.Ttl) != 0) alloc["ttl_seconds"] = ar.U32();
                if ((h.Flags & FrameFlags.Mapped) != 0) alloc["proof"] = Hex(ar.Bytes(ArenaProof.ProofBytes));
                ar.End();
                return alloc;
            case Opcode.Put:
                PutBatchReader.Validate(meta, h.Flags, maxBatch, h.PayloadLength);
                var put = new PutBatchReader(meta, h.Flags, maxBatch);
                JsonNode? parent = (h.Flags & FrameFlags.ChainParent) != 0 ? Hex(put.Parent) : null;
                var entries = new JsonArray();
                bool versioned = (h.Flags & FrameFlags.Version) != 0;
                while (put.Next(out var key, out long length))
                {
                    var entry = new JsonObject { ["key"] = Hex(key), ["value_length"] = length };
                    if ((h.Flags & FrameFlags.ValueCrc) != 0) entry["crc32c"] = put.ValueCrc;
                    if (versioned) entry["version"] = put.Version;
                    entries.Add(entry);
                }
                var decodedPut = new JsonObject { ["parent"] = parent, ["entries"] = entries };
                if (versioned) decodedPut["versioned"] = true;
                if (put.TtlSeconds is { } ttlSeconds) decodedPut["ttl_seconds"] = ttlSeconds;
                return decodedPut;
            case Opcode.Scan:
                var scan = ScanRequest.Read(meta, ProtocolLimits.MaxKeyBytes, maxBatch);
                return new JsonObject { ["prefix"] = Hex(scan.Prefix), ["cursor"] = Hex(scan.Cursor), ["limit"] = scan.Limit };
            case Opcode.RemovePrefix:
                return new JsonObject { ["prefix"] = Hex(RemovePrefixMessages.ReadRequest(meta, ProtocolLimits.MaxKeyBytes)) };
            default:
                if (!Opcodes.IsKeyBatch(h.Opcode))
                    throw new ProtocolException(WireStatus.UnknownOpcode, $"unknown opcode 0x{(byte)h.Opcode:x2}");
                var keys = new KeyBatchReader(meta, maxBatch);
                var list = new JsonArray();
                while (keys.Next(out var k)) list.Add(Hex(k));
                return new JsonObject { ["keys"] = list };
        }
    }

    private static JsonObject DecodeReply(in FrameHeader h, ReadOnlySpan<byte> meta, bool versions)
    {
        if (h.Status != WireStatus.Ok)
            return new JsonObject { ["message"] = ErrorReply.Read(meta) };
        switch (h.Opcode)
        {
            case Opcode.Hello:
                var r = HelloReply.Read(meta);
                return new JsonObject
                {
                    ["version"] = r.Version,
                    ["features"] = r.Features,
                    ["auth_required"] = r.AuthRequired,
                    ["server_nonce"] = Hex(r.ServerNonce),
                    ["max_value_bytes"] = r.MaxValueBytes,
                    ["max_key_bytes"] = r.MaxKeyBytes,
                    ["max_batch_keys"] = r.MaxBatchKeys,
                    ["max_meta_bytes"] = r.MaxMetaBytes,
                    ["capacity"] = r.Capacity,
                    ["node_id"] = r.NodeId,
                };
            case Opcode.Auth:
                return new JsonObject { ["server_proof"] = Hex(AuthReply.Read(meta).ServerProof) };
            case Opcode.Ping:
                return new JsonObject { ["echo"] = Hex(meta) };
            case Opcode.Stats:
                var stats = new JsonArray();
                foreach (var (name, value) in StatsReply.Read(meta))
                    stats.Add(new JsonObject { ["name"] = name, ["value"] = value });
                return new JsonObject { ["stats"] = stats };
            case Opcode.ShmInfo:
                var info = ShmInfoReply.Read(meta);
                var decodedInfo = new JsonObject { ["path"] = info.Path, ["arena_length"] = info.ArenaLength, ["token"] = Hex(info.Token), ["lease_timeout_ms"] = info.LeaseTimeoutMs };
                if (info.Challenge is not null) decodedInfo["challenge"] = Hex(info.Challenge);
                return decodedInfo;
            case Opcode.Lease:
                var leases = new JsonArray();
                foreach (var e in ShmMessages.ReadLeaseReply(meta))
                    leases.Add(new JsonObject { ["status"] = Name(e.Status), ["offset"] = e.Offset, ["length"] = e.Length, ["crc32c"] = e.Crc32C, ["lease_id"] = e.LeaseId });
                return new JsonObject { ["entries"] = leases };
            case Opcode.Alloc:
                var allocs = new JsonArray();
                foreach (var e in ShmMessages.ReadAllocReply(meta))
                    allocs.Add(new JsonObject { ["status"] = Name(e.Status), ["offset"] = e.Offset, ["reservation_id"] = e.ReservationId });
                return new JsonObject { ["entries"] = allocs };
            case Opcode.Get:
                var entries = new JsonArray();
                foreach (var e in GetReply.Read(meta, CountOf(meta), h.PayloadLength, versions))
                {
                    var entry = new JsonObject { ["status"] = Name(e.Status), ["length"] = e.Length, ["crc32c"] = e.Crc32C };
                    if (versions) entry["version"] = e.Version;
                    entries.Add(entry);
                }
                var decodedGet = new JsonObject { ["entries"] = entries };
                if (versions) decodedGet["versioned"] = true;
                return decodedGet;
            case Opcode.Scan:
                var scan = ScanReply.Read(meta);
                var listed = new JsonArray();
                foreach (var e in scan.Entries) listed.Add(new JsonObject { ["key"] = Hex(e.Key), ["length"] = e.Length });
                return new JsonObject { ["tiers"] = scan.Tiers, ["entries"] = listed, ["cursor"] = Hex(scan.Cursor) };
            case Opcode.Info:
                var infos = new JsonArray();
                foreach (var e in InfoReply.Read(meta, CountOf(meta)))
                {
                    infos.Add(new JsonObject
                    {
                        ["status"] = Name(e.Status),
                        ["tier"] = e.Tier,
                        ["length"] = e.Length,
                        ["age_ms"] = e.AgeMs,
                        ["ttl_ms"] = e.TtlMs,
                        ["pins"] = e.Pins,
                        ["leases"] = e.Leases,
                        ["ns_budget"] = e.NamespaceBudget,
                        ["ns_used"] = e.NamespaceUsed,
                        ["ns_prefix"] = Hex(e.NamespacePrefix),
                    });
                }
                return new JsonObject { ["entries"] = infos };
            case Opcode.RemovePrefix:
                var (removed, failed) = RemovePrefixMessages.ReadReply(meta);
                return new JsonObject { ["removed"] = removed, ["failed"] = failed };
            default:
                var statuses = new JsonArray();
                foreach (var s in StatusListReply.Read(meta, CountOf(meta))) statuses.Add(Name(s));
                return new JsonObject { ["statuses"] = statuses };
        }
    }

    private static byte[] EncodeRequest(Opcode opcode, FrameFlags flags, JsonObject m)
    {
        switch (opcode)
        {
            case Opcode.Hello:
                var hello = new HelloRequest((ushort)m["min_version"]!, (ushort)m["max_version"]!, (ulong)m["features"]!, (string)m["client_name"]!);
                return Write(hello.Size, (ref MetaWriter w) => hello.Write(ref w));
            case Opcode.Auth:
                var auth = new AuthRequest(VectorFile.Hex(m["client_nonce"]), VectorFile.Hex(m["client_proof"]));
                return Write(AuthRequest.Size, (ref MetaWriter w) => auth.Write(ref w));
            case Opcode.Ping:
                return VectorFile.Hex(m["echo"]);
            case Opcode.Stats or Opcode.ShmInfo:
                return [];
            case Opcode.Release or Opcode.Commit:
                var ids = m["ids"]!.AsArray().Select(i => (ulong)i!).ToArray();
                byte[] commitParent = (flags & FrameFlags.ChainParent) != 0 ? VectorFile.Hex(m["parent"]) : [];
                int parentSize = (flags & FrameFlags.ChainParent) != 0 ? ShmMessages.CommitParentSize(commitParent) : 0;
                if ((flags & FrameFlags.CommitCrc) != 0)
                {
                    var crcs = m["crcs"]!.AsArray().Select(c => (uint)c!).ToArray();
                    return Write(ShmMessages.CommitCrcRequestSize(ids.Length) + parentSize, (ref MetaWriter w) =>
                    {
                        ShmMessages.WriteCommitCrcs(ref w, ids, crcs);
                        if (parentSize > 0) ShmMessages.WriteCommitParent(ref w, commitParent);
                    });
                }
                return Write(ShmMessages.IdListSize(ids.Length) + parentSize, (ref MetaWriter w) =>
                {
                    ShmMessages.WriteIdList(ref w, ids);
                    if (parentSize > 0) ShmMessages.WriteCommitParent(ref w, commitParent);
                });
            case Opcode.Alloc:
                var allocs = m["entries"]!.AsArray().Select(e => (Key: (ReadOnlyMemory<byte>)VectorFile.Hex(e!["key"]), Length: (long)e["value_length"]!)).ToList();
                uint? allocTtl = (flags & FrameFlags.Ttl) != 0 ? (uint)m["ttl_seconds"]! : null;
                byte[] proof = (flags & FrameFlags.Mapped) != 0 ? VectorFile.Hex(m["proof"]) : [];
                int allocSize = ShmMessages.AllocRequestSize(allocs.Select(a => a.Key).ToList(), 0, allocs.Count)
                    + ShmMessages.AllocSuffixSize(allocTtl is not null, proof.Length > 0);
                return Write(allocSize, (ref MetaWriter w) =>
                {
                    w.U32((uint)allocs.Count);
                    foreach (var (key, length) in allocs) ShmMessages.WriteAllocEntry(ref w, key.Span, length);
                    ShmMessages.WriteAllocSuffix(ref w, allocTtl, proof);
                });
            case Opcode.Put:
                bool hasParent = (flags & FrameFlags.ChainParent) != 0;
                var parent = m["parent"] is null ? Array.Empty<byte>() : VectorFile.Hex(m["parent"]);
                bool valueCrc = (flags & FrameFlags.ValueCrc) != 0;
                bool versioned = (flags & FrameFlags.Version) != 0;
                uint? ttl = (flags & FrameFlags.Ttl) != 0 ? (uint)m["ttl_seconds"]! : null;
                var entries = m["entries"]!.AsArray()
                    .Select(e => (Key: VectorFile.Hex(e!["key"]), Length: (long)e["value_length"]!, Crc: valueCrc ? (uint)e["crc32c"]! : 0u,
                        Version: versioned ? (long)e["version"]! : 0)).ToList();
                int size = PutRequest.PrefixSize(parent, hasParent) + PutRequest.SuffixSize(ttl is not null)
                    + entries.Sum(e => PutRequest.EntrySize(e.Key.Length, valueCrc, versioned));
                return Write(size, (ref MetaWriter w) =>
                {
                    PutRequest.WritePrefix(ref w, parent, hasParent, entries.Count);
                    foreach (var (key, length, crc, version) in entries)
                        PutRequest.WriteEntry(ref w, key, length, valueCrc ? crc : null, versioned ? version : null);
                    if (ttl is { } seconds) PutRequest.WriteTtl(ref w, seconds);
                });
            case Opcode.Scan:
                var scan = new ScanRequest(VectorFile.Hex(m["prefix"]), VectorFile.Hex(m["cursor"]), (uint)m["limit"]!);
                return Write(scan.Size, (ref MetaWriter w) => scan.Write(ref w));
            case Opcode.RemovePrefix:
                return RemovePrefixMessages.Request(VectorFile.Hex(m["prefix"]));
            default:
                var keys = m["keys"]!.AsArray().Select(k => (ReadOnlyMemory<byte>)VectorFile.Hex(k)).ToList();
                return Write(KeyBatchRequest.Size(keys, 0, keys.Count), (ref MetaWriter w) => KeyBatchRequest.Write(ref w, keys, 0, keys.Count));
        }
    }

    private static byte[] EncodeReply(Opcode opcode, WireStatus status, JsonObject m)
    {
        if (status != WireStatus.Ok)
            return ErrorReply.Encode((string)m["message"]!);
        switch (opcode)
        {
            case Opcode.Hello:
                var r = new HelloReply((ushort)m["version"]!, (ulong)m["features"]!, (bool)m["auth_required"]!, VectorFile.Hex(m["server_nonce"]),
                    (ulong)m["max_value_bytes"]!, (ushort)m["max_key_bytes"]!, (uint)m["max_batch_keys"]!, (uint)m["max_meta_bytes"]!,
                    (ulong)m["capacity"]!, (string)m["node_id"]!);
                return Write(r.Size, (ref MetaWriter w) => r.Write(ref w));
            case Opcode.Auth:
                var auth = new AuthReply(VectorFile.Hex(m["server_proof"]));
                return Write(AuthReply.Size, (ref MetaWriter w) => auth.Write(ref w));
            case Opcode.Ping:
                return VectorFile.Hex(m["echo"]);
            case Opcode.Stats:
                var stats = m["stats"]!.AsArray().Select(s => new KeyValuePair<string, long>((string)s!["name"]!, (long)s["value"]!)).ToList();
                return Write(StatsReply.Size(stats), (ref MetaWriter w) => StatsReply.Write(ref w, stats));
            case Opcode.ShmInfo:
                var info = new ShmInfoReply((string)m["path"]!, (ulong)m["arena_length"]!, VectorFile.Hex(m["token"]), (uint)m["lease_timeout_ms"]!,
                    m["challenge"] is { } challenge ? VectorFile.Hex(challenge) : null);
                return Write(info.Size, (ref MetaWriter w) => info.Write(ref w));
            case Opcode.Lease:
                var leases = m["entries"]!.AsArray().Select(e => new LeaseEntry(Parse<WireStatus>((string)e!["status"]!), (ulong)e["offset"]!,
                    (ulong)e["length"]!, (uint)e["crc32c"]!, (ulong)e["lease_id"]!)).ToList();
                return Write(ShmMessages.LeaseReplySize(leases.Count), (ref MetaWriter w) =>
                {
                    w.U32((uint)leases.Count);
                    foreach (var e in leases) ShmMessages.WriteLeaseEntry(ref w, e);
                });
            case Opcode.Alloc:
                var allocs = m["entries"]!.AsArray().Select(e => new AllocEntry(Parse<WireStatus>((string)e!["status"]!), (ulong)e["offset"]!, (ulong)e["reservation_id"]!)).ToList();
                return Write(ShmMessages.AllocReplySize(allocs.Count), (ref MetaWriter w) =>
                {
                    w.U32((uint)allocs.Count);
                    foreach (var e in allocs) ShmMessages.WriteAllocEntry(ref w, e);
                });
            case Opcode.Get:
                bool versions = m["versioned"] is { } v && (bool)v;
                var entries = m["entries"]!.AsArray()
                    .Select(e => new GetReplyEntry(Parse<WireStatus>((string)e!["status"]!), (long)e["length"]!, (uint)e["crc32c"]!)
                    { Version = versions ? (long)e["version"]! : 0 }).ToList();
                return Write(GetReply.Size(entries.Count, versions), (ref MetaWriter w) =>
                {
                    GetReply.WriteCount(ref w, entries.Count);
                    foreach (var e in entries) GetReply.WriteEntry(ref w, e, versions);
                });
            case Opcode.Scan:
                var listed = m["entries"]!.AsArray().Select(e => new ScanEntry(VectorFile.Hex(e!["key"]), (long)e["length"]!)).ToList();
                var scan = new ScanReply((byte)m["tiers"]!, listed, VectorFile.Hex(m["cursor"]));
                return Write(scan.Size, (ref MetaWriter w) => scan.Write(ref w));
            case Opcode.Info:
                var infos = m["entries"]!.AsArray().Select(e => new InfoEntry(Parse<WireStatus>((string)e!["status"]!), (byte)e["tier"]!,
                    (long)e["length"]!, (long)e["age_ms"]!, (long)e["ttl_ms"]!, (uint)e["pins"]!, (uint)e["leases"]!,
                    (long)e["ns_budget"]!, (long)e["ns_used"]!, VectorFile.Hex(e["ns_prefix"]))).ToList();
                return Write(InfoReply.Size(infos), (ref MetaWriter w) => InfoReply.Write(ref w, infos));
            case Opcode.RemovePrefix:
                return RemovePrefixMessages.Reply((long)m["removed"]!, (long)m["failed"]!);
            default:
                var statuses = m["statuses"]!.AsArray().Select(s => Parse<WireStatus>((string)s!)).ToArray();
                return Write(StatusListReply.Size(statuses.Length), (ref MetaWriter w) => StatusListReply.Write(ref w, statuses));
        }
    }

    private delegate void MetaBody(ref MetaWriter writer);

    /// <summary>Writes into a buffer of exactly the size the message claims, and checks that size was right.</summary>
    private static byte[] Write(int size, MetaBody body)
    {
        var buffer = new byte[size];
        var writer = new MetaWriter(buffer);
        body(ref writer);
        if (writer.Written != size) throw new InvalidOperationException($"message wrote {writer.Written} bytes, its Size said {size}");
        return buffer;
    }

    private static int CountOf(ReadOnlySpan<byte> meta) =>
        meta.Length < 4 ? throw new ProtocolException(WireStatus.BadFrame, "reply shorter than its count") : (int)BinaryPrimitives.ReadUInt32LittleEndian(meta);

    public static string Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    /// <summary>"NotFound" → "NOT_FOUND", "ChainParent" → "CHAIN_PARENT".</summary>
    public static string Name<T>(T value) where T : struct, Enum
    {
        var text = value.ToString();
        if (!Enum.IsDefined(value)) return text;
        var sb = new StringBuilder();
        for (int i = 0; i < text.Length; i++)
        {
            if (i > 0 && char.IsUpper(text[i])) sb.Append('_');
            sb.Append(char.ToUpperInvariant(text[i]));
        }
        return sb.ToString();
    }

    public static T Parse<T>(string name) where T : struct, Enum =>
        Enum.Parse<T>(name.Replace("_", "", StringComparison.Ordinal), ignoreCase: true);

    private static JsonArray FlagNames(FrameFlags flags)
    {
        var names = new JsonArray();
        for (int bit = 0; bit < 16; bit++)
        {
            var f = (FrameFlags)(1 << bit);
            if ((flags & f) != 0) names.Add(Enum.IsDefined(f) ? Name(f) : $"0x{1 << bit:x4}");
        }
        return names;
    }
}
