using System.Net.Sockets;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;
using Kvasir.TestSupport;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>
/// PUT with CRC_TRAILER (feature 0x10): each value in the payload is followed by its writer's CRC-32C, which the node
/// stores as a VALUE_CRC claim: unchecked, checked before the first read. A value whose bytes do not match the CRC that
/// followed them is a miss, dropped and counted in STATS crc_mismatches. The node never acts on a malformed trailer PUT
/// and never keeps arena space for one cut off inside a trailer.
/// </summary>
public sealed class CrcTrailerTests
{
    private static Task<RawConnection> ConnectGrantedAsync(TestNode node, ulong features = ProtocolFeatures.CrcTrailer) => CrcWire.ConnectGrantedAsync(node, features);

    private static Task<WireStatus[]> PutAsync(RawConnection c, ulong id, params (byte[] Key, byte[] Value, uint Crc)[] entries) =>
        CrcWire.PutAsync(c, id, PutWithTrailer(id, entries), entries.Length);

    [Fact]
    public async Task Hello_grants_crc_trailer_when_asked()
    {
        await using var node = ServerNode.Start();
        using var c = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(ProtocolFeatures.CrcTrailer | ProtocolFeatures.ValueCrc, (await c.HelloAsync(1, ProtocolFeatures.CrcTrailer | ProtocolFeatures.ValueCrc)).Features);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(65_535)]
    [InlineData(65_536)]
    [InlineData(65_537)]
    [InlineData(1 << 20)]   // the node's largest value here (ServerNode.MaxValue)
    public async Task Values_followed_by_their_crc_are_served_whole_with_the_writers_crc(int length)
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var value = Value(length, length);
        var small = Value(9, 3);
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], await PutAsync(c, 2, (Key("v"), value, Crc32C.Compute(value)), (Key("s"), small, Crc32C.Compute(small))));
        var (entries, payload) = await CrcWire.GetAsync(c, 3, Key("v"), Key("s"));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], entries.Select(e => e.Status));
        Assert.Equal([Crc32C.Compute(value), Crc32C.Compute(small)], entries.Select(e => e.Crc32C));
        Assert.Equal(value.Concat(small), payload);
        Assert.Equal(0L, CrcWire.Mismatches(node));
    }

    [Fact]
    public async Task Large_and_small_values_with_their_trailers_sent_in_odd_pieces_stay_in_step_and_a_wrong_trailer_is_still_a_miss()
    {
        // Before a large value the node reads a trailer without reading ahead (so the value goes straight into its
        // reservation); before a small one it reads ahead. Odd-sized sends make each trailer arrive now whole, now split,
        // now together with the next value's first bytes.
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        int d = Kvasir.Net.BufferedReceiver.DirectReadMin;
        var values = new[] { Value(1, 100_000), Value(2, 3), Value(3, d), Value(4, d - 1), Value(5, 65_536), Value(6, (int)ServerNode.MaxValue + 1), Value(7, d + 1), Value(8, 70_000) };
        var keys = values.Select((_, i) => Key($"k{i}")).ToArray();
        var entries = values.Select((v, i) => (keys[i], v, Crc32C.Compute(v) ^ (i == 4 ? 1u : 0u))).ToArray();   // k4's trailer is wrong
        var frame = PutWithTrailer(2, entries);
        for (int at = 0, step = 5; at < frame.Length; at += step, step = step * 7 % 90_001 + 3)
            await c.SendAsync(frame.AsMemory(at, Math.Min(step, frame.Length - at)));
        var reply = await c.ReadFrameAsync() ?? throw new Xunit.Sdk.XunitException("no reply to the PUT");
        var statuses = StatusListReply.Read(reply.Meta, values.Length);
        Assert.Equal(values.Select((_, i) => i == 5 ? WireStatus.ValueTooLarge : WireStatus.Ok), statuses);

        var stored = Enumerable.Range(0, values.Length).Where(i => i != 5).ToArray();
        var (got, payload) = await CrcWire.GetAsync(c, 3, stored.Select(i => keys[i]).ToArray());
        Assert.Equal(stored.Select(i => i == 4 ? WireStatus.NotFound : WireStatus.Ok), got.Select(e => e.Status));
        Assert.Equal(stored.Where(i => i != 4).SelectMany(i => values[i]), payload);
        Assert.Equal(1L, CrcWire.Mismatches(node));
    }

    [Fact]
    public async Task A_value_whose_trailer_does_not_match_its_bytes_is_a_miss_and_is_counted()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var good = Value(4, 70_000);
        var bad = Value(5, 70_000);
        var statuses = await PutAsync(c, 2, (Key("bad"), bad, Crc32C.Compute(bad) ^ 1), (Key("good"), good, Crc32C.Compute(good)));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], statuses);   // stored unchecked, as VALUE_CRC

        var (entries, payload) = await CrcWire.GetAsync(c, 3, Key("bad"), Key("good"));
        Assert.Equal([WireStatus.NotFound, WireStatus.Ok], entries.Select(e => e.Status));
        Assert.Equal(good, payload);
        Assert.Equal(1L, CrcWire.Mismatches(node));
        var exists = await c.RequestAsync(Exists(4, Key("bad")));
        Assert.Equal([WireStatus.NotFound], StatusListReply.Read(exists.Meta, 1));
    }

    [Fact]
    public async Task A_byte_flipped_on_the_wire_after_the_writer_checksummed_the_value_is_a_miss()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var value = Value(6, 200_000);
        var frame = PutWithTrailer(2, (Key("flipped"), value, Crc32C.Compute(value)));
        frame[^77] ^= 0x10;   // a bit of the value (the last 4 bytes are its CRC), as a bad link would change it
        await CrcWire.AssertChangedValueIsAMissAsync(node, c, frame, Key("flipped"));
    }

    [Fact]
    public async Task A_refused_entry_has_its_value_and_its_trailer_dropped_and_the_next_entry_stays_in_step()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var tooLarge = Value(1, (int)ServerNode.MaxValue + 1);
        var after = Value(2, 5000);
        var statuses = await PutAsync(c, 2, (Key("big"), tooLarge, Crc32C.Compute(tooLarge)), ([], after, Crc32C.Compute(after)),
            (Key("after"), after, Crc32C.Compute(after)));
        Assert.Equal([WireStatus.ValueTooLarge, WireStatus.InvalidKey, WireStatus.Ok], statuses);
        var (entries, payload) = await CrcWire.GetAsync(c, 3, Key("after"));
        Assert.Equal(WireStatus.Ok, entries[0].Status);
        Assert.Equal(after, payload);
        Assert.Equal(0L, CrcWire.Mismatches(node));
    }

    [Fact]
    public async Task A_put_with_crc_trailer_on_a_connection_that_was_not_granted_it_is_a_bad_frame()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node, ProtocolFeatures.ValueCrc);
        await AssertTrailerPutRefusedAsync(node, c, 7, "CRC_TRAILER");
    }

    [Fact]
    public async Task Crc_trailer_together_with_value_crc_is_a_bad_frame_and_nothing_is_stored()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node, ProtocolFeatures.CrcTrailer | ProtocolFeatures.ValueCrc);
        var value = Value(1, 4096);
        var meta = new byte[4 + PutRequest.EntrySize(1, valueCrc: true)];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, default, false, 1);
        PutRequest.WriteEntry(ref w, Key("k"), value.Length, Crc32C.Compute(value));
        await c.SendAsync(Frame(Opcode.Put, 8, meta, TrailerPayload((Key("k"), value, Crc32C.Compute(value))), FrameFlags.CrcTrailer | FrameFlags.ValueCrc));
        var error = await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, 8, Opcode.Put);
        Assert.Contains("exclude each other", error.ErrorMessage);
        Assert.Equal(0L, node.Stats.Keys);
    }

    [Fact]
    public async Task A_trailer_put_whose_payload_length_leaves_out_the_trailers_is_a_bad_frame_before_any_payload_is_read()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var value = Value(1, 4096);
        // payload_length = the value alone, as a writer that forgot the trailer would declare it
        await c.SendAsync(Frame(Opcode.Put, 9, PutMeta([(Key("k"), value.Length)]), value, FrameFlags.CrcTrailer));
        var error = await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, 9, Opcode.Put);
        Assert.Contains("CRC trailer", error.ErrorMessage);
        Assert.Equal(0L, node.Stats.Keys);
    }

    [Theory]
    [InlineData(0)]   // the value arrived whole, its trailer did not start
    [InlineData(2)]   // half of the trailer
    public async Task A_stream_that_ends_inside_a_trailer_stores_nothing_of_that_value_and_returns_its_arena_space(int trailerBytesSent)
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        long allocatedBefore = node.Stats.AllocatedBytes;
        var first = Value(1, 3000);
        var cut = Value(2, 200_000);
        using (var c = await ConnectGrantedAsync(node))
        {
            var frame = PutWithTrailer(2, (Key("first"), first, Crc32C.Compute(first)), (Key("cut"), cut, Crc32C.Compute(cut)));
            await c.SendAsync(frame.AsMemory(0, frame.Length - PutRequest.TrailerSize + trailerBytesSent));
            await Poll.UntilAsync(() => node.Stats.Reservations == 1, "the node to reserve arena space for the value being received");
            c.Socket.Shutdown(SocketShutdown.Send);
            await c.AssertClosedWithoutReplyAsync(because: "the stream ended inside the last value's trailer");
        }
        await node.WaitForNoLeaksAsync();
        Assert.Equal(WireStatus.NotFound, (await witness.GetAsync(Key("cut"))).Entry.Status);
        // The value that arrived whole with its trailer may be stored (the spec allows it); the cut one holds no space.
        long grown = node.Stats.AllocatedBytes - allocatedBefore;
        Assert.True(grown < cut.Length, $"{grown} arena bytes more than before the cut PUT: the cut value's {cut.Length} were kept");
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task A_node_withholding_the_trailer_grants_the_rest_and_refuses_a_trailer_put()
    {
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            WithheldFeatures = ProtocolFeatures.CrcTrailer,   // kvasir serve --withhold-features 10
            Store = new StoreOptions { Capacity = 64L << 20, MaxValueBytes = ServerNode.MaxValue },
        });
        using var c = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(ProtocolFeatures.Known & ~ProtocolFeatures.CrcTrailer, (await c.HelloAsync(1, ProtocolFeatures.Known)).Features);
        await AssertTrailerPutRefusedAsync(node, c, 5, "HELLO bit 0x10");
    }

    /// <summary>A trailer PUT on a connection not granted 0x10: BAD_FRAME naming <paramref name="reason"/>, the connection closed, nothing stored.</summary>
    private static async Task AssertTrailerPutRefusedAsync(TestNode node, RawConnection c, ulong id, string reason)
    {
        var value = Value(1, 4096);
        await c.SendAsync(PutWithTrailer(id, (Key("k"), value, Crc32C.Compute(value))));
        var error = await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, id, Opcode.Put);
        Assert.Contains(reason, error.ErrorMessage);
        Assert.Equal(0L, node.Stats.Keys);
    }

    [Fact]
    public async Task A_chained_trailer_put_with_its_parent_and_a_ttl_stores_its_blocks_and_a_wrong_trailer_is_a_miss()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node, ProtocolFeatures.CrcTrailer | ProtocolFeatures.Ttl);
        var parent = Value(1, 4000);
        Assert.Equal([WireStatus.Ok], await PutAsync(c, 2, (Key("p"), parent, Crc32C.Compute(parent))));
        var blocks = new[] { Value(2, 70_000), Value(3, 70_001), Value(4, 70_002) };
        (byte[] Key, byte[] Value, uint Crc)[] entries =
        [
            (Key("b0"), blocks[0], Crc32C.Compute(blocks[0])),
            (Key("b1"), blocks[1], Crc32C.Compute(blocks[1])),
            (Key("b2"), blocks[2], Crc32C.Compute(blocks[2]) ^ 0x8000_0000),   // the last block's trailer is wrong
        ];
        var meta = new byte[PutRequest.PrefixSize(Key("p"), true) + entries.Sum(e => PutRequest.EntrySize(e.Key.Length)) + 4];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, Key("p"), true, entries.Length);
        foreach (var e in entries) PutRequest.WriteEntry(ref w, e.Key, e.Value.Length);
        PutRequest.WriteTtl(ref w, 3600);
        var flags = FrameFlags.Chain | FrameFlags.ChainParent | FrameFlags.Ttl | FrameFlags.CrcTrailer;
        var reply = await c.RequestAsync(Frame(Opcode.Put, 3, meta, TrailerPayload(entries), flags));
        RawConnection.AssertReply(reply, Opcode.Put, 3);
        Assert.Equal([WireStatus.Ok, WireStatus.Ok, WireStatus.Ok], StatusListReply.Read(reply.Meta, 3));   // stored unchecked

        var (got, payload) = await CrcWire.GetAsync(c, 4, Key("p"), Key("b0"), Key("b1"), Key("b2"));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok, WireStatus.Ok, WireStatus.NotFound], got.Select(e => e.Status));
        Assert.Equal(parent.Concat(blocks[0]).Concat(blocks[1]), payload);
        Assert.Equal(1L, CrcWire.Mismatches(node));
    }

    [Fact]
    public async Task A_value_crc_put_from_a_client_that_does_not_know_the_trailer_still_works_next_to_one_that_does()
    {
        await using var node = ServerNode.Start();
        using var old = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(ProtocolFeatures.ValueCrc, (await old.HelloAsync(1, ProtocolFeatures.ValueCrc)).Features);
        using var c = await ConnectGrantedAsync(node);
        var a = Value(1, 100_000);
        var b = Value(2, 100_000);
        var reply = await old.RequestAsync(PutWithCrc(2, (Key("old"), a, Crc32C.Compute(a))));
        Assert.Equal([WireStatus.Ok], StatusListReply.Read(reply.Meta, 1));
        Assert.Equal([WireStatus.Ok], await PutAsync(c, 2, (Key("new"), b, Crc32C.Compute(b))));
        var (entries, payload) = await CrcWire.GetAsync(old, 3, Key("old"), Key("new"));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], entries.Select(e => e.Status));
        Assert.Equal(a.Concat(b), payload);
    }
}
