using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>Many requests in flight on one connection, at the byte level.</summary>
public sealed class PipeliningTests
{
    [Fact]
    public async Task A_hundred_requests_sent_back_to_back_are_answered_in_order_each_with_its_request_id_and_opcode()
    {
        await using var node = ServerNode.Start();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;

        // Request i: PUT of key i/3 (i % 3 == 0), GET of that key (1), EXISTS of it and a missing key (2).
        var requests = new List<(ulong Id, Opcode Op, int Slot)>();
        var values = new Dictionary<int, byte[]>();
        var wire = new List<byte>();
        for (int i = 0; i < 100; i++)
        {
            ulong id = 0xF000_0000_0000_0000UL + (ulong)(i * 7919);
            int slot = i / 3;
            var key = Key($"pipe/{slot}");
            switch (i % 3)
            {
                case 0:
                    values[slot] = Value(slot, 200 + slot * 13);
                    wire.AddRange(Put(id, (key, values[slot])));
                    requests.Add((id, Opcode.Put, slot));
                    break;
                case 1:
                    wire.AddRange(Get(id, key, Key("pipe/missing")));
                    requests.Add((id, Opcode.Get, slot));
                    break;
                default:
                    wire.AddRange(Exists(id, key, Key("pipe/missing")));
                    requests.Add((id, Opcode.Exists, slot));
                    break;
            }
        }
        await c.SendAsync(wire.ToArray()); // all of it before reading anything

        foreach (var (id, op, slot) in requests)
        {
            var reply = await c.ReadFrameAsync() ?? throw new Xunit.Sdk.XunitException($"connection closed before the reply to {op} {id}");
            RawConnection.AssertReply(reply, op, id);
            switch (op)
            {
                case Opcode.Put:
                    Assert.Equal([WireStatus.Ok], StatusListReply.Read(reply.Meta, 1));
                    break;
                case Opcode.Get:
                    var entries = GetReply.Read(reply.Meta, 2, reply.Header.PayloadLength);
                    Assert.Equal([WireStatus.Ok, WireStatus.NotFound], entries.Select(e => e.Status));
                    Assert.Equal(Crc32C.Compute(values[slot]), entries[0].Crc32C);
                    Assert.Equal(values[slot], reply.Payload);
                    break;
                default:
                    Assert.Equal([WireStatus.Ok, WireStatus.NotFound], StatusListReply.Read(reply.Meta, 2));
                    break;
            }
        }
    }

    [Fact]
    public async Task Replies_to_requests_before_a_bad_frame_arrive_before_its_error_and_later_requests_are_never_answered()
    {
        await using var node = ServerNode.Start();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        await c.SendAsync(Concat(
            Put(10, (Key("a"), Value(1, 4096))),
            Ping(11, [1]),
            RawHeader(0x7F, 12, 0, 0),
            Ping(13, [2]),
            Get(14, Key("a"))));
        RawConnection.AssertReply((await c.ReadFrameAsync())!, Opcode.Put, 10);
        RawConnection.AssertReply((await c.ReadFrameAsync())!, Opcode.Ping, 11);
        await c.AssertErrorThenClosedAsync(WireStatus.UnknownOpcode, 12, (Opcode)0x7F);
    }
}

/// <summary>Traffic counters reported in STATS.</summary>
public sealed class TrafficCounterTests
{
    [Fact]
    public async Task Bytes_in_and_bytes_out_count_whole_frames_headers_and_metadata_included()
    {
        await using var node = ServerNode.Start();
        using var c = await RawConnection.ConnectAsync(node.Port);
        var hello = Hello(1);
        var ping = Ping(2, [1, 2, 3, 4, 5]);
        var put = Put(3, (Key("k"), Value(1, 100)));
        var get = Get(4, Key("k"));
        long received = 0;
        foreach (var frame in new[] { hello, ping, put, get })
        {
            var reply = await c.RequestAsync(frame);
            Assert.Equal(WireStatus.Ok, reply.Header.Status);
            received += ProtocolLimits.HeaderSize + reply.Meta.Length + reply.Payload.Length;
        }
        long sent = hello.Length + ping.Length + put.Length + get.Length;
        Assert.Equal(sent, node.Node.Counters.BytesIn);
        await Poll.UntilAsync(() => node.Node.Counters.BytesOut == received, () => $"bytes_out to be {received} (the frames the client received), is {node.Node.Counters.BytesOut}");
    }
}

/// <summary>STATS connection_requests_in_flight_peak: how deep one connection's pipeline has been.</summary>
public sealed class InFlightPeakTests
{
    private static long Peak(TestNode node) => node.Node.StatsSnapshot().Single(s => s.Key == "connection_requests_in_flight_peak").Value;

    [Fact]
    public async Task A_client_that_waits_for_each_reply_keeps_the_peak_at_one_and_one_that_pipelines_raises_it()
    {
        await using var node = ServerNode.Start();
        // A small receive buffer: the node's writer blocks on the first 1 MiB reply below while its reader takes the
        // requests behind it, whatever the scheduling (with the default buffer a loaded machine once kept the peak at 1).
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port, receiveBuffer: 64 * 1024);
        using var _c = c;
        var value = Value(7, (int)ServerNode.MaxValue);
        Assert.Equal([WireStatus.Ok], StatusListReply.Read((await c.RequestAsync(Put(2, (Key("big"), value)))).Meta, 1));
        for (ulong id = 3; id < 23; id++)
            Assert.Equal(WireStatus.Ok, (await c.RequestAsync(Get(id, Key("big")))).Header.Status);
        Assert.Equal(1, Peak(node));

        // 32 GETs of a 1 MiB value sent before any reply is read: the first replies fill the socket, the rest wait.
        await c.SendAsync(Concat(Enumerable.Range(100, 32).Select(i => Get((ulong)i, Key("big"))).ToArray()));
        for (ulong id = 100; id < 132; id++)
        {
            var reply = await c.ReadFrameAsync() ?? throw new Xunit.Sdk.XunitException($"connection closed before the reply to GET {id}");
            RawConnection.AssertReply(reply, Opcode.Get, id);
            Assert.Equal(value, reply.Payload);
        }
        Assert.True(Peak(node) > 1, $"peak {Peak(node)} after 32 pipelined GETs");
    }
}
