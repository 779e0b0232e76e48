using System.Net;
using System.Net.Sockets;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>StopAsync drains: requests being served finish and their replies arrive; idle connections close; nothing new is accepted.</summary>
public sealed class ShutdownTests
{
    private static async Task AssertRefusedAsync(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var ex = await Assert.ThrowsAnyAsync<SocketException>(async () => await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token));
        Assert.Equal(SocketError.ConnectionRefused, ex.SocketErrorCode);
    }

    [Fact]
    public async Task Stopping_while_a_put_is_mid_payload_completes_it_replies_then_closes_and_refuses_new_connections()
    {
        await using var node = ServerNode.Start(frameTimeout: TimeSpan.FromSeconds(30));
        var (busy, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _b = busy;
        var (idle, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _i = idle;
        var value = Value(1, 64 * 1024);
        var frame = Put(7, (Key("in-flight"), value));
        int half = frame.Length - value.Length / 2;
        await busy.SendAsync(frame[..half]);
        await Poll.UntilAsync(() => node.Stats.Reservations == 1, "the node to start receiving the PUT's value");

        node.Stopped = true;
        var stopping = node.Node.StopAsync();
        await AssertRefusedAsync(node.Port);
        await idle.AssertClosedWithoutReplyAsync(because: "an idle connection is closed at stop");
        Assert.False(stopping.IsCompleted, "StopAsync must wait for the request in flight");

        await busy.SendAsync(frame[half..]);
        var reply = await busy.ReadFrameAsync() ?? throw new Xunit.Sdk.XunitException("the node closed the connection before answering the PUT in flight");
        RawConnection.AssertReply(reply, Opcode.Put, 7);
        Assert.Equal([WireStatus.Ok], StatusListReply.Read(reply.Meta, 1));
        await busy.AssertClosedWithoutReplyAsync(because: "the node is stopping");
        await stopping.WaitAsync(TimeSpan.FromSeconds(15));
        await AssertRefusedAsync(node.Port);
    }

    [Fact]
    public async Task Stopping_while_get_replies_are_still_being_sent_delivers_them_whole()
    {
        await using var node = ServerNode.Start();
        var (writer, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _w = writer;
        var value = Value(2, (int)ServerNode.MaxValue);
        RawConnection.AssertReply(await writer.RequestAsync(Put(1, (Key("v"), value))), Opcode.Put, 1);

        var (reader, _) = await RawConnection.ConnectHelloAsync(node.Port, receiveBuffer: 4096);
        using var _r = reader;
        const int gets = 8; // 8 MiB of replies: more than the socket buffers hold, so some are still leased at stop
        await reader.SendAsync(Concat(Enumerable.Range(0, gets).Select(i => Get((ulong)(10 + i), Key("v"))).ToArray()));
        await Poll.UntilAsync(() => node.Node.Counters.Requests(Opcode.Get) == gets && node.Stats.ActiveLeases > 0,
            () => $"all GETs to be served with replies still in flight (served {node.Node.Counters.Requests(Opcode.Get)}, leases {node.Stats.ActiveLeases})");

        node.Stopped = true;
        var stopping = node.Node.StopAsync();
        for (ulong id = 10; id < 10 + gets; id++)
        {
            var reply = await reader.ReadFrameAsync() ?? throw new Xunit.Sdk.XunitException($"closed before the reply to GET {id}");
            RawConnection.AssertReply(reply, Opcode.Get, id);
            var entry = GetReply.Read(reply.Meta, 1, reply.Header.PayloadLength)[0];
            Assert.Equal(Crc32C.Compute(value), entry.Crc32C);
            Assert.True(value.AsSpan().SequenceEqual(reply.Payload), $"GET {id} delivered different bytes");
        }
        await reader.AssertClosedWithoutReplyAsync(because: "the node is stopping");
        await stopping.WaitAsync(TimeSpan.FromSeconds(15));
        await AssertRefusedAsync(node.Port);
    }
}
