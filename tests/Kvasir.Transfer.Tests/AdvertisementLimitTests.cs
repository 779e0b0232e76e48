using Kvasir.Transfer.Internal;

namespace Kvasir.Transfer.Tests;

/// <summary>
/// A connection that advertises a window per request (as a decode node handing out a window of its KV buffer for each
/// request does) keeps only its most recent ones: the target's table stays bounded for as long as the connection lives.
/// </summary>
public sealed class AdvertisementLimitTests
{
    [Fact]
    public async Task A_connection_keeps_its_latest_window_advertisements_and_an_older_one_is_refused_with_nothing_written()
    {
        using var pair = await EnginePair.StartAsync();
        var src = Bytes.Pattern(64, 3);
        var dst = new byte[64];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var first = pair.Target.Advertise(pair.TargetConnId, d, 0, 64);
        byte[] last = first;
        for (int i = 0; i < Advertisements.MaxPerConnection; i++) last = pair.Target.Advertise(pair.TargetConnId, d, 0, 64);
        Assert.Equal(Advertisements.MaxPerConnection, pair.Target.AdvertisementCount);

        var e = await Assert.ThrowsAsync<TransferException>(() => pair.Initiator.WriteAsync(pair.ConnId, s, 0, 64, first));
        Assert.Equal(TransferError.NotAdvertised, e.Code);
        Assert.All(dst, b => Assert.Equal(0, b));
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, 64, last).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
    }

    [Fact]
    public void Only_windows_count_against_their_own_connection_and_a_kv_buffers_advertisement_stays()
    {
        var adverts = new Advertisements(maxPerConnection: 3);
        var region = new Region(1, 0x1000, 4096, default);
        var kv = adverts.Add(7, region, 0, 4096);                                   // a kv buffer's
        var windows = Enumerable.Range(0, 5).Select(_ => adverts.Add(7, region, 0, 64, window: true)).ToArray();
        var other = adverts.Add(8, region, 0, 64, window: true);
        Assert.Null(adverts.Find(7, windows[0].Id, windows[0].Token));
        Assert.Null(adverts.Find(7, windows[1].Id, windows[1].Token));
        foreach (var w in windows[2..]) Assert.NotNull(adverts.Find(7, w.Id, w.Token));
        Assert.NotNull(adverts.Find(7, kv.Id, kv.Token));
        Assert.NotNull(adverts.Find(8, other.Id, other.Token));
        Assert.Equal(5, adverts.Count);
        adverts.WithdrawConnection(7);
        Assert.Equal(1, adverts.Count);
    }
}
