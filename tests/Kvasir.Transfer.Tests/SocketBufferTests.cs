namespace Kvasir.Transfer.Tests;

/// <summary>TransferEngineOptions.SocketBufferBytes: fixed SO_SNDBUF/SO_RCVBUF on every lane, both sides.</summary>
public sealed class SocketBufferTests
{
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
