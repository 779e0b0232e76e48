using System.Text.Json.Nodes;

namespace Kvasir.Protocol.Tests.Vectors;

/// <summary>
/// The "malformed" vectors. Layer "header" and "message" frames must be rejected by the decoders of
/// src/Kvasir.Protocol themselves; layer "node" frames decode fine and are refused by the rules the
/// node applies to requests (docs/protocol.md, "Bad input"), mirrored here by <see cref="RequestRules"/>.
/// </summary>
public class MalformedVectorTests
{
    public static TheoryData<string> MalformedNames => VectorFile.MalformedNames();

    [Theory]
    [MemberData(nameof(MalformedNames))]
    public void Every_malformed_vector_is_rejected_with_its_expected_status(string name)
    {
        var vector = VectorFile.MalformedVector(name);
        var bytes = VectorFile.Hex(vector["hex"]);
        var expected = FrameCodec.Parse<WireStatus>((string)vector["expected_status"]!);
        var layer = (string)vector["layer"]!;

        var ex = Assert.Throws<ProtocolException>(() =>
        {
            if (layer == "node") RequestRules.Check(bytes);
            else FrameCodec.Decode(bytes);
        });
        Assert.Equal(expected, ex.Status);
        Assert.False(string.IsNullOrWhiteSpace(ex.Message));
    }

    [Theory]
    [MemberData(nameof(MalformedNames))]
    public void Header_layer_vectors_fail_in_the_header_and_the_others_have_a_valid_header(string name)
    {
        var vector = VectorFile.MalformedVector(name);
        var bytes = VectorFile.Hex(vector["hex"]);
        if ((string)vector["layer"]! == "header")
            Assert.Throws<ProtocolException>(() => FrameHeader.Read(bytes));
        else
            Assert.Null(Record.Exception(() => FrameHeader.Read(bytes)));
    }

    [Fact]
    public void Every_valid_request_vector_passes_the_node_request_rules()
    {
        foreach (var v in VectorFile.Vectors.Select(v => v!.AsObject()))
        {
            if (v["frame"]!["flags"]!.AsArray().Any(f => (string)f! == "REPLY")) continue;
            if ((string)v["name"]! == "auth_request_wrong_key") continue;
            ulong features = v["connection_features"] is { } f ? (ulong)f : 0;
            RequestRules.Check(VectorFile.Hex(v["hex"]), (features & ValueVersions.Feature) != 0, (features & ProtocolFeatures.CrcTrailer) != 0,
                (features & ProtocolFeatures.LateParent) != 0);
        }
    }

    [Fact]
    public void Malformed_vectors_cover_the_cases_the_spec_lists()
    {
        var names = VectorFile.Malformed.Select(v => (string)v!["name"]!).ToHashSet();
        foreach (var required in new[]
        {
            "bad_magic", "bad_version", "reserved_nonzero", "truncated_header", "key_length_past_metadata",
            "batch_count_does_not_fit", "put_payload_length_mismatch", "batch_count_over_limit", "put_value_over_hard_limit",
            "reply_flag_in_request", "unknown_opcode", "unknown_flag", "status_in_request", "meta_over_node_limit",
            "crc_trailer_flag_without_feature", "put_crc_trailer_with_value_crc", "put_crc_trailer_payload_without_trailers",
            "parent_follows_flag_without_feature",
        })
        {
            Assert.Contains(required, names);
        }
    }
}

/// <summary>
/// The stateless request checks of the node (Connection.CheckRequestHeader and the per-opcode handlers),
/// in the same order, for frames whose header and metadata are otherwise well formed.
/// </summary>
public static class RequestRules
{
    /// <summary>
    /// As on a connection that was granted VALUE_CRC, TTL and ARENA_PROOF: a flag is refused only where no grant allows it. VERSION
    /// is allowed only with <paramref name="versions"/> and CRC_TRAILER only with <paramref name="crcTrailer"/>, so that a vector
    /// can show each refused without its grant.
    /// </summary>
    /// <param name="frame">The request.</param>
    /// <param name="versions">The connection was granted <see cref="ValueVersions.Feature"/>: PUT may carry VERSION.</param>
    /// <param name="crcTrailer">The connection was granted <see cref="ProtocolFeatures.CrcTrailer"/>: PUT may carry CRC_TRAILER.</param>
    /// <param name="lateParent">The connection was granted <see cref="ProtocolFeatures.LateParent"/>: PUT may carry PARENT_FOLLOWS.</param>
    public static void Check(byte[] frame, bool versions = false, bool crcTrailer = false, bool lateParent = false)
    {
        var h = FrameHeader.Read(frame);
        if (h.IsReply) throw new ProtocolException(WireStatus.BadFrame, "a reply frame was sent to the node");
        if (!Opcodes.IsDefined((byte)h.Opcode)) throw new ProtocolException(WireStatus.UnknownOpcode, "unknown opcode");
        var allowed = h.Opcode switch
        {
            Opcode.Put => FrameFlags.Chain | FrameFlags.ChainParent | FrameFlags.ValueCrc | FrameFlags.Ttl | (versions ? FrameFlags.Version : 0)
                | (crcTrailer ? FrameFlags.CrcTrailer : 0) | (lateParent ? FrameFlags.ParentFollows : 0),
            Opcode.Alloc => FrameFlags.Ttl | FrameFlags.Mapped,
            Opcode.Commit => FrameFlags.CommitCrc | FrameFlags.Chain | FrameFlags.ChainParent,
            _ => FrameFlags.None,
        };
        if ((h.Flags & ~allowed) != 0) throw new ProtocolException(WireStatus.BadFrame, "invalid flags");
        if ((h.Flags & FrameFlags.ChainParent) != 0 && (h.Flags & FrameFlags.Chain) == 0)
            throw new ProtocolException(WireStatus.BadFrame, "ChainParent without Chain");
        if ((h.Flags & FrameFlags.ParentFollows) != 0 && (h.Flags & FrameFlags.ChainParent) == 0)
            throw new ProtocolException(WireStatus.BadFrame, "PARENT_FOLLOWS without CHAIN_PARENT");
        if (h.Status != WireStatus.Ok) throw new ProtocolException(WireStatus.BadFrame, "a request carries a non-zero status");
        if (h.MetaLength > ProtocolLimits.DefaultMaxMetaBytes) throw new ProtocolException(WireStatus.FrameTooLarge, "metadata too large");
        if (h.Opcode != Opcode.Put && h.PayloadLength != 0) throw new ProtocolException(WireStatus.BadFrame, "payload on a non-PUT");

        JsonObject decoded = FrameCodec.Decode(frame);
        var meta = decoded["meta"]!;
        switch (h.Opcode)
        {
            case Opcode.Ping when h.MetaLength > ProtocolLimits.MaxPingBytes:
                throw new ProtocolException(WireStatus.FrameTooLarge, "PING echo too long");
            case Opcode.Hello when (ushort)meta["min_version"]! > ProtocolLimits.Version || (ushort)meta["max_version"]! < ProtocolLimits.Version:
                throw new ProtocolException(WireStatus.UnsupportedVersion, "version range excludes 1");
        }
    }
}
