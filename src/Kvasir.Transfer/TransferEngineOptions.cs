using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer;

/// <summary>Options of a <see cref="TransferEngine"/> (docs/transfer.md). Every one has a default that works on one host.</summary>
public sealed record TransferEngineOptions
{
    /// <summary>
    /// Where the engine listens and what <see cref="TransferEngine.GetMetadata"/> advertises: an IPv4 or
    /// IPv6 address, or a network interface name (its first IPv4 address, else its first IPv6 address).
    /// Default 127.0.0.1: only this host can connect. 0.0.0.0 listens everywhere but cannot be advertised
    /// as such; <see cref="TransferEngine.GetMetadata"/> then carries the first non-loopback IPv4 address.
    /// </summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>Listening port; 0 (default) picks a free one (read it from <see cref="TransferEngine.Port"/>).</summary>
    public int Port { get; init; }

    /// <summary>
    /// KVTrans's <c>ncpus</c> (default 1): a connection this engine opens has <c>Ncpus × NconnPerCpu</c> lanes.
    /// Every lane has a receiver and a sender thread of its own (docs/transfer.md § Threads), so a connection costs
    /// 2 × lanes threads on each side. Range 1..64.
    /// </summary>
    public int Ncpus { get; init; } = 1;

    /// <summary>KVTrans's <c>nconn_per_cpu</c>: lanes per <see cref="Ncpus"/> (default 2). Range 1..64; the lanes of one connection are at most 256.</summary>
    public int NconnPerCpu { get; init; } = 2;

    /// <summary>
    /// Auth key, 64 hex characters (the node's format), or null (default) for none. With a key every lane
    /// must pass the mutual HMAC handshake, and this engine refuses to connect to a peer that asks for none.
    /// </summary>
    public string? AuthKey { get; init; }

    /// <summary>
    /// Largest slice in bytes (default 1 MiB, range 4 KiB..64 MiB): what a transfer is cut into and the
    /// <c>max_slice</c> this engine accepts. Small slices spread a transfer over more lanes but cost a frame each.
    /// </summary>
    public int SliceBytes { get; init; } = TransferLimits.DefaultSliceBytes;

    /// <summary>
    /// The smallest slice a write spread over several lanes shrinks to towards its end (default 128 KiB, range 4 KiB..64
    /// MiB; at or above <see cref="SliceBytes"/> every slice but the last is <see cref="SliceBytes"/>). Such a write's
    /// slices are taken by the lanes as they go; once less than 2 × lanes × <see cref="SliceBytes"/> bytes are left,
    /// each slice is the bytes left / (2 × lanes), so the lanes run out of work together instead of all waiting for
    /// the one that took the last full slice (docs/transfer.md § Threads, queued writes).
    /// </summary>
    public int MinSliceBytes { get; init; } = 128 << 10;

    /// <summary>
    /// SO_SNDBUF and SO_RCVBUF of every lane socket in bytes (both ways). Null (default): chosen per lane once its
    /// handshake is done: a lane on a short path (its peer on loopback, or a round trip the kernel measured at ≤ 100 µs)
    /// gets 512 KiB, which keeps a write's slices in the shared queue instead of megabytes of them in each socket; any
    /// other lane keeps the kernel's autotuning, which grows the window with the path (docs/transfer.md § Threads).
    /// 0: the kernel's autotuning on every lane. A size: fixed on every lane (set before connecting and on the
    /// listening socket). A fixed size turns autotuning off: too small and a lane stalls waiting for its peer on a long
    /// link (a lane moves at most about this much per round trip); large sizes cost kernel memory per lane. Range null,
    /// 0 or 64 KiB..256 MiB (the kernel caps it at net.core.wmem_max/rmem_max, and doubles it for its bookkeeping).
    /// </summary>
    public int? SocketBufferBytes { get; init; }

    /// <summary>Deadline of one transfer, and of a wait in <c>SendKv</c>/<c>RecvKv</c> (default 30 s).</summary>
    public TimeSpan TransferTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Deadline of a connection's handshake, all lanes together (default 10 s); an incomplete session is dropped after it.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    internal int LaneCount => Ncpus * NconnPerCpu;

    /// <summary>Sets a fixed <see cref="SocketBufferBytes"/> on a lane socket (or the listening socket, whose lanes inherit it).</summary>
    internal void ApplySocketBuffers(System.Net.Sockets.Socket socket)
    {
        if (SocketBufferBytes is not int bytes || bytes <= 0) return;
        socket.SetSocketOption(System.Net.Sockets.SocketOptionLevel.Socket, System.Net.Sockets.SocketOptionName.SendBuffer, bytes);
        socket.SetSocketOption(System.Net.Sockets.SocketOptionLevel.Socket, System.Net.Sockets.SocketOptionName.ReceiveBuffer, bytes);
    }

    /// <summary>
    /// Applies the automatic choice (<see cref="SocketBufferBytes"/> null) to a lane whose handshake is done: the
    /// round trip the kernel measured during the handshake is what decides.
    /// </summary>
    internal void ApplyPathSocketBuffers(System.Net.Sockets.Socket socket)
    {
        if (SocketBufferBytes is null) Internal.PathSocketBuffers.Apply(socket);
    }

    internal void Validate()
    {
        static void Range(string name, long value, long min, long max)
        {
            if (value < min || value > max) throw new TransferException(TransferError.InvalidArgument, $"{name} is {value}; it must be in {min}..{max}");
        }
        Range(nameof(Ncpus), Ncpus, 1, 64);
        Range(nameof(NconnPerCpu), NconnPerCpu, 1, 64);
        Range("Ncpus × NconnPerCpu (lanes)", LaneCount, 1, TransferLimits.MaxLanes);
        Range(nameof(SliceBytes), SliceBytes, 4096, TransferLimits.MaxSliceBytes);
        Range(nameof(MinSliceBytes), MinSliceBytes, 4096, TransferLimits.MaxSliceBytes);
        Range(nameof(Port), Port, 0, 65535);
        if (SocketBufferBytes is int fixedBytes && fixedBytes != 0) Range(nameof(SocketBufferBytes), fixedBytes, 64 << 10, 256 << 20);
        if (TransferTimeout <= TimeSpan.Zero || HandshakeTimeout <= TimeSpan.Zero)
            throw new TransferException(TransferError.InvalidArgument, "TransferTimeout and HandshakeTimeout must be positive");
    }
}
