using System.Buffers.Binary;
using System.Net;
using System.Text.Json.Nodes;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Protocol.Tests.Vectors;

/// <summary>
/// Every frame and blob of tests/vectors/transfer.json both ways: encoding the vector's fields gives its
/// hex, and decoding its hex gives its fields. The vectors come from an independent encoder
/// (tests/vectors/gen_transfer.py), so these tests cross-check the codec against docs/transfer.md.
/// </summary>
public sealed class TransferVectorTests
{
    private static readonly Lazy<JsonObject> Root = new(() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(VectorFile.RepoRoot(), "tests", "vectors", "transfer.json")))!.AsObject());

    private static JsonArray Frames => Root.Value["frames"]!.AsArray();

    private static JsonArray Blobs => Root.Value["blobs"]!.AsArray();

    public static TheoryData<string> FrameNames() => Names(Frames);

    public static TheoryData<string> BlobNames() => Names(Blobs);

    [Theory]
    [MemberData(nameof(FrameNames))]
    public void Encoding_the_fields_of_a_frame_vector_gives_its_bytes(string name)
    {
        var v = Find(Frames, name);
        var f = v["frame"]!.AsObject();
        byte[] meta = EncodeMeta(f);
        byte[] payload = VectorFile.Hex(f["payload"]);
        var header = new TransferFrameHeader(Opcode(f), Flags(f), (ulong)f["request_id"]!, Status(f), meta.Length, payload.Length);
        var frame = new byte[TransferLimits.HeaderSize + meta.Length + payload.Length];
        header.Write(frame);
        meta.CopyTo(frame, TransferLimits.HeaderSize);
        payload.CopyTo(frame, TransferLimits.HeaderSize + meta.Length);
        Assert.Equal((string)v["hex"]!, Convert.ToHexStringLower(frame));
    }

    [Theory]
    [MemberData(nameof(FrameNames))]
    public void Decoding_a_frame_vector_gives_its_fields(string name)
    {
        var v = Find(Frames, name);
        var f = v["frame"]!.AsObject();
        byte[] bytes = VectorFile.Hex(v["hex"]);
        var header = TransferFrameHeader.Read(bytes);
        Assert.Equal(Opcode(f), header.Opcode);
        Assert.Equal(Flags(f), header.Flags);
        Assert.Equal((ulong)f["request_id"]!, header.RequestId);
        Assert.Equal(Status(f), header.Status);
        var meta = bytes.AsSpan(TransferLimits.HeaderSize, header.MetaLength);
        var payload = bytes.AsSpan(TransferLimits.HeaderSize + header.MetaLength);
        Assert.Equal(header.PayloadLength, payload.Length);
        Assert.Equal((string)f["payload"]!, Convert.ToHexStringLower(payload));
        Assert.True(JsonNode.DeepEquals(f["meta"], DecodeMeta(header, meta)), $"decoded {DecodeMeta(header, meta).ToJsonString()}");
    }

    [Theory]
    [InlineData("auth_request", true)]
    [InlineData("auth_request_wrong_key", false)]
    [InlineData("auth_request_node_label", false)]
    public void Only_the_transfer_proof_made_with_the_right_key_passes(string name, bool passes)
    {
        var f = Find(Frames, name)["frame"]!.AsObject();
        var right = VectorFile.Hex(Find(Frames, "auth_request")["auth"]!["key"]);
        var sn = VectorFile.Hex(Find(Frames, name)["auth"]!["server_nonce"]);
        var cn = VectorFile.Hex(f["meta"]!["client_nonce"]);
        var expected = AuthHandshake.ClientProof(AuthLabels.Transfer, right, sn, cn);
        Assert.Equal(passes, AuthHandshake.ProofsEqual(expected, VectorFile.Hex(f["meta"]!["client_proof"])));
    }

    [Fact]
    public void The_server_proof_vector_is_the_transfer_server_proof()
    {
        var v = Find(Frames, "auth_reply");
        var a = v["auth"]!;
        var proof = AuthHandshake.ServerProof(AuthLabels.Transfer, VectorFile.Hex(a["key"]), VectorFile.Hex(a["server_nonce"]), VectorFile.Hex(a["client_nonce"]));
        Assert.Equal((string)v["frame"]!["meta"]!["server_proof"]!, Convert.ToHexStringLower(proof));
    }

    [Theory]
    [MemberData(nameof(BlobNames))]
    public void Encoding_a_blob_vector_gives_its_bytes_and_decoding_gives_its_fields(string name)
    {
        var v = Find(Blobs, name);
        var fields = v["fields"]!.AsObject();
        byte[] bytes = VectorFile.Hex(v["hex"]);
        if ((string)v["kind"]! == "advertisement")
        {
            var shm = fields["shm"] is { } s ? new ShmExtension((string)s["path"]!, (ulong)s["file_offset"]!) : null;
            var staging = fields["staging"] is { } g ? new StagingExtension((string)g["path"]!, (uint)g["slot_bytes"]!, (uint)g["slot_count"]!) : null;
            var blob = new AdvertisementBlob(Id(fields["engine_id"]), (ulong)fields["advert_id"]!, Id(fields["token"]), (ulong)fields["size"]!, (ulong)fields["ptr"]!, shm, staging);
            Assert.Equal((string)v["hex"]!, Convert.ToHexStringLower(blob.ToBytes()));
            Assert.Equal(blob, AdvertisementBlob.Parse(bytes));
        }
        else if ((string)v["kind"]! == "layer_ready")
        {
            var note = new LayerReadyNote((ulong)fields["tag"]!, (uint)fields["group"]!);
            Assert.Equal((string)v["hex"]!, Convert.ToHexStringLower(note.ToBytes()));
            Assert.True(LayerReadyNote.TryParse(bytes, out var parsed));
            Assert.Equal(note, parsed);
        }
        else
        {
            var blob = new EndpointBlob(IPAddress.Parse((string)fields["address"]!), (ushort)fields["port"]!, Id(fields["engine_id"]));
            Assert.Equal((string)v["hex"]!, Convert.ToHexStringLower(blob.ToBytes()));
            Assert.Equal(blob, EndpointBlob.Parse(bytes));
        }
    }

    [Fact]
    public void The_vector_file_names_the_same_opcodes_flags_and_statuses_as_the_codec()
    {
        foreach (var (name, value) in Root.Value["opcodes"]!.AsObject())
            Assert.Equal((int)value!, (int)OpcodeByName(name));
        Assert.Equal((int)TransferFlags.Reply, (int)Root.Value["flags"]!["REPLY"]!);
        foreach (var (name, value) in Root.Value["statuses"]!.AsObject())
            Assert.Equal(name, ((TransferStatus)(ushort)(int)value!).WireName());
    }

    [Theory]
    [InlineData(0, 0x4b, "bad magic")]
    [InlineData(4, 2, "unsupported frame version 2")]
    [InlineData(6, 0x01, "unknown flag bits")]
    [InlineData(18, 1, "reserved header field")]
    public void A_bad_header_is_refused_with_the_reason(int offset, byte value, string reason)
    {
        var bytes = VectorFile.Hex(Find(Frames, "notify_request")["hex"]);
        bytes[offset] = offset == 0 ? (byte)'X' : value;
        var e = Assert.Throws<TransferProtocolException>(() => TransferFrameHeader.Read(bytes));
        Assert.Contains(reason, e.Message);
        Assert.Equal(TransferStatus.BadFrame, e.Status);
    }

    [Fact]
    public void Metadata_or_payload_above_the_limits_is_FRAME_TOO_LARGE()
    {
        var bytes = new byte[TransferLimits.HeaderSize];
        TransferFrameHeader.Request(TransferOpcode.Notify, 1, TransferLimits.MaxMetaBytes + 1).Write(bytes);
        Assert.Equal(TransferStatus.FrameTooLarge, Assert.Throws<TransferProtocolException>(() => TransferFrameHeader.Read(bytes)).Status);
        TransferFrameHeader.Request(TransferOpcode.Write, 1, 64, 4097).Write(bytes);
        Assert.Equal(TransferStatus.FrameTooLarge, Assert.Throws<TransferProtocolException>(() => TransferFrameHeader.Read(bytes, 4096)).Status);
        Assert.Equal(4096, TransferFrameHeader.Read(bytes, 4097).PayloadLength - 1);
    }

    [Fact]
    public void A_WRITE_whose_notif_length_disagrees_with_its_metadata_is_BAD_FRAME()
    {
        var bytes = VectorFile.Hex(Find(Frames, "write_first_slice_with_notif")["hex"]);
        var meta = bytes.AsSpan(TransferLimits.HeaderSize, 64 + 11).ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(meta.AsSpan(60), 12);
        Assert.Contains("notif_length 12", Assert.Throws<TransferProtocolException>(() => WriteSlice.Parse(meta)).Message);
    }

    [Theory]
    [InlineData("short", 63, 0)]
    [InlineData("magic", 64, 0)]
    [InlineData("version", 64, 4)]
    [InlineData("flags", 64, 5)]
    public void A_bad_advertisement_blob_is_a_FormatException_with_the_reason(string what, int length, int corrupt)
    {
        var good = VectorFile.Hex(Find(Blobs, "advertisement")["hex"]);
        var bytes = good.AsSpan(0, Math.Min(length, good.Length)).ToArray();
        if (length == 64) bytes[corrupt] ^= corrupt == 5 ? (byte)0x04 : (byte)0x02;   // flag bits 0 and 1 are defined
        var e = Assert.Throws<FormatException>(() => AdvertisementBlob.Parse(bytes));
        Assert.Contains(what switch { "short" => "63 bytes", "magic" => "bad magic", "version" => "version", _ => "flag" }, e.Message);
    }

    [Fact]
    public void A_bad_endpoint_blob_is_a_FormatException_with_the_reason()
    {
        var good = VectorFile.Hex(Find(Blobs, "endpoint_ipv4")["hex"]);
        Assert.Contains("39 bytes", Assert.Throws<FormatException>(() => EndpointBlob.Parse(good.AsSpan(0, 39))).Message);
        var family = (byte[])good.Clone();
        family[5] = 5;
        Assert.Contains("address family 5", Assert.Throws<FormatException>(() => EndpointBlob.Parse(family)).Message);
    }

    private static byte[] EncodeMeta(JsonObject f)
    {
        var m = f["meta"]!.AsObject();
        if (m.Count == 0) return [];
        var buffer = new byte[TransferLimits.MaxMetaBytes];
        bool reply = Flags(f) == TransferFlags.Reply;
        int n = (Opcode(f), reply) switch
        {
            (TransferOpcode.Hello, false) => new TransferHelloRequest((ushort)m["protocol_version"]!, (ushort)m["lane_index"]!, (ushort)m["lane_count"]!,
                Id(m["session_id"]), Id(m["engine_id"]), Id(m["host_id"])).Write(buffer),
            (TransferOpcode.Hello, true) => new TransferHelloReply((bool)m["auth_required"]!, (uint)m["max_slice"]!, Id(m["engine_id"]), VectorFile.Hex(m["server_nonce"])).Write(buffer),
            (TransferOpcode.Auth, false) => new TransferAuthRequest(VectorFile.Hex(m["client_nonce"]), VectorFile.Hex(m["client_proof"])).Write(buffer),
            (TransferOpcode.Auth, true) => Copy(VectorFile.Hex(m["server_proof"]), buffer),
            (TransferOpcode.Write, false) => Write(m).Write(buffer),
            (TransferOpcode.Write or TransferOpcode.StagedWrite, true) => WriteReply((ulong)m["slice_offset"]!, buffer),
            (TransferOpcode.Read, false) => Read(m).Write(buffer),
            (TransferOpcode.StagedWrite, false) => new StagedWrite((ulong)m["staging_offset"]!, (ulong)m["length"]!, Write(m["write"]!.AsObject())).Write(buffer),
            (TransferOpcode.StagedRead, false) => new StagedRead((ulong)m["staging_offset"]!, Read(m["read"]!.AsObject())).Write(buffer),
            (TransferOpcode.Notify, false) => Copy(VectorFile.Hex(m["notif"]), buffer),
            (TransferOpcode.KvReady, false) => new KvReady((ulong)m["kv_tag"]!, (uint)m["kv_generation"]!, (ulong)m["advert_id"]!, Id(m["token"]), (ulong)m["capacity"]!).Write(buffer),
            var other => throw new InvalidOperationException($"no metadata layout for {other}"),
        };
        return buffer[..n];
    }

    private static WriteSlice Write(JsonObject m) =>
        new((ulong)m["advert_id"]!, Id(m["token"]), (ulong)m["window_offset"]!, (ulong)m["transfer_length"]!,
            (ulong)m["slice_offset"]!, (ulong)m["kv_tag"]!, (uint)m["kv_generation"]!, VectorFile.Hex(m["notif"]));

    private static ReadSlice Read(JsonObject m) => new((ulong)m["advert_id"]!, Id(m["token"]), (ulong)m["offset"]!, (ulong)m["length"]!);

    private static JsonObject WriteFields(WriteSlice w) => new()
    {
        ["advert_id"] = w.AdvertId,
        ["token"] = Hex(w.Token),
        ["window_offset"] = w.WindowOffset,
        ["transfer_length"] = w.TransferLength,
        ["slice_offset"] = w.SliceOffset,
        ["kv_tag"] = w.KvTag,
        ["kv_generation"] = w.KvGeneration,
        ["notif"] = Convert.ToHexStringLower(w.Notification.Span),
    };

    private static JsonObject ReadFields(ReadSlice r) =>
        new() { ["advert_id"] = r.AdvertId, ["token"] = Hex(r.Token), ["offset"] = r.Offset, ["length"] = r.Length };

    private static JsonObject DecodeMeta(TransferFrameHeader h, ReadOnlySpan<byte> meta)
    {
        if (meta.IsEmpty) return [];
        switch (h.Opcode, h.IsReply)
        {
            case (TransferOpcode.Hello, false):
                var hello = TransferHelloRequest.Parse(meta);
                return new JsonObject
                {
                    ["protocol_version"] = hello.ProtocolVersion,
                    ["lane_index"] = hello.LaneIndex,
                    ["lane_count"] = hello.LaneCount,
                    ["session_id"] = Hex(hello.SessionId),
                    ["engine_id"] = Hex(hello.EngineId),
                    ["host_id"] = Hex(hello.HostId),
                };
            case (TransferOpcode.Hello, true):
                var reply = TransferHelloReply.Parse(meta);
                return new JsonObject
                {
                    ["auth_required"] = reply.AuthRequired,
                    ["max_slice"] = reply.MaxSlice,
                    ["engine_id"] = Hex(reply.EngineId),
                    ["server_nonce"] = Convert.ToHexStringLower(reply.ServerNonce),
                };
            case (TransferOpcode.Auth, false):
                var auth = TransferAuthRequest.Parse(meta);
                return new JsonObject { ["client_nonce"] = Convert.ToHexStringLower(auth.ClientNonce), ["client_proof"] = Convert.ToHexStringLower(auth.ClientProof) };
            case (TransferOpcode.Auth, true):
                return new JsonObject { ["server_proof"] = Convert.ToHexStringLower(meta) };
            case (TransferOpcode.Write, false):
                return WriteFields(WriteSlice.Parse(meta));
            case (TransferOpcode.Write or TransferOpcode.StagedWrite, true):
                return new JsonObject { ["slice_offset"] = WriteSlice.ParseReplyMeta(meta) };
            case (TransferOpcode.Read, false):
                return ReadFields(ReadSlice.Parse(meta));
            case (TransferOpcode.StagedWrite, false):
                var sw = StagedWrite.Parse(meta);
                return new JsonObject { ["staging_offset"] = sw.StagingOffset, ["length"] = sw.Length, ["write"] = WriteFields(sw.Slice) };
            case (TransferOpcode.StagedRead, false):
                var sr = StagedRead.Parse(meta);
                return new JsonObject { ["staging_offset"] = sr.StagingOffset, ["read"] = ReadFields(sr.Slice) };
            case (TransferOpcode.Notify, false):
                return new JsonObject { ["notif"] = Convert.ToHexStringLower(meta) };
            case (TransferOpcode.KvReady, false):
                var k = KvReady.Parse(meta);
                return new JsonObject
                {
                    ["kv_tag"] = k.KvTag,
                    ["kv_generation"] = k.KvGeneration,
                    ["advert_id"] = k.AdvertId,
                    ["token"] = Hex(k.Token),
                    ["capacity"] = k.Capacity,
                };
            default:
                throw new InvalidOperationException($"no metadata layout for {h.Opcode} reply={h.IsReply}");
        }
    }

    private static int Copy(byte[] source, byte[] destination) { source.CopyTo(destination, 0); return source.Length; }

    private static int WriteReply(ulong sliceOffset, byte[] buffer) { WriteSlice.WriteReplyMeta(buffer, sliceOffset); return 8; }

    private static UInt128 Id(JsonNode? hex) => BinaryPrimitives.ReadUInt128LittleEndian(VectorFile.Hex(hex));

    private static string Hex(UInt128 id)
    {
        Span<byte> b = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128LittleEndian(b, id);
        return Convert.ToHexStringLower(b);
    }

    private static TransferOpcode OpcodeByName(string name) => name switch
    {
        "HELLO" => TransferOpcode.Hello,
        "AUTH" => TransferOpcode.Auth,
        "WRITE" => TransferOpcode.Write,
        "READ" => TransferOpcode.Read,
        "NOTIFY" => TransferOpcode.Notify,
        "KV_READY" => TransferOpcode.KvReady,
        "STAGED_WRITE" => TransferOpcode.StagedWrite,
        "STAGED_READ" => TransferOpcode.StagedRead,
        _ => throw new InvalidOperationException($"unknown opcode name {name}"),
    };

    private static TransferOpcode Opcode(JsonObject f) => OpcodeByName((string)f["opcode"]!);

    private static TransferFlags Flags(JsonObject f) => f["flags"]!.AsArray().Count == 0 ? TransferFlags.None : TransferFlags.Reply;

    private static TransferStatus Status(JsonObject f) =>
        (TransferStatus)(ushort)(int)Root.Value["statuses"]![(string)f["status"]!]!;

    private static JsonObject Find(JsonArray list, string name) => list.Select(v => v!.AsObject()).Single(v => (string)v["name"]! == name);

    private static TheoryData<string> Names(JsonArray list)
    {
        var data = new TheoryData<string>();
        foreach (var v in list) data.Add((string)v!["name"]!);
        return data;
    }
}
