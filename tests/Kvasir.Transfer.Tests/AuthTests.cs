using Kvasir.Protocol;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Tests;

/// <summary>The lanes' mutual HMAC handshake with the transfer labels.</summary>
public sealed class AuthTests
{
    private static readonly string KeyA = new('a', 64);
    private static readonly string KeyB = new('b', 64);

    [Fact]
    public async Task Engines_with_the_same_key_connect_and_transfer()
    {
        using var pair = await EnginePair.StartAsync(new() { AuthKey = KeyA, NconnPerCpu = 3 }, new() { AuthKey = KeyA });
        var dst = new byte[10];
        int d = pair.Target.Register(dst), s = pair.Initiator.Register(Bytes.Pattern(10, 1));
        pair.Initiator.Write(pair.ConnId, s, 0, 10, pair.Target.Advertise(pair.TargetConnId, d, 0, 10));
        Assert.Equal(Bytes.Pattern(10, 1), dst);
    }

    [Theory]
    [InlineData("a", "b", "AUTH_FAILED")]
    [InlineData("a", null, "asks for none")]
    [InlineData(null, "b", "requires an auth key")]
    public async Task A_key_mismatch_is_refused_and_the_target_keeps_no_connection(string? initiatorKey, string? targetKey, string reason)
    {
        using var a = TransferEngine.Start(new() { AuthKey = Key(initiatorKey) });
        using var b = TransferEngine.Start(new() { AuthKey = Key(targetKey) });
        var e = await Assert.ThrowsAsync<TransferException>(() => a.ConnectAsync("127.0.0.1", b.Port));
        Assert.Equal(TransferError.AuthFailed, e.Code);
        Assert.Contains(reason, e.Message);
        Assert.Empty(a.Connections);
        if (targetKey is not null)
            Assert.Equal(TransferError.Timeout, Assert.Throws<TransferException>(() => b.Accept(TimeSpan.FromSeconds(2))).Code);
        // a target without a key cannot tell; it sees the lanes closed by the initiator that refused it
        await Poll.UntilAsync(() => b.Connections.Count == 0, "the target to hold no connection from the refused initiator");
    }

    [Fact]
    public void A_cache_nodes_proof_with_the_right_key_is_refused_with_AUTH_FAILED_and_the_lane_closed()
    {
        using var engine = TransferEngine.Start(new() { AuthKey = KeyA });
        using var lane = RawLane.Connect(engine.Port);
        var reply = lane.Join(RawLane.NewId(), key: AuthHandshake.ParseKey(KeyA), labels: AuthLabels.Node);
        Assert.True(reply.AuthRequired);
        var (h, meta, _) = lane.Receive();
        Assert.Equal((TransferOpcode.Auth, true, TransferStatus.AuthFailed, 0), (h.Opcode, h.IsReply, h.Status, meta.Length));
        Assert.True(lane.IsClosedByPeer(), "the lane stays open after AUTH_FAILED");
    }

    [Fact]
    public async Task A_lane_whose_AUTH_failed_gives_its_place_in_the_session_back()
    {
        using var engine = TransferEngine.Start(new() { AuthKey = KeyA });
        var (session, engineId, key) = (RawLane.NewId(), RawLane.NewId(), AuthHandshake.ParseKey(KeyA));
        using (var wrong = RawLane.Connect(engine.Port))
        {
            wrong.Join(session, key: AuthHandshake.ParseKey(KeyB), engineId: engineId);
            Assert.Equal(TransferStatus.AuthFailed, wrong.Receive().Header.Status);
            Assert.True(wrong.IsClosedByPeer(), "the lane stays open after AUTH_FAILED");
        }
        using var right = RawLane.Connect(engine.Port);
        right.Join(session, key: key, engineId: engineId);   // asserts HELLO OK: the place is free again
        var (h, _, _) = right.Receive();
        Assert.Equal((TransferOpcode.Auth, TransferStatus.Ok), (h.Opcode, h.Status));
        await engine.AcceptAsync().WaitAsync(EnginePair.Deadline);   // the session was accepted
    }

    [Fact]
    public void A_request_before_AUTH_is_AUTH_REQUIRED()
    {
        using var engine = TransferEngine.Start(new() { AuthKey = KeyA });
        using var lane = RawLane.Connect(engine.Port);
        lane.Join(RawLane.NewId());
        lane.Send(TransferFrameHeader.Request(TransferOpcode.Notify, 5, 2), "hi"u8);
        var (h, _, _) = lane.Receive();
        Assert.Equal((TransferOpcode.Notify, 5UL, TransferStatus.AuthRequired), (h.Opcode, h.RequestId, h.Status));
        Assert.True(lane.IsClosedByPeer());
    }

    private static string? Key(string? which) => which switch { "a" => KeyA, "b" => KeyB, _ => null };
}
