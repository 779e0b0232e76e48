using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>
/// PUT with VALUE_CRC (feature 0x1): the node stores the writer's CRC-32C instead of computing it, and checks it before
/// the value is first read. A value whose bytes do not match the CRC sent with them — a wrong CRC, or a byte changed
/// on the wire — is never served: it is a miss, dropped and counted in STATS crc_mismatches.
/// </summary>
public sealed class ValueCrcTests
{
    private static Task<RawConnection> ConnectGrantedAsync(TestNode node) => CrcWire.ConnectGrantedAsync(node, ProtocolFeatures.ValueCrc);

    private static Task<WireStatus[]> PutAsync(RawConnection c, ulong id, params (byte[] Key, byte[] Value, uint Crc)[] entries) =>
        CrcWire.PutAsync(c, id, PutWithCrc(id, entries), entries.Length);

    [Theory]
    [InlineData(0UL, 0UL)]
    [InlineData(0x1UL, 0x1UL)]
    [InlineData(0xFFFF_FFFF_FFFF_FFFFUL, ProtocolFeatures.Known)]
    [InlineData(0x2UL, 0x2UL)]   // TTL alone: granted, and not VALUE_CRC
    [InlineData(0x4UL, 0x4UL)]   // versions alone
    [InlineData(0x8000UL, 0UL)]  // a bit no node knows
    public async Task Hello_grants_value_crc_when_asked_and_never_a_bit_it_does_not_know(ulong asked, ulong granted)
    {
        await using var node = ServerNode.Start();
        using var c = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(granted, (await c.HelloAsync(1, asked)).Features);
    }

    [Fact]
    public async Task A_put_with_value_crc_on_a_connection_that_was_not_granted_it_is_a_bad_frame()
    {
        await using var node = ServerNode.Start();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        var value = Value(1, 4096);
        await c.SendAsync(PutWithCrc(7, (Key("k"), value, Crc32C.Compute(value))));
        await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, 7, Opcode.Put);
        Assert.Equal(0L, node.Stats.Keys);
    }

    [Fact]
    public async Task A_value_whose_sent_crc_matches_is_served_with_that_crc_and_counts_no_mismatch()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var a = Value(2, 300_000);
        var b = Value(3, 0);
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], await PutAsync(c, 2, (Key("a"), a, Crc32C.Compute(a)), (Key("b"), b, Crc32C.Compute(b))));
        for (ulong round = 0; round < 2; round++)   // the first read checks, the second finds it checked
        {
            var (entries, payload) = await CrcWire.GetAsync(c, 3 + round, Key("a"), Key("b"));
            Assert.Equal([WireStatus.Ok, WireStatus.Ok], entries.Select(e => e.Status));
            Assert.Equal([Crc32C.Compute(a), Crc32C.Compute(b)], entries.Select(e => e.Crc32C));
            Assert.Equal(a, payload);
        }
        Assert.Equal(0L, CrcWire.Mismatches(node));
    }

    [Fact]
    public async Task A_put_whose_sent_crc_does_not_match_its_bytes_is_a_miss_and_is_counted()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var good = Value(4, 70_000);
        var bad = Value(5, 70_000);
        var statuses = await PutAsync(c, 2, (Key("good"), good, Crc32C.Compute(good)), (Key("bad"), bad, Crc32C.Compute(bad) ^ 1));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], statuses);   // stored unchecked: the node does not checksum as it receives

        var (entries, payload) = await CrcWire.GetAsync(c, 3, Key("bad"), Key("good"), Key("bad"));
        Assert.Equal([WireStatus.NotFound, WireStatus.Ok, WireStatus.NotFound], entries.Select(e => e.Status));
        Assert.Equal(good, payload);
        Assert.Equal(1L, CrcWire.Mismatches(node));
        var exists = await c.RequestAsync(Exists(4, Key("bad")));
        Assert.Equal([WireStatus.NotFound], StatusListReply.Read(exists.Meta, 1));   // dropped, not just hidden
    }

    [Fact]
    public async Task A_byte_flipped_on_the_wire_after_the_writer_checksummed_the_value_is_a_miss()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var value = Value(6, 200_000);
        var frame = PutWithCrc(2, (Key("flipped"), value, Crc32C.Compute(value)));
        frame[^77] ^= 0x10;   // one bit of the payload, as a bad link would change it
        await CrcWire.AssertChangedValueIsAMissAsync(node, c, frame, Key("flipped"));
    }

    [Fact]
    public async Task A_mismatched_value_does_not_hide_a_newer_good_write_of_the_same_key()
    {
        await using var node = ServerNode.Start();
        using var c = await ConnectGrantedAsync(node);
        var bad = Value(7, 5000);
        var good = Value(8, 5000);
        // Two entries of one key: the last one wins, so the bad one is never read and never counted.
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], await PutAsync(c, 2, (Key("k"), bad, 12345), (Key("k"), good, Crc32C.Compute(good))));
        var (entries, payload) = await CrcWire.GetAsync(c, 3, Key("k"));
        Assert.Equal(WireStatus.Ok, entries[0].Status);
        Assert.Equal(good, payload);
        Assert.Equal(0L, CrcWire.Mismatches(node));
    }
}
