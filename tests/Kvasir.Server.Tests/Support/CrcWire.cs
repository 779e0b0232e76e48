using Kvasir.Protocol;
using Kvasir.TestSupport;

namespace Kvasir.Server.Tests.Support;

/// <summary>The raw-wire steps that the writer's-CRC tests share (VALUE_CRC in the entries, CRC_TRAILER after the values).</summary>
internal static class CrcWire
{
    /// <summary>Connects and says HELLO asking for <paramref name="features"/>, which the node must grant in full.</summary>
    public static async Task<RawConnection> ConnectGrantedAsync(TestNode node, ulong features)
    {
        var c = await RawConnection.ConnectAsync(node.Port);
        var hello = await c.HelloAsync(1, features);
        Assert.Equal(features, hello.Features);
        return c;
    }

    /// <summary>Sends a PUT frame built by <see cref="Frames.PutWithCrc"/> or <see cref="Frames.PutWithTrailer"/> and reads its statuses.</summary>
    public static async Task<WireStatus[]> PutAsync(RawConnection c, ulong id, byte[] frame, int count)
    {
        var reply = await c.RequestAsync(frame);
        RawConnection.AssertReply(reply, Opcode.Put, id);
        return StatusListReply.Read(reply.Meta, count);
    }

    public static async Task<(GetReplyEntry[] Entries, byte[] Payload)> GetAsync(RawConnection c, ulong id, params byte[][] keys)
    {
        var reply = await c.RequestAsync(Frames.Get(id, keys));
        RawConnection.AssertReply(reply, Opcode.Get, id);
        return (GetReply.Read(reply.Meta, keys.Length, reply.Header.PayloadLength), reply.Payload);
    }

    /// <summary>The node's STATS crc_mismatches.</summary>
    public static long Mismatches(TestNode node) => node.Node.StatsSnapshot().Single(s => s.Key == "crc_mismatches").Value;

    /// <summary>
    /// Sends a one-entry PUT <paramref name="frame"/> whose value was changed after the writer checksummed it: the PUT is
    /// acknowledged, the key then reads as a miss with no bytes, and the node counts one mismatch.
    /// </summary>
    public static async Task AssertChangedValueIsAMissAsync(TestNode node, RawConnection c, byte[] frame, byte[] key)
    {
        var reply = await c.RequestAsync(frame);
        Assert.Equal([WireStatus.Ok], StatusListReply.Read(reply.Meta, 1));
        var (entries, payload) = await GetAsync(c, 3, key);
        Assert.Equal(WireStatus.NotFound, entries[0].Status);
        Assert.Empty(payload);
        Assert.Equal(1L, Mismatches(node));
    }
}
