using System.Text.Json.Nodes;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Protocol.Tests.Vectors;

public class GoldenVectorTests
{
    public static TheoryData<string> VectorNames => VectorFile.VectorNames();

    [Theory]
    [MemberData(nameof(VectorNames))]
    public void Every_vector_decodes_to_exactly_its_frame_fields(string name)
    {
        var vector = VectorFile.Vector(name);
        bool versions = vector["connection_features"] is { } f && ((ulong)f & ValueVersions.Feature) != 0;
        var decoded = FrameCodec.Decode(VectorFile.Hex(vector["hex"]), versions: versions);
        Assert.Equal(vector["frame"]!.ToJsonString(), decoded.ToJsonString());
    }

    [Theory]
    [MemberData(nameof(VectorNames))]
    public void Every_vector_re_encodes_from_its_fields_byte_identically(string name)
    {
        var vector = VectorFile.Vector(name);
        var encoded = FrameCodec.Encode(vector["frame"]!.AsObject());
        Assert.Equal((string)vector["hex"]!, FrameCodec.Hex(encoded));
    }

    [Fact]
    public void The_vector_file_covers_every_opcode_as_request_and_as_reply()
    {
        var seen = VectorFile.Vectors
            .Select(v => v!["frame"]!)
            .Select(f => ((string)f["opcode"]!, f["flags"]!.AsArray().Any(x => (string)x! == "REPLY")))
            .ToHashSet();
        foreach (var op in Enum.GetValues<Opcode>())
        {
            Assert.Contains((FrameCodec.Name(op), false), seen);
            Assert.Contains((FrameCodec.Name(op), true), seen);
        }
    }

    [Fact]
    public void Vector_names_are_unique()
    {
        var names = VectorFile.Vectors.Concat(VectorFile.Malformed).Select(v => (string)v!["name"]!).ToList();
        Assert.Equal(names.Count, names.Distinct().Count());
    }

    [Fact]
    public void The_code_tables_in_the_vector_file_match_the_protocol_enums()
    {
        AssertTable<Opcode>("opcodes");
        AssertTable<FrameFlags>("flags", skip: FrameFlags.None);
        AssertTable<WireStatus>("statuses");
        var features = VectorFile.Document["features"]!.AsObject();
        Assert.Equal(ProtocolFeatures.ValueCrc, (ulong)features["VALUE_CRC"]!);
        Assert.Equal(ProtocolFeatures.Ttl, (ulong)features["TTL"]!);
        Assert.Equal(ProtocolFeatures.Versions, (ulong)features["VERSIONS"]!);
        Assert.Equal(ProtocolFeatures.CrcTrailer, (ulong)features["CRC_TRAILER"]!);
        Assert.Equal(ProtocolFeatures.LateParent, (ulong)features["LATE_PARENT"]!);
        Assert.Equal(ProtocolFeatures.Known, features.Aggregate(0UL, (all, f) => all | (ulong)f.Value!));
    }

    [Fact]
    public void Every_CRC32C_in_a_PUT_request_vector_with_VALUE_CRC_is_the_CRC_of_that_entrys_value()
    {
        int checkedEntries = 0;
        foreach (var v in VectorFile.Vectors.Where(v => v!["frame"]!["flags"]!.AsArray().Any(f => (string)f! == "VALUE_CRC")))
        {
            var payload = VectorFile.Hex(v!["frame"]!["payload"]);
            int offset = 0;
            foreach (var e in v["frame"]!["meta"]!["entries"]!.AsArray())
            {
                int length = (int)e!["value_length"]!;
                Assert.Equal(Crc32C.Compute(payload.AsSpan(offset, length)), (uint)e["crc32c"]!);
                offset += length;
                checkedEntries++;
            }
        }
        Assert.True(checkedEntries >= 4, $"only {checkedEntries} VALUE_CRC entries in the vector file");
    }

    [Fact]
    public void Every_PUT_request_vector_with_CRC_TRAILER_has_each_values_CRC32C_right_after_the_value()
    {
        int checkedEntries = 0;
        foreach (var v in VectorFile.Vectors.Where(v => v!["frame"]!["flags"]!.AsArray().Any(f => (string)f! == "CRC_TRAILER")))
        {
            var payload = VectorFile.Hex(v!["frame"]!["payload"]);
            var expected = v["trailer_crcs"]!.AsArray().Select(c => (uint)c!).ToArray();
            var entries = v["frame"]!["meta"]!["entries"]!.AsArray();
            Assert.Equal(entries.Count, expected.Length);
            Assert.Equal(PutRequest.PayloadLength(entries.Sum(e => (long)e!["value_length"]!), entries.Count, crcTrailer: true), payload.Length);
            int offset = 0;
            for (int i = 0; i < entries.Count; i++)
            {
                Assert.Null(entries[i]!["crc32c"]);   // the CRC is not in the entry
                int length = (int)entries[i]!["value_length"]!;
                uint trailer = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(offset + length));
                Assert.Equal(expected[i], trailer);
                Assert.Equal(Crc32C.Compute(payload.AsSpan(offset, length)), trailer);
                offset += length + PutRequest.TrailerSize;
                checkedEntries++;
            }
        }
        Assert.True(checkedEntries >= 5, $"only {checkedEntries} CRC_TRAILER entries in the vector file");
    }

    [Fact]
    public void The_limits_in_the_vector_file_match_ProtocolLimits()
    {
        var limits = VectorFile.Document["limits"]!;
        Assert.Equal(ProtocolLimits.HeaderSize, (int)limits["header_bytes"]!);
        Assert.Equal(ProtocolLimits.MaxKeyBytes, (int)limits["max_key_bytes"]!);
        Assert.Equal(ProtocolLimits.DefaultMaxValueBytes, (long)limits["default_max_value_bytes"]!);
        Assert.Equal(ProtocolLimits.HardMaxValueBytes, (long)limits["hard_max_value_bytes"]!);
        Assert.Equal(ProtocolLimits.DefaultMaxBatchKeys, (int)limits["default_max_batch_keys"]!);
        Assert.Equal(ProtocolLimits.DefaultMaxMetaBytes, (int)limits["default_max_meta_bytes"]!);
        Assert.Equal(ProtocolLimits.MaxPingBytes, (int)limits["max_ping_bytes"]!);
        Assert.Equal(ProtocolLimits.MaxNameBytes, (int)limits["max_name_bytes"]!);
        Assert.Equal(ProtocolLimits.NonceBytes, (int)limits["nonce_bytes"]!);
        Assert.Equal(ErrorReply.MaxMessageBytes, (int)limits["max_error_message_bytes"]!);
    }

    [Fact]
    public void Every_CRC32C_in_a_GET_reply_vector_is_the_CRC_the_storage_layer_computes_for_that_value()
    {
        int checkedValues = 0;
        foreach (var frame in VectorFile.Vectors.Select(v => v!["frame"]!))
        {
            if ((string)frame["opcode"]! != "GET" || frame["meta"]!["entries"] is not JsonArray entries) continue;
            var payload = VectorFile.Hex(frame["payload"]);
            int offset = 0;
            foreach (var e in entries)
            {
                if ((string)e!["status"]! != "OK")
                {
                    Assert.Equal(0u, (uint)e["crc32c"]!);
                    continue;
                }
                int length = (int)e["length"]!;
                Assert.Equal(Crc32C.Compute(payload.AsSpan(offset, length)), (uint)e["crc32c"]!);
                offset += length;
                checkedValues++;
            }
            Assert.Equal(payload.Length, offset);
        }
        Assert.True(checkedValues >= 3, "the GET vectors should carry several hits");
    }

    [Fact]
    public void Auth_vectors_carry_the_HMAC_proofs_that_AuthHandshake_computes()
    {
        foreach (var vector in VectorFile.Vectors.Select(v => v!.AsObject()).Where(v => v["auth"] is not null))
        {
            var auth = vector["auth"]!;
            byte[] key = VectorFile.Hex(auth["key"]), server = VectorFile.Hex(auth["server_nonce"]), client = VectorFile.Hex(auth["client_nonce"]);
            var meta = vector["frame"]!["meta"]!;
            if (meta["client_proof"] is { } clientProof)
            {
                Assert.Equal((string)auth["client_nonce"]!, (string)meta["client_nonce"]!);
                Assert.Equal((string)clientProof!, FrameCodec.Hex(AuthHandshake.ClientProof(key, server, client)));
            }
            else
            {
                Assert.Equal((string)meta["server_proof"]!, FrameCodec.Hex(AuthHandshake.ServerProof(key, server, client)));
            }
        }
    }

    [Fact]
    public void The_auth_vectors_use_the_server_nonce_of_the_auth_HELLO_reply()
    {
        var nonce = (string)VectorFile.Vector("hello_reply_auth")["frame"]!["meta"]!["server_nonce"]!;
        Assert.Equal(nonce, (string)VectorFile.Vector("auth_request")["auth"]!["server_nonce"]!);
        Assert.Equal(nonce, (string)VectorFile.Vector("auth_reply")["auth"]!["server_nonce"]!);
    }

    [Fact]
    public void A_node_checking_the_wrong_key_vector_with_the_real_key_rejects_the_proof()
    {
        var good = VectorFile.Vector("auth_request")["auth"]!;
        var wrong = VectorFile.Vector("auth_request_wrong_key")["frame"]!["meta"]!;
        var expected = AuthHandshake.ClientProof(VectorFile.Hex(good["key"]), VectorFile.Hex(good["server_nonce"]), VectorFile.Hex(good["client_nonce"]));
        Assert.False(AuthHandshake.ProofsEqual(expected, VectorFile.Hex(wrong["client_proof"])));
    }

    [Fact]
    public void Replies_carry_the_request_id_and_opcode_of_their_request()
    {
        foreach (var (request, reply) in new[]
        {
            ("hello_request", "hello_reply_no_auth"), ("auth_request", "auth_reply"), ("ping_request", "ping_reply"),
            ("ping_request_empty_max_id", "ping_reply_empty_max_id"), ("put_request_plain", "put_reply"),
            ("put_request_empty", "put_reply_empty"), ("get_request", "get_reply"), ("get_request_two", "get_reply_two_hits"),
            ("exists_request", "exists_reply"), ("remove_request", "remove_reply"), ("pin_request", "pin_reply"),
            ("unpin_request", "unpin_reply"), ("stats_request", "stats_reply"), ("scan_request", "scan_reply"),
            ("scan_request_cursor", "scan_reply_last"), ("info_request", "info_reply"), ("remove_prefix_request", "remove_prefix_reply"),
        })
        {
            var q = VectorFile.Vector(request)["frame"]!;
            var r = VectorFile.Vector(reply)["frame"]!;
            Assert.Equal((ulong)q["request_id"]!, (ulong)r["request_id"]!);
            Assert.Equal((string)q["opcode"]!, (string)r["opcode"]!);
            if (q["meta"]!["limit"] is { } limit)
            {
                Assert.InRange(r["meta"]!["entries"]!.AsArray().Count, 0, (int)limit);   // a SCAN page holds at most its limit
                continue;
            }
            int keys = q["meta"]!["keys"]?.AsArray().Count ?? q["meta"]!["entries"]?.AsArray().Count ?? -1;
            int results = r["meta"]!["statuses"]?.AsArray().Count ?? r["meta"]!["entries"]?.AsArray().Count ?? -1;
            Assert.Equal(keys, results);
        }
    }

    private static void AssertTable<T>(string table, T? skip = null) where T : struct, Enum
    {
        var fromFile = VectorFile.Document[table]!.AsObject().ToDictionary(p => p.Key, p => (ulong)p.Value!);
        var fromCode = Enum.GetValues<T>().Where(v => !v.Equals(skip)).ToDictionary(FrameCodec.Name, v => Convert.ToUInt64(v, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(fromCode.OrderBy(p => p.Key), fromFile.OrderBy(p => p.Key));
    }
}
