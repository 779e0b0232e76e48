namespace Kvasir.Transfer.Tests;

/// <summary>KVTrans's two-sided calls on top of the one-sided ones.</summary>
public sealed class KvTests
{
    [Fact]
    public async Task SendKv_lands_in_RecvKv_both_ways_and_a_tag_can_be_reused_after_a_receive()
    {
        using var pair = await EnginePair.StartAsync(new() { SliceBytes = 4096 }, new() { SliceBytes = 4096 });
        var aBuf = new byte[100_000];
        var bBuf = new byte[100_000];
        int a = await pair.Initiator.RegisterKvAsync(pair.ConnId, aBuf);
        int b = await pair.Target.RegisterKvAsync(pair.TargetConnId, bBuf);
        var first = Bytes.Pattern(70_001, 1);
        var sending = pair.Initiator.SendKvAsync(a, first);
        Assert.Equal(first.Length, await pair.Target.RecvKvAsync(b, bBuf.Length).WaitAsync(EnginePair.Deadline));
        await sending.WaitAsync(EnginePair.Deadline);
        Assert.Equal(first, bBuf[..first.Length]);

        var second = Bytes.Pattern(9, 2);
        await pair.Initiator.SendKvAsync(a, second).WaitAsync(EnginePair.Deadline);   // the receive above re-armed tag 1
        Assert.Equal(9, pair.Target.RecvKv(b, 9));
        Assert.Equal(second, bBuf[..9]);

        var back = Bytes.Pattern(1234, 3);
        pair.Target.SendKv(b, back);
        Assert.Equal(1234, await pair.Initiator.RecvKvAsync(a, 2000).WaitAsync(EnginePair.Deadline));
        Assert.Equal(back, aBuf[..1234]);
    }

    [Fact]
    public async Task A_message_larger_than_the_peers_buffer_is_TooLarge_and_one_larger_than_max_size_too()
    {
        using var pair = await EnginePair.StartAsync();
        int a = await pair.Initiator.RegisterKvAsync(pair.ConnId, new byte[1000]);
        await pair.Target.RegisterKvAsync(pair.TargetConnId, new byte[100]);
        var e = await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.SendKvAsync(a, new byte[101]));
        Assert.Equal(TransferError.TooLarge, e.Code);
        Assert.Contains("100 bytes", e.Message);
        // the peer's KV_READY generation was used by the refused send; the target re-arms only after a receive
        int a2 = await pair.Initiator.RegisterKvAsync(pair.ConnId, new byte[1000]);
        int b2 = await pair.Target.RegisterKvAsync(pair.TargetConnId, new byte[1000]);
        await pair.Initiator.SendKvAsync(a2, new byte[500]).WaitAsync(EnginePair.Deadline);
        var tooLong = await Assert.ThrowsAsync<TransferException>(() => pair.Target.RecvKvAsync(b2, 499));
        Assert.Equal(TransferError.TooLarge, tooLong.Code);
        Assert.Equal(TransferError.TooLarge, (await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.SendKvAsync(a2, new byte[1001]))).Code);
    }

    [Fact]
    public async Task RecvKv_with_nothing_sent_times_out_and_unknown_kv_ids_are_refused()
    {
        var fast = new TransferEngineOptions { TransferTimeout = TimeSpan.FromSeconds(2) };   // short, yet long enough for the KV_READY acks on a loaded machine
        using var pair = await EnginePair.StartAsync(fast, fast);
        int a = await pair.Initiator.RegisterKvAsync(pair.ConnId, new byte[10]);
        Assert.Equal(TransferError.Timeout, (await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.RecvKvAsync(a, 10))).Code);
        Assert.Equal(TransferError.Timeout, (await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.SendKvAsync(a, new byte[1]))).Code);
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Initiator.RecvKv(999, 10)).Code);
        pair.Initiator.DeregisterKv(a);
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Initiator.SendKv(a, new byte[1])).Code);
    }
}
