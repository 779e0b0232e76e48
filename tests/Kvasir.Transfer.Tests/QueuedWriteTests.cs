namespace Kvasir.Transfer.Tests;

/// <summary>
/// Writes of several slices on several lanes go through the session's queue, from which the lanes' senders take
/// slices as their sockets take bytes (docs/transfer.md § Threads): every promise of the round-robin deal still holds.
/// </summary>
public sealed class QueuedWriteTests
{
    private static readonly TransferEngineOptions FourLanes = new() { Ncpus = 2, NconnPerCpu = 2, SliceBytes = 64 << 10 };

    [Fact]
    public async Task Deregistering_the_source_while_a_queued_write_has_slices_left_waits_for_the_write_and_it_completes()
    {
        using var pair = await EnginePair.StartAsync(FourLanes, FourLanes);
        var src = Bytes.Pattern(32 << 20, 5);   // 512 slices: most are still queued when Deregister starts
        var dst = new byte[src.Length];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var write = pair.Initiator.WriteAsync(pair.ConnId, s, 0, src.Length, pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length));
        await Task.Run(() => pair.Initiator.Deregister(s)).WaitAsync(EnginePair.Deadline);
        // The write held its region from its start: Deregister waited for every slice, taken or not, to be acknowledged.
        Assert.True(write.IsCompletedSuccessfully, $"Deregister returned while the write was {write.Status}: {write.Exception?.InnerException?.Message}");
        Assert.Equal(src, dst);
    }

    [Fact]
    public async Task Many_queued_writes_from_several_threads_each_land_byte_exact_and_in_their_own_place()
    {
        using var pair = await EnginePair.StartAsync(FourLanes, FourLanes);
        const int each = (1 << 20) + 12345, count = 12;   // 17 slices each, the last one short
        var src = Bytes.Pattern((long)each * count, 9);
        var dst = new byte[src.Length];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length);
        var windows = Enumerable.Range(0, count).Select(i => pair.Target.Advertise(pair.TargetConnId, d, (long)i * each, each)).ToArray();
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => Task.Run(() =>
            pair.Initiator.WriteAsync(pair.ConnId, s, (long)i * each, each, windows[i])))).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
        GC.KeepAlive(window);
    }

    [Fact]
    public async Task A_queued_write_whose_slices_are_refused_fails_and_its_region_is_released()
    {
        using var pair = await EnginePair.StartAsync(FourLanes, FourLanes);
        var src = Bytes.Pattern(8 << 20, 2);
        var dst = new byte[src.Length];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length);
        pair.Target.Deregister(d);   // every slice is refused NOT_ADVERTISED
        var e = await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.WriteAsync(pair.ConnId, s, 0, src.Length, window).WaitAsync(EnginePair.Deadline));
        Assert.Equal(TransferError.NotAdvertised, e.Code);
        // Nothing of the failed write holds the source any more (its untaken slices were dropped): Deregister returns at once.
        await Task.Run(() => pair.Initiator.Deregister(s)).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.All(dst, b => Assert.Equal(0, b));
    }
}
