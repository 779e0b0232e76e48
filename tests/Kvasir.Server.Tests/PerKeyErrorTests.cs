using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>Rows of the bad-input table answered per key: the reply header is OK and the connection stays usable.</summary>
public sealed class PerKeyErrorTests
{
    private static readonly byte[] Key513 = Filled(513, (byte)'x');
    private static readonly byte[] Key512 = Filled(512, (byte)'y');

    private static async Task<WireStatus[]> PutAsync(RawConnection c, ulong id, params (byte[] Key, byte[] Value)[] entries)
    {
        var reply = await c.RequestAsync(Put(id, entries));
        RawConnection.AssertReply(reply, Opcode.Put, id);
        return StatusListReply.Read(reply.Meta, entries.Length);
    }

    private static async Task<(GetReplyEntry[] Entries, byte[] Payload)> GetAsync(RawConnection c, ulong id, params byte[][] keys)
    {
        var reply = await c.RequestAsync(Get(id, keys));
        RawConnection.AssertReply(reply, Opcode.Get, id);
        return (GetReply.Read(reply.Meta, keys.Length, reply.Header.PayloadLength), reply.Payload);
    }

    [Fact]
    public async Task Key_over_512_bytes_in_a_put_is_refused_per_key_and_the_connection_stays_usable()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        var before = Value(1, 4096);
        var after = Value(2, 4096);

        // The refused value sits between two good ones: its 4 KiB must be drained exactly.
        var statuses = await PutAsync(c, 10, (Key("before"), before), (Key513, Value(3, 4096)), (Key512, after));
        Assert.Equal([WireStatus.Ok, WireStatus.InvalidKey, WireStatus.Ok], statuses);

        // A PUT of only the bad key, then the next request on the same connection.
        Assert.Equal([WireStatus.InvalidKey], await PutAsync(c, 11, (Key513, Value(4, 70_000))));
        var (entries, payload) = await GetAsync(c, 12, Key("before"), Key512);
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], entries.Select(e => e.Status));
        Assert.Equal([.. before, .. after], payload);
        Assert.Equal(Crc32C.Compute(after), entries[1].Crc32C);
        Assert.Equal(2L + 1, node.Stats.Keys); // two here, one from the witness
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task Key_over_512_bytes_in_a_get_is_invalid_key_per_key_and_the_connection_stays_usable()
    {
        await using var node = ServerNode.Start();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        var value = Value(5, 4096);
        Assert.Equal([WireStatus.Ok], await PutAsync(c, 1, (Key("present"), value)));

        var (entries, payload) = await GetAsync(c, 2, Key513, Key("present"), Key("absent"), Key513);
        Assert.Equal([WireStatus.InvalidKey, WireStatus.Ok, WireStatus.NotFound, WireStatus.InvalidKey], entries.Select(e => e.Status));
        Assert.Equal([0L, 4096L, 0L, 0L], entries.Select(e => e.Length));
        Assert.Equal(value, payload);
        Assert.Equal([WireStatus.Ok], await PutAsync(c, 3, (Key("next"), value)));
    }

    public static TheoryData<byte> KeyOpcodes => new() { (byte)Opcode.Exists, (byte)Opcode.Remove, (byte)Opcode.Pin, (byte)Opcode.Unpin };

    [Theory]
    [MemberData(nameof(KeyOpcodes))]
    public async Task Empty_and_over_long_keys_in_a_key_operation_are_invalid_key_per_key_and_the_connection_stays_usable(byte opcode)
    {
        var op = (Opcode)opcode;
        await using var node = ServerNode.Start();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        Assert.Equal([WireStatus.Ok], await PutAsync(c, 1, (Key("present"), Value(6, 100))));

        var reply = await c.RequestAsync(KeyOp(op, 2, [], Key("present"), Key513, Key("absent")));
        RawConnection.AssertReply(reply, op, 2);
        var expectedPresent = WireStatus.Ok;
        Assert.Equal([WireStatus.InvalidKey, expectedPresent, WireStatus.InvalidKey, WireStatus.NotFound], StatusListReply.Read(reply.Meta, 4));
        var ping = await c.RequestAsync(Ping(3, [1, 2, 3]));
        RawConnection.AssertReply(ping, Opcode.Ping, 3);
        Assert.Equal([1, 2, 3], ping.Meta);
    }

    [Fact]
    public async Task An_empty_key_is_invalid_key_in_put_and_get_and_the_connection_stays_usable()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        var good = Value(7, 300);
        Assert.Equal([WireStatus.InvalidKey, WireStatus.Ok], await PutAsync(c, 1, ([], Value(8, 5000)), (Key("good"), good)));
        var (entries, payload) = await GetAsync(c, 2, [], Key("good"));
        Assert.Equal([WireStatus.InvalidKey, WireStatus.Ok], entries.Select(e => e.Status));
        Assert.Equal(good, payload);
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task A_value_one_byte_over_the_node_max_is_value_too_large_per_key_drained_and_the_connection_stays_usable()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        var (c, hello) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        Assert.Equal((ulong)ServerNode.MaxValue, hello.MaxValueBytes);
        var a = Value(9, 1000);
        var z = Value(10, 1000);

        var statuses = await PutAsync(c, 1, (Key("a"), a), (Key("big"), Value(11, (int)ServerNode.MaxValue + 1)), (Key("z"), z));
        Assert.Equal([WireStatus.Ok, WireStatus.ValueTooLarge, WireStatus.Ok], statuses);

        var (entries, payload) = await GetAsync(c, 2, Key("a"), Key("big"), Key("z"));
        Assert.Equal([WireStatus.Ok, WireStatus.NotFound, WireStatus.Ok], entries.Select(e => e.Status));
        Assert.Equal([.. a, .. z], payload);
        Assert.Equal(0L, node.Stats.Reservations);
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task A_value_of_exactly_the_node_max_is_stored_and_read_back_whole()
    {
        await using var node = ServerNode.Start();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        var max = Value(12, (int)ServerNode.MaxValue);
        Assert.Equal([WireStatus.Ok], await PutAsync(c, 1, (Key("max"), max)));
        var (entries, payload) = await GetAsync(c, 2, Key("max"));
        Assert.Equal(WireStatus.Ok, entries[0].Status);
        Assert.Equal(ServerNode.MaxValue, entries[0].Length);
        Assert.Equal(Crc32C.Compute(max), entries[0].Crc32C);
        Assert.True(max.AsSpan().SequenceEqual(payload));
    }
}
