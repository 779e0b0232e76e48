using System.Diagnostics;
using System.Net.Sockets;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>Frames that end early (the client closes) or stall (the frame timeout, 2 s here, fires): no reply, closed, nothing leaked.</summary>
public sealed class TruncatedFrameTests
{
    private const int BigValue = 64 * 1024;

    private static async Task AssertNothingHeldAndServingAsync(TestNode node, Witness witness, long protocolErrorsBefore)
    {
        await node.WaitForNoLeaksAsync();
        await Poll.UntilAsync(() => node.Node.Counters.Connections == 1, () => $"only the witness connection to be left open (now {node.Node.Counters.Connections})");
        Assert.Equal(protocolErrorsBefore, node.Node.Counters.ProtocolErrors); // no error reply for a truncated frame
        await witness.RoundTripAsync();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_header_cut_off_after_10_bytes_gets_no_reply_and_the_node_keeps_serving(bool afterHello)
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        long errors = node.Node.Counters.ProtocolErrors;
        using (var c = await RawConnection.ConnectAsync(node.Port))
        {
            if (afterHello) await c.HelloAsync();
            await c.SendAsync(Ping(3)[..10]);
            c.Socket.Shutdown(SocketShutdown.Send);
            await c.AssertClosedWithoutReplyAsync(because: "the stream ended inside a header");
        }
        await AssertNothingHeldAndServingAsync(node, witness, errors);
    }

    [Fact]
    public async Task Metadata_cut_off_after_20_of_100_bytes_gets_no_reply_and_the_node_keeps_serving()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        long errors = node.Node.Counters.ProtocolErrors;
        using (var c = await RawConnection.ConnectAsync(node.Port))
        {
            await c.HelloAsync();
            var keys = Enumerable.Range(0, 20).Select(i => Key($"k{i:d2}")).ToArray(); // 4 + 20 × 5 = 104 bytes
            var frame = Get(2, keys);
            await c.SendAsync(frame[..(32 + 20)]);
            c.Socket.Shutdown(SocketShutdown.Send);
            await c.AssertClosedWithoutReplyAsync(because: "the stream ended inside the metadata");
        }
        await AssertNothingHeldAndServingAsync(node, witness, errors);
    }

    [Fact]
    public async Task A_put_payload_cut_off_half_way_is_not_stored_and_its_reservation_is_released()
    {
        await using var node = ServerNode.Start();
        using var witness = await node.WitnessAsync();
        long errors = node.Node.Counters.ProtocolErrors;
        var key = Key("half-sent");
        using (var c = await RawConnection.ConnectAsync(node.Port))
        {
            await c.HelloAsync();
            await c.SendAsync(PutHead(2, (key, BigValue)));
            await c.SendAsync(Value(1, BigValue / 2));
            await Poll.UntilAsync(() => node.Stats.Reservations == 1, "the node to reserve arena space for the value being received");
            c.Socket.Shutdown(SocketShutdown.Send);
            await c.AssertClosedWithoutReplyAsync(because: "the stream ended inside the payload");
        }
        await AssertNothingHeldAndServingAsync(node, witness, errors);
        Assert.Equal(WireStatus.NotFound, (await witness.GetAsync(key)).Entry.Status);
    }

    [Fact]
    public async Task A_put_whose_client_stalls_mid_payload_is_cut_off_after_the_frame_timeout_without_leaking_its_reservation()
    {
        await using var node = ServerNode.Start(frameTimeout: TimeSpan.FromSeconds(2));
        using var witness = await node.WitnessAsync();
        long errors = node.Node.Counters.ProtocolErrors;
        var key = Key("stalled");
        using var c = await RawConnection.ConnectAsync(node.Port);
        await c.HelloAsync();
        var clock = Stopwatch.StartNew();
        await c.SendAsync(PutHead(2, (Key("first"), 100), (key, BigValue)));
        await c.SendAsync(Value(2, 100 + BigValue / 2));
        await Poll.UntilAsync(() => node.Stats.Reservations == 1, "the node to reserve arena space for the value being received");

        await witness.RoundTripAsync(); // the node serves others while this frame hangs
        await c.AssertClosedWithoutReplyAsync(TimeSpan.FromSeconds(20), "the frame timeout of 2 s passed");
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.9), $"cut off after {clock.Elapsed.TotalSeconds:F2} s, before the 2 s frame timeout");
        await AssertNothingHeldAndServingAsync(node, witness, errors);
        Assert.Equal(WireStatus.NotFound, (await witness.GetAsync(key)).Entry.Status);
        // The value that had fully arrived before the stall may be stored (the spec allows it); nothing else is.
    }

    [Fact]
    public async Task A_client_that_stalls_inside_the_metadata_is_cut_off_after_the_frame_timeout()
    {
        await using var node = ServerNode.Start(frameTimeout: TimeSpan.FromSeconds(2));
        using var witness = await node.WitnessAsync();
        long errors = node.Node.Counters.ProtocolErrors;
        using var c = await RawConnection.ConnectAsync(node.Port);
        await c.HelloAsync();
        var clock = Stopwatch.StartNew();
        await c.SendAsync(RawHeader((byte)Opcode.Get, 2, 100, 0));
        await c.SendAsync(new byte[20]);
        await c.AssertClosedWithoutReplyAsync(TimeSpan.FromSeconds(20), "the frame timeout of 2 s passed");
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.9), $"cut off after {clock.Elapsed.TotalSeconds:F2} s, before the 2 s frame timeout");
        await AssertNothingHeldAndServingAsync(node, witness, errors);
    }
}
