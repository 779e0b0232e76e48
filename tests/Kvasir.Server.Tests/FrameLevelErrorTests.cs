using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>
/// The "Bad input → response" rows of docs/protocol.md whose answer is a frame-level error: each
/// bad frame gets exactly its status (with its request id and opcode where the header was
/// readable), the connection is then closed, and a second well-behaved connection keeps working.
/// </summary>
public sealed class FrameLevelErrorTests
{
    private const ulong Id = 0x0123_4567_89AB_CDEF;

    /// <param name="Frame">The bytes sent.</param>
    /// <param name="AfterHello">Sent after a valid HELLO (otherwise as the first frame).</param>
    /// <param name="HeaderReadable">The header parsed, so the error names this request's id and opcode.</param>
    public sealed record Case(byte[] Frame, WireStatus Status, bool AfterHello = true, bool HeaderReadable = true);

    private static readonly byte[] K = Key("k");

    private static readonly Dictionary<string, Case> Cases = new()
    {
        // Header-level (steps 2-12 of the order of checks).
        ["bad magic"] = new(RawHeader((byte)Opcode.Ping, Id, 0, 0, magic: 0x5853564B), WireStatus.BadFrame, HeaderReadable: false),
        ["header version 2"] = new(RawHeader((byte)Opcode.Ping, Id, 0, 0, version: 2), WireStatus.UnsupportedVersion, HeaderReadable: false),
        ["header version 0"] = new(RawHeader((byte)Opcode.Ping, Id, 0, 0, version: 0), WireStatus.UnsupportedVersion, HeaderReadable: false),
        ["reserved field not zero"] = new(RawHeader((byte)Opcode.Ping, Id, 0, 0, reserved: 1), WireStatus.BadFrame, HeaderReadable: false),
        ["meta length over 2^31-1"] = new(RawHeader((byte)Opcode.Ping, Id, 0x8000_0000, 0), WireStatus.FrameTooLarge, HeaderReadable: false),
        ["payload length over 2^63-1"] = new(RawHeader((byte)Opcode.Put, Id, 4, 1UL << 63), WireStatus.FrameTooLarge, HeaderReadable: false),
        ["reply flag in a request"] = new(RawHeader((byte)Opcode.Ping, Id, 0, 0, flags: 0x8000), WireStatus.BadFrame),
        ["unknown opcode 0x04"] = new(RawHeader(0x04, Id, 0, 0), WireStatus.UnknownOpcode),
        ["unknown opcode 0xff"] = new(RawHeader(0xFF, Id, 0, 0), WireStatus.UnknownOpcode),
        ["undefined flag bit on a put"] = new(Frame(Opcode.Put, Id, PutMeta([]), flags: (FrameFlags)0x0040), WireStatus.BadFrame),
        ["chain flag on a get"] = new(Frame(Opcode.Get, Id, KeyBatchMeta(K), flags: FrameFlags.Chain), WireStatus.BadFrame),
        ["chain parent flag on a ping"] = new(Frame(Opcode.Ping, Id, [], flags: FrameFlags.Chain | FrameFlags.ChainParent), WireStatus.BadFrame),
        ["chain parent without chain"] = new(Frame(Opcode.Put, Id, PutMeta([], parent: K), flags: FrameFlags.ChainParent), WireStatus.BadFrame),
        ["non-zero status in a request"] = new(RawHeader((byte)Opcode.Ping, Id, 0, 0, status: 1), WireStatus.BadFrame),
        ["meta over the node's max_meta_bytes"] = new(RawHeader((byte)Opcode.Get, Id, (8u << 20) + 1, 0), WireStatus.FrameTooLarge),
        ["payload on a get"] = new(Frame(Opcode.Get, Id, KeyBatchMeta(K), payload: [0x78]), WireStatus.BadFrame),
        ["payload on a ping"] = new(Frame(Opcode.Ping, Id, [], payload: [1, 2, 3]), WireStatus.BadFrame),

        // State.
        ["get before hello"] = new(Get(Id, K), WireStatus.HelloRequired, AfterHello: false),
        ["ping before hello"] = new(Ping(Id), WireStatus.HelloRequired, AfterHello: false),
        ["second hello"] = new(Hello(Id), WireStatus.BadState),
        ["auth on a node without a key"] = new(Auth(Id, new byte[32], new byte[32]), WireStatus.BadState),

        // Metadata layout and limits.
        ["key length pointing past the metadata"] = new(Frame(Opcode.Get, Id, [1, 0, 0, 0, 200, 0, (byte)'a', (byte)'b', (byte)'c']), WireStatus.BadFrame),
        ["batch count 0xffffffff"] = new(Frame(Opcode.Get, Id, [0xFF, 0xFF, 0xFF, 0xFF]), WireStatus.BatchTooLarge),
        ["batch count 8193 over max_batch_keys"] = new(Frame(Opcode.Exists, Id, [0x01, 0x20, 0, 0]), WireStatus.BatchTooLarge),
        ["put count 0xffffffff"] = new(Frame(Opcode.Put, Id, [0xFF, 0xFF, 0xFF, 0xFF]), WireStatus.BatchTooLarge),
        ["batch count not fitting the metadata"] = new(Frame(Opcode.Get, Id, [0xE8, 0x03, 0, 0, 3, 0, (byte)'a', (byte)'b', (byte)'c']), WireStatus.BadFrame),
        ["stray bytes after a key batch"] = new(Frame(Opcode.Remove, Id, [.. KeyBatchMeta(K), 0, 0]), WireStatus.BadFrame),
        ["put count not fitting the metadata"] = new(Frame(Opcode.Put, Id, [2, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0, (byte)'k', (byte)'1'], payload: [1, 2, 3]), WireStatus.BadFrame),
        ["put key length pointing past the metadata"] = new(Frame(Opcode.Put, Id, [1, 0, 0, 0, 9, 0, 3, 0, 0, 0, 0, 0, 0, 0, (byte)'k', (byte)'1'], payload: [1, 2, 3]), WireStatus.BadFrame),
        ["put parent pointing past the metadata"] = new(Frame(Opcode.Put, Id, [0x2C, 0x01, 1, 0, 0, 0, 0, 2, 0], flags: FrameFlags.Chain | FrameFlags.ChainParent), WireStatus.BadFrame),
        ["put payload longer than the sum of value lengths"] = new(Frame(Opcode.Put, Id, PutMeta([(K, 3)]), payload: [1, 2, 3, 4]), WireStatus.BadFrame),
        ["put payload shorter than the sum of value lengths"] = new(Frame(Opcode.Put, Id, PutMeta([(K, 3)]), payload: [1, 2]), WireStatus.BadFrame),
        ["put value over the 1 GiB hard limit (payload never sent)"] = new(Frame(Opcode.Put, Id, PutMeta([(K, (1L << 30) + 1)]), payloadLength: (1L << 30) + 1), WireStatus.FrameTooLarge),
        ["ping echo of 1025 bytes"] = new(Ping(Id, Filled(1025, 0x65)), WireStatus.FrameTooLarge),
        ["stats with metadata"] = new(Frame(Opcode.Stats, Id, [0]), WireStatus.BadFrame),
        ["chain flag on a commit without feature 0x20"] = new(Frame(Opcode.Commit, Id, [1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0], flags: FrameFlags.Chain), WireStatus.BadFrame),

        // HELLO's own checks.
        ["hello with version range 2..3"] = new(Hello(Id, 2, 3), WireStatus.UnsupportedVersion, AfterHello: false),
        ["hello with version range 0..0"] = new(Hello(Id, 0, 0), WireStatus.UnsupportedVersion, AfterHello: false),
        ["hello with client name over 256 bytes"] = new(Frame(Opcode.Hello, Id, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, .. Filled(257, (byte)'n')]), WireStatus.BadFrame, AfterHello: false),
        ["hello with a client name that is not utf-8"] = new(Frame(Opcode.Hello, Id, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xC3, 0x28]), WireStatus.BadFrame, AfterHello: false),
        ["hello with stray bytes"] = new(Frame(Opcode.Hello, Id, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]), WireStatus.BadFrame, AfterHello: false),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task A_malformed_or_forbidden_frame_gets_its_documented_error_then_the_connection_closes_and_other_connections_keep_working(string name)
    {
        var c = Cases[name];
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        long errorsBefore = node.Node.Counters.ProtocolErrors;

        using var bad = await RawConnection.ConnectAsync(node.Port);
        if (c.AfterHello) await bad.HelloAsync(id: 1);
        await bad.SendAsync(c.Frame);
        var reply = c.HeaderReadable
            ? await bad.AssertErrorThenClosedAsync(c.Status, Id, (Opcode)c.Frame[5])
            : await bad.AssertErrorThenClosedAsync(c.Status);

        Assert.False(string.IsNullOrEmpty(reply.ErrorMessage), "an error reply should say what was wrong");
        Assert.Equal(errorsBefore + 1, node.Node.Counters.ProtocolErrors);
        await witness.RoundTripAsync();
        Assert.True(node.Stats.Keys == 2, $"only the witness's two values should be stored, found {node.Stats.Keys} keys");
    }

    [Fact]
    public async Task A_commit_whose_chain_parent_is_cut_short_is_a_bad_frame_on_a_connection_granted_commit_chains()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        using var bad = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(ProtocolFeatures.CommitChain, (await bad.HelloAsync(1, ProtocolFeatures.CommitChain)).Features);
        // one id (8), then a parent key declared 5 bytes long with 1 byte present
        await bad.SendAsync(Frame(Opcode.Commit, 7, [1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5, 0, 1], flags: FrameFlags.Chain | FrameFlags.ChainParent));
        var reply = await bad.AssertErrorThenClosedAsync(WireStatus.BadFrame, 7, Opcode.Commit);
        Assert.Contains("CHAIN_PARENT", reply.ErrorMessage);
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task A_put_whose_payload_length_disagrees_with_its_values_stores_nothing_even_if_the_bytes_follow()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        using var bad = await RawConnection.ConnectAsync(node.Port);
        await bad.HelloAsync();
        var key = Key("mismatch");
        await bad.SendAsync(Frame(Opcode.Put, 5, PutMeta([(key, 3)]), payload: [1, 2, 3, 4]));
        await bad.AssertErrorThenClosedAsync(WireStatus.BadFrame, 5, Opcode.Put);
        Assert.Equal(WireStatus.NotFound, (await witness.GetAsync(key)).Entry.Status);
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task One_mebibyte_of_random_garbage_is_answered_bad_frame_and_the_node_keeps_serving()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        var garbage = Value(4242, 1 << 20);
        garbage[0] = 0x00; // never "K": the magic check fails on the first frame

        foreach (bool afterHello in new[] { false, true })
        {
            using var bad = await RawConnection.ConnectAsync(node.Port);
            if (afterHello) await bad.HelloAsync();
            // The node answers after 32 bytes and then drains what follows; send concurrently with reading.
            var sending = Task.Run(async () =>
            {
                try { await bad.SendAsync(garbage); }
                catch (Exception ex) when (ex is System.Net.Sockets.SocketException or OperationCanceledException or ObjectDisposedException) { }
            });
            await bad.AssertErrorThenClosedAsync(WireStatus.BadFrame);
            await sending;
            await witness.RoundTripAsync();
        }
        await Poll.UntilAsync(() => node.Node.Counters.Connections == 1, "the garbage connections to be gone");
    }
}
