using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// The automatic lane socket buffers (<see cref="TransferEngineOptions.SocketBufferBytes"/> null, the default): once a
/// lane's handshake is done, a lane on a short path — its peer on loopback, or a round trip the kernel measured at no
/// more than <see cref="ShortPathRttMicros"/> — gets fixed <see cref="ShortPathBytes"/> SO_SNDBUF and SO_RCVBUF; any
/// other lane keeps the kernel's autotuning (docs/transfer.md § Threads, socket buffers).
/// </summary>
/// <remarks>
/// Why: with autotuned buffers each lane's socket takes up to ~4 MB of a write at once, so when a write's queue of
/// slices runs dry the lanes still drain their own backlogs at their own pace and the write ends with the slowest
/// (measured on a 16-core host: 0.83-0.87 of plain TCP at 8 lanes, 0.95 with 512 KiB buffers). A fixed buffer is a
/// fixed TCP window, so it is only taken where it cannot limit the lane: 512 KiB per 100 µs of round trip is 5 GiB/s
/// per lane, beyond what one lane moves. Longer paths (another rack, a WAN, the netns test's 1 ms) keep autotuning,
/// which grows the window with the path.
/// </remarks>
internal static class PathSocketBuffers
{
    /// <summary>The buffer a short-path lane gets, both ways (the kernel doubles it for its bookkeeping).</summary>
    public const int ShortPathBytes = 512 << 10;

    /// <summary>The longest round trip, in microseconds, that counts as a short path.</summary>
    public const int ShortPathRttMicros = 100;

    private const int IpProtoTcp = 6, TcpInfo = 11, TcpInfoRttOffset = 68;

    /// <summary>What a lane with this path gets: <see cref="ShortPathBytes"/>, or null for the kernel's autotuning.</summary>
    public static int? Choose(bool loopback, int? rttMicros) =>
        loopback || rttMicros is > 0 and <= ShortPathRttMicros ? ShortPathBytes : null;

    /// <summary>
    /// The connection's smoothed round trip in microseconds as the kernel measured it (Linux <c>TCP_INFO</c>'s
    /// <c>tcpi_rtt</c>), or null where it cannot be read (another OS, a closed socket).
    /// </summary>
    public static int? RoundTripMicros(Socket socket)
    {
        if (!OperatingSystem.IsLinux()) return null;
        Span<byte> info = stackalloc byte[104];
        try
        {
            int length = socket.GetRawSocketOption(IpProtoTcp, TcpInfo, info);
            if (length < TcpInfoRttOffset + 4) return null;
            return (int)BinaryPrimitives.ReadUInt32LittleEndian(info[TcpInfoRttOffset..]);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or PlatformNotSupportedException)
        {
            return null;
        }
    }

    /// <summary>Applies the automatic choice to a lane whose handshake is done; returns the buffer set, or null if none.</summary>
    public static int? Apply(Socket socket)
    {
        bool loopback = socket.RemoteEndPoint is IPEndPoint remote
            && IPAddress.IsLoopback(remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4() : remote.Address);
        if (Choose(loopback, RoundTripMicros(socket)) is not int bytes) return null;
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.SendBuffer, bytes);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveBuffer, bytes);
        return bytes;
    }
}
