using System.Net.Sockets;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>Clients that send requests but never read the replies must not pin arena space or a node task forever.</summary>
public sealed class SlowReaderTests
{
    private const int TinyReceiveBuffer = 4096;

    [Theory]
    [InlineData(1, 20)]
    [InlineData(64, 100)]
    public async Task A_client_that_never_reads_its_get_replies_is_cut_off_after_the_lease_timeout_and_its_leases_are_released(int maxQueuedReplies, int gets)
    {
        await using var node = ServerNode.Start(leaseTimeout: TimeSpan.FromSeconds(1), maxQueuedReplies: maxQueuedReplies, frameTimeout: TimeSpan.FromSeconds(60));
        using var witness = await node.WitnessAsync();
        var key = Key("large");
        var put = await witness.Connection.RequestAsync(Put(1, (key, Value(1, (int)ServerNode.MaxValue))));
        RawConnection.AssertReply(put, Opcode.Put, 1);

        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port, receiveBuffer: TinyReceiveBuffer);
        using var _c = c;
        await c.SendAsync(Concat(Enumerable.Range(0, gets).Select(i => Get((ulong)(10 + i), key)).ToArray()));
        await Poll.UntilAsync(() => node.Stats.ActiveLeases > 0, "the node to serve the GETs (leases taken)");

        // Never read. The reaper notices the expired leases (1 s timeout, reaper every 1 s) and the node cuts the connection.
        await Poll.UntilAsync(() => node.Node.Counters.Connections == 1,
            () => $"the node to cut the non-reading connection (open connections: {node.Node.Counters.Connections}, leases: {node.Stats.ActiveLeases})", timeout: TimeSpan.FromSeconds(30));
        await node.WaitForNoLeaksAsync(timeout: TimeSpan.FromSeconds(30));
        await c.DrainUntilClosedAsync(TimeSpan.FromSeconds(20), "the node cut the connection");
        await witness.RoundTripAsync();
        Assert.Equal(WireStatus.Ok, (await witness.GetAsync(key)).Entry.Status);
    }

    [Fact]
    public async Task A_client_that_never_reads_small_replies_is_disconnected_once_its_reply_queue_stays_full_for_the_frame_timeout()
    {
        // docs/protocol.md, "Other conditions": the frame timer also covers the node queuing its reply.
        await using var node = ServerNode.Start(frameTimeout: TimeSpan.FromSeconds(2), maxQueuedReplies: 4);
        using var witness = await node.WitnessAsync();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port, receiveBuffer: TinyReceiveBuffer);
        using var _c = c;

        using var stopSending = new CancellationTokenSource();
        var echo = Filled(1024, 0x61);
        long sent = 0;
        var sending = Task.Run(async () =>
        {
            ulong id = 10;
            try
            {
                while (!stopSending.IsCancellationRequested && Interlocked.Read(ref sent) < (256L << 20))
                {
                    var batch = Concat(Enumerable.Range(0, 64).Select(_ => Ping(id++, echo)).ToArray());
                    await c.Socket.SendAsync(batch, SocketFlags.None, stopSending.Token);
                    Interlocked.Add(ref sent, batch.Length);
                }
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException) { }
        });

        try
        {
            await Poll.UntilAsync(() => node.Node.Counters.Connections == 1,
                () => $"the node to disconnect the client whose reply queue stays full (open connections: {node.Node.Counters.Connections}; sent {Interlocked.Read(ref sent)} bytes, node read {node.Node.Counters.BytesIn}, wrote {node.Node.Counters.BytesOut}, pings {node.Node.Counters.Requests(Opcode.Ping)})", timeout: TimeSpan.FromSeconds(30));
        }
        finally
        {
            stopSending.Cancel();
            c.Socket.Dispose(); // unblocks a send stuck on a full window
            await sending;
        }
        await witness.RoundTripAsync();
    }
}
