using Kvasir.Protocol.Transfer;
using Kvasir.Transfer.Internal;

namespace Kvasir.Transfer.Tests;

/// <summary>
/// The ends of a write (docs/transfer.md § Threads, queued writes): a write over several lanes cuts its last slices
/// smaller so the lanes finish together, and a target holds back its WRITE acknowledgements while the same transfer's
/// slices keep coming on a lane, answering all of them, in order, before it would wait.
/// </summary>
public sealed class WriteTailTests
{
    private const int Slice = 64 << 10, Min = 4096;

    private static readonly TransferEngineOptions EightLanes = new() { Ncpus = 4, NconnPerCpu = 2, SliceBytes = Slice, MinSliceBytes = Min };

    public static TheoryData<long, int> Cuts()
    {
        var data = new TheoryData<long, int>();
        long tail = (long)SliceSchedule.TailShare * 8 * Slice;
        foreach (int lanes in new[] { 1, 2, 8 })
        {
            foreach (long length in new long[] { 1, Min - 1, Min, Min + 1, Slice - 1, Slice, Slice + 1, 2 * Slice + 777, tail - 1, tail, tail + 1, tail + Slice + 12345,
                         (32L << 20) + 3 })
                data.Add(length, lanes);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cuts))]
    public void A_write_is_cut_into_contiguous_slices_of_at_most_the_slice_size_shrinking_towards_its_end(long length, int lanes)
    {
        var schedule = SliceSchedule.For(Slice, Min, lanes);
        var cut = new List<int>();
        for (long left = length; left > 0; left -= cut[^1]) cut.Add(schedule.Next(left));
        Assert.Equal(length, cut.Sum(n => (long)n));
        Assert.Equal(cut.Count, schedule.Count(length));
        Assert.All(cut, n => Assert.InRange(n, 1, Slice));
        Assert.All(cut[..^1], n => Assert.True(n >= Min, $"a slice of {n} bytes before the last"));
        if (lanes == 1)
        {
            Assert.All(cut[..^1], n => Assert.Equal(Slice, n));   // one lane needs no balancing: fixed slices
            return;
        }
        for (int i = 1; i < cut.Count - 1; i++) Assert.True(cut[i] <= cut[i - 1], $"slice {i} ({cut[i]} bytes) is longer than slice {i - 1} ({cut[i - 1]})");
        if (cut.Count > 1) Assert.True(cut[^1] <= Math.Max(cut[^2], 2 * Min - 1), $"the last slice ({cut[^1]} bytes) took more than a runt after {cut[^2]}");
        if (length >= SliceSchedule.TailShare * lanes * (long)Slice)
        {
            // The last slices taken are short: the lanes run out of work within a small slice of each other.
            Assert.All(cut[^lanes..], n => Assert.True(n <= 2 * Min, $"one of the last {lanes} slices has {n} bytes"));
            Assert.Contains(cut, n => n < Slice && n > 2 * Min);   // and they got there by shrinking, not in one step
        }
    }

    [Theory]
    [InlineData(100_000, 4096, 3)]
    [InlineData(100_000, 99_999, 5)]
    [InlineData(4096, 4096, 8)]
    [InlineData(1 << 20, 128 << 10, 256)]
    public void Any_slice_size_minimum_and_lane_count_cut_every_length_into_its_count_of_slices(int max, int min, int lanes)
    {
        var schedule = SliceSchedule.For(max, min, lanes);
        var random = new Random(max ^ lanes);
        for (int i = 0; i < 300; i++)
        {
            long length = i < 100 ? i + 1 : random.NextInt64(1, 600L * max);
            int count = 0;
            for (long left = length; left > 0; count++)
            {
                int n = schedule.Next(left);
                Assert.InRange(n, 1, Math.Min(max, left));
                left -= n;
            }
            Assert.Equal(count, schedule.Count(length));
        }
    }

    [Fact]
    public void A_minimum_at_or_above_the_slice_size_cuts_fixed_slices()
    {
        var schedule = SliceSchedule.For(Slice, 4 * Slice, 8);
        long length = 100L * Slice + 5;
        Assert.Equal(101, schedule.Count(length));
        for (long left = length; left > 5; left -= Slice) Assert.Equal(Slice, schedule.Next(left));
        Assert.Equal(5, schedule.Next(5));
    }

    public static TheoryData<long> Lengths() =>
        [1, Min - 1, Min, Min + 1, Slice - 1, Slice, Slice + 1, 3 * Slice + 4097, 16 * Slice - 1, 16 * Slice, 16 * Slice + 1, (5L << 20) + 4321];

    [Theory]
    [MemberData(nameof(Lengths))]
    public async Task Writes_over_eight_lanes_land_byte_exact_in_their_window_and_nowhere_else(long length)
    {
        using var pair = await EnginePair.StartAsync(EightLanes, EightLanes);
        const int at = 12345;   // odd offsets on both sides
        var src = Bytes.Pattern(length + 2 * at, 3);
        var dst = new byte[length + 2 * at];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, at + 1, length);
        await pair.Initiator.WriteAsync(pair.ConnId, s, at, length, window, "done"u8.ToArray()).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src.AsSpan(at, (int)length).ToArray(), dst.AsSpan(at + 1, (int)length).ToArray());
        Assert.All(dst[..(at + 1)], b => Assert.Equal(0, b));
        Assert.All(dst[(at + 1 + (int)length)..], b => Assert.Equal(0, b));
        await pair.Target.WaitForNotificationsAsync().WaitAsync(EnginePair.Deadline);
        Assert.Equal(["done"], pair.Target.GetNotifications().Select(n => System.Text.Encoding.UTF8.GetString(n.Bytes)));
    }

    [Fact]
    public async Task Back_to_back_writes_over_eight_lanes_each_complete_only_once_all_their_bytes_landed()
    {
        using var pair = await EnginePair.StartAsync(EightLanes, EightLanes);
        const int length = (3 << 20) + 999;
        var src = new byte[length];
        var dst = new byte[length];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        var window = pair.Target.Advertise(pair.TargetConnId, d, 0, length);
        for (int round = 0; round < 20; round++)
        {
            Bytes.Pattern(length, round).CopyTo(src, 0);
            await pair.Initiator.WriteAsync(pair.ConnId, s, 0, length, window).WaitAsync(EnginePair.Deadline);
            Assert.Equal(src, dst);   // complete means landed: every byte of this round is there
        }
    }

    [Fact]
    public async Task A_WRITE_slice_is_answered_while_the_rest_of_its_transfer_is_not_sent_yet()
    {
        using var engine = TransferEngine.Start();
        using var lane = RawLane.Connect(engine.Port);
        lane.Join(RawLane.NewId());
        int conn = (await engine.AcceptAsync().WaitAsync(EnginePair.Deadline)).ConnId;
        var region = new byte[64];
        var advert = AdvertisementBlob.Parse(engine.Advertise(conn, engine.Register(region), 0, 64));
        for (ulong at = 0; at < 64; at += 16)
        {
            // The next slice goes only after this one's reply: a target holding the acknowledgement would never answer.
            lane.SendWrite(7, new(advert.AdvertId, advert.Token, 0, 64, at, 0, 0, default), Bytes.Pattern(16, (int)at));
            var (h, meta, _) = lane.Receive();
            Assert.Equal((TransferOpcode.Write, 7UL, TransferStatus.Ok, at), (h.Opcode, h.RequestId, h.Status, WriteSlice.ParseReplyMeta(meta)));
        }
    }

    [Fact]
    public async Task Replies_to_a_burst_of_slices_of_several_transfers_come_back_in_request_order_with_their_results()
    {
        using var engine = TransferEngine.Start();
        using var lane = RawLane.Connect(engine.Port);
        lane.Join(RawLane.NewId());
        int conn = (await engine.AcceptAsync().WaitAsync(EnginePair.Deadline)).ConnId;
        var region = new byte[4096];
        var advert = AdvertisementBlob.Parse(engine.Advertise(conn, engine.Register(region), 0, 4096));
        // More slices of one transfer than the target holds back at once, a refused one among them, then other transfers.
        var sent = new List<(ulong Id, ulong At, TransferStatus Expected)>();
        var burst = new MemoryStream();
        void Add(ulong id, ulong transferLength, ulong at, int n, TransferStatus expected, UInt128 token)
        {
            var w = new WriteSlice(advert.AdvertId, token, 0, transferLength, at, 0, 0, default);
            var meta = new byte[w.Size];
            w.Write(meta);
            var head = new byte[TransferLimits.HeaderSize];
            TransferFrameHeader.Request(TransferOpcode.Write, id, meta.Length, n).Write(head);
            burst.Write(head);
            burst.Write(meta);
            burst.Write(Bytes.Pattern(n, (int)(id + at)));
            sent.Add((id, at, expected));
        }
        int many = Lane.MaxHeldAcks + 6;
        for (int i = 0; i < many; i++) Add(1, (ulong)many * 16, (ulong)i * 16, 16, TransferStatus.Ok, advert.Token);
        Add(2, 2048, 0, 8, TransferStatus.Ok, advert.Token);
        Add(2, 2048, 8, 8, TransferStatus.NotAdvertised, advert.Token ^ 1);
        Add(2, 2048, 16, 8, TransferStatus.Ok, advert.Token);
        Add(3, 8, 0, 8, TransferStatus.Ok, advert.Token);
        Add(2, 2048, 24, 8, TransferStatus.Ok, advert.Token);
        lane.SendRaw(burst.ToArray());
        foreach (var (id, at, expected) in sent)
        {
            var (h, meta, _) = lane.Receive();
            Assert.Equal((TransferOpcode.Write, id, expected, at), (h.Opcode, h.RequestId, h.Status, WriteSlice.ParseReplyMeta(meta)));
        }
        Assert.Equal(Bytes.Pattern(16, (int)(1 + 16 * (many - 1))), region[(16 * (many - 1))..(16 * many)]);
    }
}
