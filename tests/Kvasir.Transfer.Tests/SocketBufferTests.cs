using System.Net;
using System.Net.Sockets;
using Kvasir.Transfer.Internal;

namespace Kvasir.Transfer.Tests;

/// <summary>
/// TransferEngineOptions.SocketBufferBytes: fixed SO_SNDBUF/SO_RCVBUF on every lane, both sides; by default 512 KiB on a
/// short path (loopback, or a round trip the kernel measured at ≤ 100 µs) and the kernel's autotuning elsewhere.
/// </summary>
public sealed class SocketBufferTests
{
    [Fact]
    public async Task By_default_every_loopback_lane_on_both_sides_gets_512KiB_once_its_handshake_is_done()
    {
        using var pair = await EnginePair.StartAsync(new TransferEngineOptions { Ncpus = 2, NconnPerCpu = 2 }, new TransferEngineOptions { Ncpus = 2, NconnPerCpu = 2 });
        var src = Bytes.Pattern(5 << 20, 4);
        var dst = new byte[src.Length];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, src.Length, pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length)).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
        int expected = OperatingSystem.IsLinux() ? 2 * PathSocketBuffers.ShortPathBytes : PathSocketBuffers.ShortPathBytes;
        Assert.Equal(4, pair.Initiator.LaneSocketBuffers(pair.ConnId).Length);
        Assert.All(pair.Initiator.LaneSocketBuffers(pair.ConnId), b => Assert.Equal((expected, expected), b));
        Assert.All(pair.Target.LaneSocketBuffers(pair.TargetConnId), b => Assert.Equal((expected, expected), b));
    }

    [Fact]
    public async Task With_0_no_lane_gets_the_short_path_buffers_and_the_kernel_keeps_sizing_them()
    {
        var options = new TransferEngineOptions { Ncpus = 1, NconnPerCpu = 2, SocketBufferBytes = 0 };
        using var pair = await EnginePair.StartAsync(options, options);
        int locked = OperatingSystem.IsLinux() ? 2 * PathSocketBuffers.ShortPathBytes : PathSocketBuffers.ShortPathBytes;
        Assert.All(pair.Initiator.LaneSocketBuffers(pair.ConnId), b => Assert.NotEqual((locked, locked), b));
        Assert.All(pair.Target.LaneSocketBuffers(pair.TargetConnId), b => Assert.NotEqual((locked, locked), b));
    }

    [Theory]
    [InlineData(true, null, PathSocketBuffers.ShortPathBytes)]      // loopback, whatever was measured
    [InlineData(true, 5000, PathSocketBuffers.ShortPathBytes)]
    [InlineData(false, 30, PathSocketBuffers.ShortPathBytes)]       // a rack's round trip
    [InlineData(false, 100, PathSocketBuffers.ShortPathBytes)]
    [InlineData(false, 101, null)]                                  // beyond 100 µs: autotuning
    [InlineData(false, 1000, null)]                                 // the netns test's 1 ms
    [InlineData(false, 0, null)]                                    // nothing measured yet
    [InlineData(false, null, null)]                                 // no TCP_INFO (another OS)
    public void The_short_path_rule_takes_loopback_and_round_trips_up_to_100us(bool loopback, int? rttMicros, int? expected) =>
        Assert.Equal(expected, PathSocketBuffers.Choose(loopback, rttMicros));

    [Fact]
    public void The_kernel_reports_a_connected_sockets_round_trip()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        using var server = listener.Accept();
        client.Send(new byte[100]);
        Assert.Equal(100, server.Receive(new byte[100]));
        int? rtt = PathSocketBuffers.RoundTripMicros(client);
        if (!OperatingSystem.IsLinux())
        {
            Assert.Null(rtt);
            return;
        }
        Assert.NotNull(rtt);
        Assert.InRange(rtt.Value, 1, 1_000_000);   // loopback: microseconds, never a second
        client.Dispose();
        Assert.Null(PathSocketBuffers.RoundTripMicros(client));
    }

    [Fact]
    public async Task Every_lane_on_both_sides_gets_the_configured_socket_buffers_and_moves_bytes()
    {
        const int size = 128 << 10;
        var options = new TransferEngineOptions { Ncpus = 2, NconnPerCpu = 2, SocketBufferBytes = size };
        using var pair = await EnginePair.StartAsync(options, options);
        var src = Bytes.Pattern(5 << 20, 3);
        var dst = new byte[src.Length];
        int s = pair.Initiator.Register(src), d = pair.Target.Register(dst);
        await pair.Initiator.WriteAsync(pair.ConnId, s, 0, src.Length, pair.Target.Advertise(pair.TargetConnId, d, 0, dst.Length)).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
        // Linux reports twice the size set (its bookkeeping share); an autotuned socket would have grown past it by now.
        int expected = OperatingSystem.IsLinux() ? 2 * size : size;
        Assert.All(pair.Initiator.LaneSocketBuffers(pair.ConnId), b => Assert.Equal((expected, expected), b));
        Assert.All(pair.Target.LaneSocketBuffers(pair.TargetConnId), b => Assert.Equal((expected, expected), b));
    }

    [Theory]
    [InlineData(1)]
    [InlineData((64 << 10) - 1)]
    [InlineData((256 << 20) + 1)]
    [InlineData(-1)]
    public void A_socket_buffer_outside_64KiB_to_256MiB_is_refused(int bytes) =>
        Assert.Equal(TransferError.InvalidArgument, Assert.Throws<TransferException>(() => TransferEngine.Start(new() { SocketBufferBytes = bytes })).Code);
}
