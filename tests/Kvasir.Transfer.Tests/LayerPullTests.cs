namespace Kvasir.Transfer.Tests;

/// <summary>
/// Per-layer pull (docs/transfer.md § Per-layer pull): the decoder (initiator) reads each layer group of the prefill's
/// (target's) advertised KV buffer when the prefill announces it, over real TCP lanes.
/// </summary>
public sealed class LayerPullTests
{
    private static readonly int[] Sizes = [1, 65535, 65537, 200_000];   // around the 64 KiB slice below

    private static long Start(int g) => Sizes.Take(g).Sum();

    private static (byte[] Local, LayerGroup[] Groups) DecoderGroups(TransferEngine decode, byte[] blob)
    {
        var local = new byte[Sizes.Sum()];
        int region = decode.Register(local);
        return (local, [.. Sizes.Select((n, g) => new LayerGroup(region, Start(g), n, blob, Start(g)))]);
    }

    private static async Task<(EnginePair Pair, byte[] Kv, byte[] Blob)> StartAsync()
    {
        var options = new TransferEngineOptions { Ncpus = 2, NconnPerCpu = 2, SliceBytes = 1 << 16 };
        var pair = await EnginePair.StartAsync(options, options);   // Initiator = decode, Target = prefill
        var kv = new byte[Sizes.Sum()];
        byte[] blob = pair.Target.Advertise(pair.TargetConnId, pair.Target.Register(kv), 0, kv.Length);
        return (pair, kv, blob);
    }

    [Fact]
    public async Task The_decoder_pulls_each_layer_group_when_the_prefill_announces_it_and_not_before()
    {
        var (pair, kv, blob) = await StartAsync();
        using var _ = pair;
        var (local, groups) = DecoderGroups(pair.Initiator, blob);
        using var pull = pair.Initiator.PullLayers(pair.ConnId, 42, groups);
        var data = Bytes.Pattern(kv.Length, 7);
        int[] order = [2, 0, 3, 1];
        for (int i = 0; i < order.Length; i++)
        {
            int g = order[i];
            data.AsSpan((int)Start(g), Sizes[g]).CopyTo(kv.AsSpan((int)Start(g)));   // the prefill computed this group's KV
            await pair.Target.NotifyLayerReadyAsync(pair.TargetConnId, 42, g).WaitAsync(EnginePair.Deadline);
            await pull.GroupLanded(g).WaitAsync(EnginePair.Deadline);
            Assert.True(local.AsSpan((int)Start(g), Sizes[g]).SequenceEqual(data.AsSpan((int)Start(g), Sizes[g])), $"group {g} differs");
            Assert.Equal(order.Take(i + 1).Order(), pull.Landed);
            foreach (int later in order.Skip(i + 1))
                Assert.False(local.AsSpan((int)Start(later), Sizes[later]).ContainsAnyExcept((byte)0), $"group {later} was read before it was announced");
        }
        await pull.Completion.WaitAsync(EnginePair.Deadline);
        Assert.Equal(data, local);
        Assert.Empty(pair.Initiator.GetNotifications());
    }

    [Fact]
    public async Task Notes_that_arrive_before_the_pull_are_taken_by_it_and_other_notifications_stay_listed()
    {
        var (pair, kv, blob) = await StartAsync();
        using var _ = pair;
        Bytes.Pattern(kv.Length, 3).CopyTo(kv, 0);
        foreach (int g in new[] { 1, 0 }) await pair.Target.NotifyLayerReadyAsync(pair.TargetConnId, 9, g).WaitAsync(EnginePair.Deadline);
        await pair.Target.NotifyLayerReadyAsync(pair.TargetConnId, 10, 0).WaitAsync(EnginePair.Deadline);   // another request's note
        await pair.Target.SendNotificationAsync(pair.TargetConnId, "plain"u8.ToArray()).WaitAsync(EnginePair.Deadline);
        // Each NOTIFY is acknowledged after the decoder filed it, so all four are in its list now.
        var (local, groups) = DecoderGroups(pair.Initiator, blob);
        using var pull = pair.Initiator.PullLayers(pair.ConnId, 9, groups);
        await Task.WhenAll(pull.GroupLanded(0), pull.GroupLanded(1)).WaitAsync(EnginePair.Deadline);
        int two = Sizes[0] + Sizes[1];
        Assert.Equal(kv.AsSpan(0, two).ToArray(), local.AsSpan(0, two).ToArray());
        Assert.False(pull.GroupLanded(2).IsCompleted);
        Assert.Equal([new Protocol.Transfer.LayerReadyNote(10, 0).ToBytes(), "plain"u8.ToArray()], pair.Initiator.GetNotifications().Select(n => n.Bytes));
    }

    [Fact]
    public async Task A_pull_fails_with_a_reason_when_the_prefill_names_a_group_past_the_list_or_goes_away()
    {
        var (pair, _, blob) = await StartAsync();
        using var __ = pair;
        var (_, groups) = DecoderGroups(pair.Initiator, blob);
        using (var pull = pair.Initiator.PullLayers(pair.ConnId, 5, groups))
        {
            await pair.Target.NotifyLayerReadyAsync(pair.TargetConnId, 5, Sizes.Length).WaitAsync(EnginePair.Deadline);
            var e = await Assert.ThrowsAsync<TransferException>(() => pull.GroupLanded(0).WaitAsync(EnginePair.Deadline));
            Assert.Contains("announced layer group 4, but the pull has 4 groups", e.Message);
        }
        using var next = pair.Initiator.PullLayers(pair.ConnId, 6, groups);
        pair.Target.Dispose();
        var lost = await Assert.ThrowsAsync<TransferException>(() => next.GroupLanded(0).WaitAsync(EnginePair.Deadline));
        Assert.Equal(TransferError.ConnectionLost, lost.Code);
        Assert.Contains($"connection {pair.ConnId}", lost.Message);
    }

    [Fact]
    public async Task Bad_pull_arguments_are_refused_before_anything_is_read()
    {
        var (pair, _, blob) = await StartAsync();
        using var _ = pair;
        var (local, groups) = DecoderGroups(pair.Initiator, blob);
        var g0 = groups[0];
        var cases = new (LayerGroup[] Groups, ulong Tag, string Words)[]
        {
            ([], 1, "at least one group"),
            ([g0], 0, "tag is at least 1"),
            ([g0 with { Length = local.Length + 1 }], 1, "outside region"),
            ([g0 with { RemoteOffset = local.Length }], 1, "outside the advertised window"),
            ([g0 with { Advertisement = blob.AsMemory(0, 10) }], 1, "advertisement"),
        };
        foreach (var (bad, tag, words) in cases)
            Assert.Contains(words, Assert.Throws<TransferException>(() => pair.Initiator.PullLayers(pair.ConnId, tag, bad)).Message);
        var pull = pair.Initiator.PullLayers(pair.ConnId, 1, groups);
        Assert.Contains("already has a layer pull", Assert.Throws<TransferException>(() => pair.Initiator.PullLayers(pair.ConnId, 1, groups)).Message);
        pull.Dispose();
        pair.Initiator.PullLayers(pair.ConnId, 1, groups).Dispose();   // disposed: the tag is free again
    }
}
