using System.Buffers.Binary;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Tests;

/// <summary>
/// Frames no engine would send, from a raw socket: each is answered with its status and, when
/// frame-level, the lane is closed; the engine goes on accepting and transferring.
/// </summary>
public sealed class RawFrameTests
{
    [Fact]
    public async Task A_wrong_magic_is_BAD_FRAME_and_the_engine_keeps_working()
    {
        using var engine = TransferEngine.Start();
        using (var lane = RawLane.Connect(engine.Port))
        {
            var junk = new byte[32];
            "KVSR"u8.CopyTo(junk);   // a cache node's frame
            BinaryPrimitives.WriteUInt64LittleEndian(junk.AsSpan(8), 77);
            junk[4] = 1;
            junk[5] = 0x10;
            lane.SendRaw(junk);
            var (h, _, _) = lane.Receive();
            Assert.Equal((true, TransferStatus.BadFrame, 77UL), (h.IsReply, h.Status, h.RequestId));
            Assert.True(lane.IsClosedByPeer());
        }
        await AssertUsableAsync(engine);
    }

    [Theory]
    [InlineData("request before HELLO", TransferStatus.BadSession)]
    [InlineData("lane index past count", TransferStatus.BadSession)]
    [InlineData("version 2", TransferStatus.UnsupportedVersion)]
    [InlineData("short HELLO", TransferStatus.BadFrame)]
    [InlineData("huge metadata", TransferStatus.FrameTooLarge)]
    public async Task A_bad_handshake_frame_is_answered_and_closed(string what, TransferStatus expected)
    {
        using var engine = TransferEngine.Start();
        using (var lane = RawLane.Connect(engine.Port))
        {
            var hello = new byte[TransferHelloRequest.Size];
            new TransferHelloRequest(what == "version 2" ? (ushort)2 : (ushort)1, what == "lane index past count" ? (ushort)3 : (ushort)0, 2,
                RawLane.NewId(), RawLane.NewId(), RawLane.NewId()).Write(hello);
            switch (what)
            {
                case "request before HELLO": lane.Send(TransferFrameHeader.Request(TransferOpcode.Notify, 9, 1), "x"u8); break;
                case "short HELLO": lane.Send(TransferFrameHeader.Request(TransferOpcode.Hello, 9, 55), hello.AsSpan(0, 55)); break;
                case "huge metadata":
                    var head = new byte[32];
                    TransferFrameHeader.Request(TransferOpcode.Hello, 9, 56).Write(head);
                    BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(20), 1 << 20);
                    lane.SendRaw(head);
                    break;
                default: lane.Send(TransferFrameHeader.Request(TransferOpcode.Hello, 9, hello.Length), hello); break;
            }
            var (h, meta, _) = lane.Receive();
            Assert.Equal((true, expected, 9UL, 0), (h.IsReply, h.Status, h.RequestId, meta.Length));
            Assert.True(lane.IsClosedByPeer(), $"the lane stays open after {expected.WireName()}");
        }
        await AssertUsableAsync(engine);
    }

    [Fact]
    public void A_lane_index_already_joined_or_a_different_lane_count_is_BAD_SESSION()
    {
        using var engine = TransferEngine.Start();
        var session = RawLane.NewId();
        using var first = RawLane.Connect(engine.Port);
        first.Join(session, index: 0, count: 3);
        foreach (var (index, count) in new[] { (0, 3), (1, 2) })
        {
            using var lane = RawLane.Connect(engine.Port);
            var hello = new byte[TransferHelloRequest.Size];
            new TransferHelloRequest(1, (ushort)index, (ushort)count, session, RawLane.NewId(), RawLane.NewId()).Write(hello);
            lane.Send(TransferFrameHeader.Request(TransferOpcode.Hello, 4, hello.Length), hello);
            Assert.Equal(TransferStatus.BadSession, lane.Receive().Header.Status);
            Assert.True(lane.IsClosedByPeer());
        }
    }

    [Fact]
    public async Task Of_lanes_racing_for_the_same_place_in_a_session_one_joins_and_the_others_are_told_BAD_SESSION()
    {
        // The Python engine once checked a lane's place, answered HELLO and only then took the place, so racing lanes
        // could all be answered OK and the losers dropped without a word: the check and the claim must be one step.
        using var engine = TransferEngine.Start();
        const int racers = 6;
        for (int round = 0; round < 5; round++)
        {
            var (session, engineId) = (RawLane.NewId(), RawLane.NewId());
            using var start = new Barrier(racers);
            var lanes = new RawLane[racers];
            try
            {
                var statuses = await Task.WhenAll(Enumerable.Range(0, racers).Select(i => Task.Run(() =>
                {
                    lanes[i] = RawLane.Connect(engine.Port);
                    Assert.True(start.SignalAndWait(EnginePair.Deadline), "the racers did not all start");
                    return lanes[i].Hello(session, index: 0, count: 2, engineId: engineId).Header.Status;
                }))).WaitAsync(EnginePair.Deadline);
                Assert.Equal(1, statuses.Count(s => s == TransferStatus.Ok));
                Assert.All(statuses.Where(s => s != TransferStatus.Ok), s => Assert.Equal(TransferStatus.BadSession, s));
                for (int i = 0; i < racers; i++)
                    if (statuses[i] != TransferStatus.Ok) Assert.True(lanes[i].IsClosedByPeer(), "a refused racer's lane stays open");
            }
            finally
            {
                foreach (var lane in lanes) lane?.Dispose();
            }
        }
        await AssertUsableAsync(engine);
    }

    [Fact]
    public async Task An_incomplete_session_is_dropped_after_the_handshake_timeout()
    {
        using var engine = TransferEngine.Start(new() { HandshakeTimeout = TimeSpan.FromSeconds(2) });
        using var lane = RawLane.Connect(engine.Port);
        lane.Join(RawLane.NewId(), index: 0, count: 2);
        Assert.True(lane.IsClosedByPeer(), "the half-joined session's lane was not closed");
        Assert.Equal(TransferError.Timeout, Assert.Throws<TransferException>(() => engine.Accept(TimeSpan.FromMilliseconds(200))).Code);
        await AssertUsableAsync(engine);
    }

    [Fact]
    public async Task Slices_outside_the_window_or_their_transfer_and_wrong_tokens_are_refused_with_nothing_written_and_the_lane_stays_open()
    {
        using var engine = TransferEngine.Start();
        using var lane = RawLane.Connect(engine.Port);
        lane.Join(RawLane.NewId());
        int conn = (await engine.AcceptAsync().WaitAsync(EnginePair.Deadline)).ConnId;
        var region = new byte[300];
        int r = engine.Register(region);
        var advert = AdvertisementBlob.Parse(engine.Advertise(conn, r, 100, 100));
        var payload = Bytes.Pattern(16, 1);
        var cases = new (WriteSlice Slice, TransferStatus Expected)[]
        {
            (new(advert.AdvertId, advert.Token, 90, 16, 0, 0, 0, default), TransferStatus.OutOfBounds),          // window 100 < 90 + 16
            (new(advert.AdvertId, advert.Token, 0, 10, 0, 0, 0, default), TransferStatus.OutOfBounds),           // payload past the transfer
            (new(advert.AdvertId, advert.Token, 0, 100, 90, 0, 0, default), TransferStatus.OutOfBounds),         // slice past the transfer
            (new(advert.AdvertId, advert.Token, ulong.MaxValue, 16, 0, 0, 0, default), TransferStatus.OutOfBounds), // wraps around
            (new(advert.AdvertId, advert.Token ^ 1, 0, 16, 0, 0, 0, default), TransferStatus.NotAdvertised),    // wrong token
            (new(advert.AdvertId + 1000, advert.Token, 0, 16, 0, 0, 0, default), TransferStatus.NotAdvertised),  // unknown advertisement
        };
        ulong id = 1;
        foreach (var (slice, expected) in cases)
        {
            lane.SendWrite(id, slice, payload);
            var (h, meta, _) = lane.Receive();
            Assert.Equal((TransferOpcode.Write, id, expected), (h.Opcode, h.RequestId, h.Status));
            Assert.Equal(slice.SliceOffset, WriteSlice.ParseReplyMeta(meta));
            id++;
        }
        var read = new byte[ReadSlice.Size];
        new ReadSlice(advert.AdvertId, advert.Token, 95, 16).Write(read);
        lane.Send(TransferFrameHeader.Request(TransferOpcode.Read, 50, read.Length), read);
        Assert.Equal(TransferStatus.OutOfBounds, lane.Receive().Header.Status);
        Assert.All(region, b => Assert.Equal(0, b));

        lane.SendWrite(id, new(advert.AdvertId, advert.Token, 84, 16, 0, 0, 0, default), payload);   // the last 16 bytes of the window
        Assert.Equal(TransferStatus.Ok, lane.Receive().Header.Status);
        Assert.Equal(payload, region[184..200]);
        Assert.All(region[..184], b => Assert.Equal(0, b));
        Assert.All(region[200..], b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData("unknown opcode", TransferStatus.UnknownOpcode)]
    [InlineData("STAGED_WRITE (no staging file offered)", TransferStatus.UnknownOpcode)]
    [InlineData("payload above max_slice", TransferStatus.FrameTooLarge)]
    [InlineData("zero-length WRITE", TransferStatus.BadFrame)]
    [InlineData("HELLO again", TransferStatus.BadSession)]
    [InlineData("unknown flag", TransferStatus.BadFrame)]
    [InlineData("request with a status", TransferStatus.BadFrame)]
    [InlineData("READ above max_slice", TransferStatus.FrameTooLarge)]
    [InlineData("notification on a later slice", TransferStatus.BadFrame)]
    public async Task A_bad_frame_on_a_joined_lane_is_answered_the_session_closed_and_the_engine_keeps_working(string what, TransferStatus expected)
    {
        using var engine = TransferEngine.Start(new() { SliceBytes = 4096 });
        using (var lane = RawLane.Connect(engine.Port))
        {
            lane.Join(RawLane.NewId());
            int conn = (await engine.AcceptAsync().WaitAsync(EnginePair.Deadline)).ConnId;
            int r = engine.Register(new byte[8192]);
            var advert = AdvertisementBlob.Parse(engine.Advertise(conn, r, 0, 8192));
            var w = new WriteSlice(advert.AdvertId, advert.Token, 0, 8192, 0, 0, 0, default);
            var meta = new byte[w.Size];
            w.Write(meta);
            switch (what)
            {
                case "unknown opcode": lane.Send(new TransferFrameHeader((TransferOpcode)0x7f, TransferFlags.None, 3, TransferStatus.Ok, 0, 0), []); break;
                case "STAGED_WRITE (no staging file offered)":
                    var staged = new byte[new StagedWrite(0, 16, w).Size];
                    new StagedWrite(0, 16, w).Write(staged);
                    lane.Send(TransferFrameHeader.Request(TransferOpcode.StagedWrite, 3, staged.Length), staged);
                    break;
                case "payload above max_slice":   // the header alone: the engine refuses it before reading on
                    var head = new byte[32];
                    TransferFrameHeader.Request(TransferOpcode.Write, 3, meta.Length, 4097).Write(head);
                    lane.SendRaw(head);
                    break;
                case "zero-length WRITE": lane.Send(TransferFrameHeader.Request(TransferOpcode.Write, 3, meta.Length, 0), meta); break;
                case "HELLO again": lane.Send(TransferFrameHeader.Request(TransferOpcode.Hello, 3, 56), new byte[56]); break;
                case "request with a status": lane.Send(new TransferFrameHeader(TransferOpcode.Notify, TransferFlags.None, 3, TransferStatus.NotAdvertised, 0, 0), []); break;
                case "READ above max_slice":
                    var read = new byte[ReadSlice.Size];
                    new ReadSlice(advert.AdvertId, advert.Token, 0, 4097).Write(read);
                    lane.Send(TransferFrameHeader.Request(TransferOpcode.Read, 3, read.Length), read);
                    break;
                case "notification on a later slice":
                    var later = new WriteSlice(advert.AdvertId, advert.Token, 0, 8192, 4096, 0, 0, "n"u8.ToArray());
                    var laterMeta = new byte[later.Size];
                    later.Write(laterMeta);
                    lane.Send(TransferFrameHeader.Request(TransferOpcode.Write, 3, laterMeta.Length, 0), laterMeta);
                    break;
                default: lane.Send(new TransferFrameHeader(TransferOpcode.Notify, (TransferFlags)1, 3, TransferStatus.Ok, 0, 0), []); break;
            }
            var (h, _, _) = lane.Receive();
            Assert.Equal((true, expected), (h.IsReply, h.Status));
            Assert.Equal(3UL, h.RequestId);
            Assert.True(lane.IsClosedByPeer(), $"the lane stays open after {expected.WireName()}");
            await Poll.UntilAsync(() => !engine.Connections.Contains(conn), "the engine to close the session of the bad lane");
        }
        await AssertUsableAsync(engine);
    }

    [Fact]
    public async Task A_write_that_never_completes_delivers_no_notification_but_keeps_the_bytes_it_placed()
    {
        using var engine = TransferEngine.Start();
        int conn;
        var region = new byte[64];
        using (var lane = RawLane.Connect(engine.Port))
        {
            lane.Join(RawLane.NewId());
            conn = (await engine.AcceptAsync().WaitAsync(EnginePair.Deadline)).ConnId;
            var advert = AdvertisementBlob.Parse(engine.Advertise(conn, engine.Register(region), 0, 64));
            lane.SendWrite(1, new(advert.AdvertId, advert.Token, 0, 64, 0, 0, 0, "never"u8.ToArray()), Bytes.Pattern(32, 1));
            Assert.Equal(TransferStatus.Ok, lane.Receive().Header.Status);
            lane.SendWrite(2, new(advert.AdvertId, advert.Token, 0, 8, 0, 0, 0, "whole"u8.ToArray()), Bytes.Pattern(8, 2));
            Assert.Equal(TransferStatus.Ok, lane.Receive().Header.Status);
        }
        await Poll.UntilAsync(() => !engine.Connections.Contains(conn), "the engine to notice the lane closed");
        var notes = engine.GetNotifications();
        Assert.Equal(["whole"], notes.Select(n => System.Text.Encoding.UTF8.GetString(n.Bytes)));
        Assert.Equal(Bytes.Pattern(8, 2), region[..8]);
        Assert.Equal(Bytes.Pattern(32, 1)[8..], region[8..32]);
    }

    [Fact]
    public async Task A_zero_length_WRITE_from_the_same_host_is_a_completion_of_the_whole_transfer()
    {
        var bootId = Convert.FromHexString(File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim().Replace("-", ""));
        using var engine = TransferEngine.Start();
        using var lane = RawLane.Connect(engine.Port);
        lane.Join(RawLane.NewId(), hostId: BinaryPrimitives.ReadUInt128LittleEndian(bootId));
        int conn = (await engine.AcceptAsync().WaitAsync(EnginePair.Deadline)).ConnId;
        var advert = AdvertisementBlob.Parse(engine.Advertise(conn, engine.Register(new byte[1 << 20]), 0, 1 << 20));
        lane.SendWrite(78, new(advert.AdvertId, advert.Token, 0, 1 << 20, 0, 0, 0, "copied"u8.ToArray()), []);
        Assert.Equal(TransferStatus.Ok, lane.Receive().Header.Status);
        var notes = await TransferTests.NotificationsAsync(engine, 1);
        Assert.Equal("copied", System.Text.Encoding.UTF8.GetString(notes[0].Bytes));
        lane.SendWrite(79, new(advert.AdvertId, advert.Token, 1, 1 << 20, 0, 0, 0, default), []);   // past the window
        Assert.Equal(TransferStatus.OutOfBounds, lane.Receive().Header.Status);
    }

    /// <summary>A real engine connects and writes after whatever the test did.</summary>
    private static async Task AssertUsableAsync(TransferEngine engine)
    {
        using var client = TransferEngine.Start();
        var accepting = engine.AcceptAsync();
        int conn = await client.ConnectAsync("127.0.0.1", engine.Port).WaitAsync(EnginePair.Deadline);
        int target = (await accepting.WaitAsync(EnginePair.Deadline)).ConnId;
        var dst = new byte[100];
        var window = engine.Advertise(target, engine.Register(dst), 0, 100);
        await client.WriteAsync(conn, client.Register(Bytes.Pattern(100, 3)), 0, 100, window).WaitAsync(EnginePair.Deadline);
        Assert.Equal(Bytes.Pattern(100, 3), dst);
    }
}
