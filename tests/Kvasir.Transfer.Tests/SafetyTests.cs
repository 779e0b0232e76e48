using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Tests;

/// <summary>Nothing is written outside an advertised window, with a wrong token, or after its region is gone; bad input fails before anything is sent.</summary>
public sealed class SafetyTests
{
    [Fact]
    public async Task A_forged_token_is_refused_by_the_target_with_nothing_written()
    {
        using var pair = await EnginePair.StartAsync();
        var src = Bytes.Pattern(1000, 1);
        var dst = new byte[1000];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, 1000);
        var forged = (byte[])window.Clone();
        forged[40] ^= 0x55;   // inside the token
        var e = await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.WriteAsync(pair.ConnId, s, 0, 1000, forged));
        Assert.Equal(TransferError.NotAdvertised, e.Code);
        Assert.Equal(TransferStatus.NotAdvertised, e.WireStatus);
        Assert.All(dst, b => Assert.Equal(0, b));
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, 1000, window).WaitAsync(EnginePair.Deadline);   // the lane stayed usable
        Assert.Equal(src, dst);
    }

    [Fact]
    public async Task An_advertisement_made_for_another_connection_is_refused_with_nothing_written()
    {
        using var pair = await EnginePair.StartAsync();
        using var other = TransferEngine.Start();
        var accepting = pair.Target.AcceptAsync();
        int otherConn = await other.ConnectAsync("127.0.0.1", pair.Target.Port);
        await accepting.WaitAsync(EnginePair.Deadline);
        var dst = new byte[100];
        int d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, 100);
        int s = other.Register(Bytes.Pattern(100, 1));
        var e = await Assert.ThrowsAsync<TransferException>(() => other.WriteAsync(otherConn, s, 0, 100, window));
        Assert.Equal(TransferError.NotAdvertised, e.Code);
        Assert.All(dst, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Deregister_withdraws_the_regions_advertisements_and_later_writes_are_refused()
    {
        using var pair = await EnginePair.StartAsync();
        int s = pair.Initiator.Register(Bytes.Pattern(100, 1));
        var dst = new byte[100];
        int d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, 100);
        pair.Target.Deregister(d);
        var e = await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.WriteAsync(pair.ConnId, s, 0, 100, window));
        Assert.Equal(TransferError.NotAdvertised, e.Code);
        Assert.All(dst, b => Assert.Equal(0, b));
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Target.Deregister(d)).Code);
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Target.Advertise(pair.TargetConnId, d, 0, 1)).Code);
    }

    [Fact]
    public async Task Bad_local_arguments_fail_before_anything_is_sent_with_the_reason()
    {
        using var pair = await EnginePair.StartAsync();
        var dst = new byte[100];
        int s = pair.Initiator.Register(new byte[200]), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, 100);
        var tooBig = Assert.Throws<TransferException>(() => pair.Initiator.Write(pair.ConnId, s, 0, 101, window));
        Assert.Equal(TransferError.OutOfBounds, tooBig.Code);
        Assert.Contains("window of 100 bytes", tooBig.Message);
        var outside = Assert.Throws<TransferException>(() => pair.Initiator.Write(pair.ConnId, s, 150, 100, window));
        Assert.Equal(TransferError.InvalidArgument, outside.Code);
        Assert.Contains("outside region", outside.Message);
        Assert.Equal(TransferError.InvalidArgument, Assert.Throws<TransferException>(() => pair.Initiator.Write(pair.ConnId, s, 0, 0, window)).Code);
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Initiator.Write(99, s, 0, 1, window)).Code);
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Initiator.Write(pair.ConnId, 99, 0, 1, window)).Code);
        Assert.Equal(TransferError.BadBlob, Assert.Throws<TransferException>(() => pair.Initiator.Write(pair.ConnId, s, 0, 1, window.AsSpan(0, 63))).Code);
        var foreign = (byte[])window.Clone();
        foreign[8] ^= 1;   // engine id of another engine
        Assert.Contains("another engine", Assert.Throws<TransferException>(() => pair.Initiator.Read(pair.ConnId, s, 0, 1, foreign)).Message);
        Assert.Equal(TransferError.InvalidArgument, Assert.Throws<TransferException>(() => pair.Target.Advertise(pair.TargetConnId, d, 50, 51)).Code);
        Assert.Equal(TransferError.InvalidArgument, Assert.Throws<TransferException>(() => pair.Initiator.Register(Memory<byte>.Empty)).Code);
        Assert.All(dst, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Options_out_of_range_and_a_malformed_key_are_refused_at_start()
    {
        Assert.Contains("Ncpus", Assert.Throws<TransferException>(() => TransferEngine.Start(new() { Ncpus = 0 })).Message);
        Assert.Contains("lanes", Assert.Throws<TransferException>(() => TransferEngine.Start(new() { Ncpus = 64, NconnPerCpu = 5 })).Message);
        Assert.Contains("SliceBytes", Assert.Throws<TransferException>(() => TransferEngine.Start(new() { SliceBytes = (64 << 20) + 1 })).Message);
        Assert.Contains("64 hex characters", Assert.Throws<TransferException>(() => TransferEngine.Start(new() { AuthKey = "abc" })).Message);
        Assert.Contains("neither an IP address nor a network interface", Assert.Throws<TransferException>(() => TransferEngine.Start(new() { Host = "no-such-nic0" })).Message);
    }

    [Fact]
    public async Task A_transfer_on_a_disposed_engine_fails_with_Disposed()
    {
        var pair = await EnginePair.StartAsync();
        pair.Dispose();
        Assert.Equal(TransferError.Disposed, Assert.Throws<TransferException>(() => pair.Initiator.Connect("127.0.0.1", pair.Target.Port)).Code);
    }
}
