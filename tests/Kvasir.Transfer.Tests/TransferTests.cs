using System.Text;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Tests;

/// <summary>One-sided writes and reads between two real engines over loopback.</summary>
public sealed class TransferTests
{
    private const int Slice = 64 * 1024;

    private static TransferEngineOptions Small => new() { SliceBytes = Slice };

    [Theory]
    [InlineData(1)]
    [InlineData(Slice - 1)]
    [InlineData(Slice)]
    [InlineData(Slice + 1)]
    [InlineData(5 * Slice + 17)]
    public async Task A_write_of_a_boundary_size_lands_byte_exact_and_nothing_past_it(int size)
    {
        using var pair = await EnginePair.StartAsync(Small, Small);
        var src = Bytes.Pattern(size + 10, 3);
        var dst = new byte[size + 100];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 50, size);
        await pair.Initiator.WriteAsync(pair.ConnId, s, 10, size, window).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src.AsSpan(10, size), dst.AsSpan(50, size));
        Assert.All(dst[..50], b => Assert.Equal(0, b));
        Assert.All(dst[(50 + size)..], b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(Slice - 1)]
    [InlineData(Slice)]
    [InlineData(Slice + 1)]
    public async Task A_read_of_a_boundary_size_fills_the_local_range_byte_exact(int size)
    {
        using var pair = await EnginePair.StartAsync(Small, Small);
        var remote = Bytes.Pattern(size + 7, 9);
        var local = new byte[size + 20];
        int r = pair.Target.Register(remote), l = pair.Initiator.Register(local);
        var window = pair.Target.Advertise(pair.TargetConnId, r, 7, size);
        pair.Initiator.Read(pair.ConnId, l, 10, size, window);
        Assert.Equal(remote.AsSpan(7, size), local.AsSpan(10, size));
        Assert.All(local[..10], b => Assert.Equal(0, b));
        Assert.All(local[(10 + size)..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task An_advertisement_with_the_staging_extension_of_a_python_gpu_window_is_written_and_read_over_the_lanes()
    {
        using var pair = await EnginePair.StartAsync(Small, Small);
        var src = Bytes.Pattern(Slice + 1, 5);
        var dst = new byte[Slice + 1];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        // what a Python engine adds for a GPU window offered to a same-host peer (docs/transfer.md § GPU memory on the same host)
        var plain = AdvertisementBlob.Parse(pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length));
        var window = (plain with { Staging = new StagingExtension("/dev/shm/kvasir-xfer-stage-test", 4096, 4) }).ToBytes();
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, src.Length, window).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
        var back = new byte[Slice + 1];
        pair.Initiator.Read(pair.ConnId, pair.Initiator.Register(back), 0, back.Length, window);
        Assert.Equal(src, back);
        Assert.Equal(0, pair.Initiator.SharedMemoryTransfers);
    }

    [Fact]
    public async Task A_256_MiB_write_and_read_back_are_byte_exact()
    {
        const int size = 256 << 20;
        using var pair = await EnginePair.StartAsync(new() { Ncpus = 2, NconnPerCpu = 2 }, new() { Ncpus = 2 });
        var src = Bytes.Pattern(size, 1);
        var dst = new byte[size];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, size);
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, size, window).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(src.AsSpan().SequenceEqual(dst), "the 256 MiB written differ from the source");
        Array.Clear(src);
        await pair.Initiator.ReadAsync(pair.ConnId, s, 0, size, window).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(src.AsSpan().SequenceEqual(dst), "the 256 MiB read back differ");
    }

    [Fact]
    public async Task Eight_concurrent_writes_over_shared_lanes_each_land_in_their_own_window()
    {
        using var pair = await EnginePair.StartAsync(new() { SliceBytes = Slice, Ncpus = 1, NconnPerCpu = 3 }, Small);
        const int each = 300_000;
        var src = Bytes.Pattern(8 * each, 5);
        var dst = new byte[8 * each];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var writes = Enumerable.Range(0, 8).Select(i =>
        {
            var window = pair.Target.Advertise(pair.TargetConnId, d, (long)(7 - i) * each, each);
            return pair.Initiator.WriteAsync(pair.ConnId, s, (long)i * each, each, window);
        }).ToArray();
        await Task.WhenAll(writes).WaitAsync(EnginePair.Deadline);
        for (int i = 0; i < 8; i++) Assert.Equal(src.AsSpan(i * each, each), dst.AsSpan((7 - i) * each, each));
    }

    [Fact]
    public async Task WriteVector_and_ReadVector_complete_every_item()
    {
        using var pair = await EnginePair.StartAsync(Small, Small);
        var src = Bytes.Pattern(400_000, 2);
        var dst = new byte[400_000];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var items = Enumerable.Range(0, 4).Select(i => new TransferItem(s, i * 100_000L, 100_000, pair.Target.Advertise(pair.TargetConnId, d, i * 100_000L, 100_000))).ToList();
        pair.Initiator.WriteVector(pair.ConnId, items);
        Assert.Equal(src, dst);
        Array.Clear(src);
        await pair.Initiator.ReadVectorAsync(pair.ConnId, items).WaitAsync(EnginePair.Deadline);
        Assert.Equal(dst, src);
    }

    [Fact]
    public async Task StartWrite_and_StartRead_report_through_Poll_and_WaitAsync()
    {
        using var pair = await EnginePair.StartAsync(Small, Small);
        var src = Bytes.Pattern(1 << 20, 4);
        var dst = new byte[1 << 20];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length);
        ulong id = pair.Initiator.StartWrite(pair.ConnId, s, 0, src.Length, window);
        await Poll.UntilAsync(() => pair.Initiator.Poll(id), $"Poll({id}) to report the write done");
        Assert.Equal(src, dst);
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Initiator.Poll(id)).Code);
        Array.Clear(src);
        ulong read = pair.Initiator.StartRead(pair.ConnId, s, 0, src.Length, window);
        await pair.Initiator.WaitAsync(read).WaitAsync(EnginePair.Deadline);
        Assert.Equal(dst, src);
    }

    [Fact]
    public async Task A_write_notification_reaches_the_target_once_the_write_landed()
    {
        using var pair = await EnginePair.StartAsync(Small, Small);
        var src = Bytes.Pattern(Slice * 4 + 3, 6);
        var dst = new byte[src.Length];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length);
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, src.Length, window, "req-42 done"u8.ToArray()).WaitAsync(EnginePair.Deadline);
        var notes = await NotificationsAsync(pair.Target, 1);
        Assert.Equal(pair.TargetConnId, notes[0].ConnId);
        Assert.Equal("req-42 done", Encoding.UTF8.GetString(notes[0].Bytes));
        Assert.Equal(src, dst);
    }

    [Fact]
    public async Task Notifications_go_both_ways_in_order_and_GetNotifications_clears_them()
    {
        using var pair = await EnginePair.StartAsync();
        pair.Initiator.SendNotification(pair.ConnId, "one"u8);
        await pair.Initiator.SendNotificationAsync(pair.ConnId, "two"u8.ToArray());
        pair.Target.SendNotification(pair.TargetConnId, new byte[64 * 1024]);
        var atTarget = await NotificationsAsync(pair.Target, 2);
        Assert.Equal(["one", "two"], atTarget.Select(n => Encoding.UTF8.GetString(n.Bytes)));
        Assert.Empty(pair.Target.GetNotifications());
        var atInitiator = await NotificationsAsync(pair.Initiator, 1);
        Assert.Equal((pair.ConnId, 64 * 1024), (atInitiator[0].ConnId, atInitiator[0].Bytes.Length));
        var e = Assert.Throws<TransferException>(() => pair.Initiator.SendNotification(pair.ConnId, new byte[64 * 1024 + 1]));
        Assert.Equal(TransferError.TooLarge, e.Code);
    }

    [Fact]
    public async Task The_accepting_side_can_write_into_the_connecting_side()
    {
        using var pair = await EnginePair.StartAsync(Small, Small);
        var src = Bytes.Pattern(200_000, 8);
        var dst = new byte[200_000];
        int s = pair.Target.Register(src), d = pair.Initiator.Register(dst);
        var window = pair.Initiator.Advertise(pair.ConnId, d, 0, dst.Length);
        await pair.Target.WriteAsync(pair.TargetConnId, s, 0, src.Length, window).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
    }

    [Fact]
    public async Task AddRemoteEndpoint_connects_to_the_engine_GetMetadata_describes()
    {
        using var a = TransferEngine.Start();
        using var b = TransferEngine.Start(new() { Ncpus = 2, NconnPerCpu = 1 });
        var meta = b.GetMetadata();
        Assert.Equal(40, meta.Length);
        var accepting = b.AcceptAsync();
        int conn = await a.AddRemoteEndpointAsync(meta).WaitAsync(EnginePair.Deadline);
        var accepted = await accepting.WaitAsync(EnginePair.Deadline);
        Assert.Equal(System.Net.IPAddress.Loopback, accepted.Address);
        Assert.Contains(conn, a.Connections);
        Assert.Contains(accepted.ConnId, b.Connections);
        Assert.Equal(TransferError.BadBlob, (await Assert.ThrowsAsync<TransferException>(() => a.AddRemoteEndpointAsync(meta[..39]))).Code);
        var forged = (byte[])meta.Clone();
        forged[30] ^= 1;   // another engine id at the same address
        var e = await Assert.ThrowsAsync<TransferException>(() => a.AddRemoteEndpointAsync(forged));
        Assert.Contains("not the one the endpoint blob names", e.Message);
    }

    [Fact]
    public async Task CloseConnection_fails_later_calls_on_it_on_both_sides()
    {
        using var pair = await EnginePair.StartAsync();
        pair.Initiator.CloseConnection(pair.ConnId);
        Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => pair.Initiator.SendNotification(pair.ConnId, "x"u8)).Code);
        await Poll.UntilAsync(() => !pair.Target.Connections.Contains(pair.TargetConnId), "the target to drop the closed connection");
    }

    [Fact]
    public void Accept_with_no_peer_times_out_with_a_clear_error()
    {
        using var engine = TransferEngine.Start();
        var e = Assert.Throws<TransferException>(() => engine.Accept(TimeSpan.FromMilliseconds(100)));
        Assert.Equal(TransferError.Timeout, e.Code);
    }

    [Fact]
    public void Connect_to_a_port_nobody_listens_on_is_ConnectFailed()
    {
        using var engine = TransferEngine.Start();
        int port;
        using (var probe = TransferEngine.Start()) port = probe.Port;
        var e = Assert.Throws<TransferException>(() => engine.Connect("127.0.0.1", port));
        Assert.Equal(TransferError.ConnectFailed, e.Code);
        Assert.Contains($"127.0.0.1:{port}", e.Message);
    }

    internal static async Task<List<TransferNotification>> NotificationsAsync(TransferEngine engine, int count)
    {
        var got = new List<TransferNotification>();
        await Poll.UntilAsync(() => { got.AddRange(engine.GetNotifications()); return got.Count >= count; },
            () => $"{count} notifications (got {got.Count})");
        return got;
    }
}
