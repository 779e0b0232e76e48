using System.Net.Sockets;
using System.Runtime.InteropServices;
using Kvasir.Net;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// A lane's socket with blocking calls only, for the lane's own threads (docs/transfer.md § Threads). A lane
/// socket never sees an asynchronous .NET operation (connect, handshake and data path are all synchronous), so
/// its descriptor stays in blocking mode and has no epoll registration: a thread waiting for bytes or for room
/// sleeps in the kernel and is woken by it directly, with no event loop or thread-pool hop in between. On Linux
/// recv and sendmsg are called on the descriptor (recv with MSG_WAITALL for a payload, sendmsg with a gather
/// list), with a reference held on the socket's handle for the length of each call, so a concurrent close
/// cannot hand the descriptor number to another socket mid-call; closing the socket (shutdown first) wakes a
/// blocked call. Elsewhere the same calls go through <see cref="System.Net.Sockets.Socket"/>'s synchronous methods.
/// </summary>
internal sealed unsafe partial class LaneSocket(Socket socket)
{
    private const int MSG_WAITALL = 0x100;
    private const int EINTR = 4, EAGAIN = 11;
    private const int F_GETFL = 3, O_NONBLOCK = 0x800;

    public Socket Socket { get; } = socket;

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(nint fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint SendBytes(nint fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(nint fd, int command, int argument);

    /// <summary>
    /// Whether the descriptor is in blocking mode in the kernel (Linux; true elsewhere). False means something
    /// ran an asynchronous operation on it, which registers it with the runtime's event loop.
    /// </summary>
    public bool KernelBlocking
    {
        get
        {
            if (!OperatingSystem.IsLinux()) return true;
            var handle = Socket.SafeHandle;
            nint fd = Enter(handle);
            try { return (Fcntl(fd, F_GETFL, 0) & O_NONBLOCK) == 0; }
            finally { handle.DangerousRelease(); }
        }
    }

    /// <summary>
    /// Receives into [<paramref name="into"/>, +<paramref name="length"/>): with <paramref name="waitAll"/> all of
    /// it unless the stream ends, else whatever is there (at least one byte). Returns the bytes received, 0 at the
    /// end of the stream; a socket error is a <see cref="SocketException"/>.
    /// </summary>
    public int Receive(byte* into, int length, bool waitAll)
    {
        if (!OperatingSystem.IsLinux())
        {
            var span = new Span<byte>(into, length);
            int total = 0;
            do
            {
                int n = Socket.Receive(span[total..], SocketFlags.None);
                if (n == 0) break;
                total += n;
            } while (waitAll && total < length);
            return total;
        }
        var handle = Socket.SafeHandle;
        nint fd = Enter(handle);
        try
        {
            while (true)
            {
                long n = Recv(fd, into, (nuint)length, waitAll ? MSG_WAITALL : 0);
                if (n >= 0) return (int)n;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) throw new SocketException(errno);
            }
        }
        finally { handle.DangerousRelease(); }
    }

    /// <summary>
    /// Receives what is there now into [<paramref name="into"/>, +<paramref name="length"/>) without blocking: the bytes
    /// received, 0 at the end of the stream, -1 when nothing is there (always -1 off Linux).
    /// </summary>
    public int TryReceive(byte* into, int length)
    {
        if (!OperatingSystem.IsLinux()) return -1;
        var handle = Socket.SafeHandle;
        nint fd = Enter(handle);
        try
        {
            while (true)
            {
                long n = Recv(fd, into, (nuint)length, NativeSend.MSG_DONTWAIT);
                if (n >= 0) return (int)n;
                int errno = Marshal.GetLastPInvokeError();
                if (errno == EAGAIN) return -1;
                if (errno != EINTR) throw new SocketException(errno);
            }
        }
        finally { handle.DangerousRelease(); }
    }

    /// <summary>Sends every byte the gather list names, in order, blocking while the socket buffer is full; consumes the entries.</summary>
    public void SendAll(Span<NativeSend.Iovec> segments)
    {
        if (!OperatingSystem.IsLinux())
        {
            foreach (var s in segments)
            {
                var rest = new ReadOnlySpan<byte>((void*)s.Base, checked((int)s.Length));
                while (!rest.IsEmpty) rest = rest[Socket.Send(rest, SocketFlags.None)..];
            }
            return;
        }
        var handle = Socket.SafeHandle;
        nint fd = Enter(handle);
        try
        {
            fixed (NativeSend.Iovec* iov = segments)
            {
                int at = 0, count = segments.Length;
                while (at < count && iov[at].Length == 0) at++;
                while (at < count)
                {
                    var message = new NativeSend.MessageHeader { Iov = iov + at, IovLength = (nuint)(count - at) };
                    long sent = NativeSend.SendMessage(fd, &message, NativeSend.MSG_NOSIGNAL);
                    if (sent < 0)
                    {
                        int errno = Marshal.GetLastPInvokeError();
                        if (errno == EINTR) continue;
                        throw new SocketException(errno);
                    }
                    while (sent > 0)
                    {
                        ref var s = ref iov[at];
                        if ((ulong)sent >= s.Length) { sent -= (long)s.Length; s.Length = 0; at++; }
                        else { s.Base += (nint)sent; s.Length -= (nuint)sent; sent = 0; }
                    }
                    while (at < count && iov[at].Length == 0) at++;
                }
            }
        }
        finally { handle.DangerousRelease(); }
    }

    /// <summary>Sends what the socket buffer takes of <paramref name="data"/> now, without blocking; returns the bytes sent (0 when full, and always 0 off Linux).</summary>
    public int TrySend(ReadOnlySpan<byte> data)
    {
        if (!OperatingSystem.IsLinux()) return 0;   // the lane's sender sends it: a queuing thread must never block on the socket
        var handle = Socket.SafeHandle;
        nint fd = Enter(handle);
        try
        {
            fixed (byte* p = data)
            {
                while (true)
                {
                    long n = SendBytes(fd, p, (nuint)data.Length, NativeSend.MSG_DONTWAIT | NativeSend.MSG_NOSIGNAL);
                    if (n >= 0) return (int)n;
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EAGAIN) return 0;
                    if (errno != EINTR) throw new SocketException(errno);
                }
            }
        }
        finally { handle.DangerousRelease(); }
    }

    /// <summary>Takes a reference on the handle for one call (release it after); a closed socket is OperationAborted.</summary>
    private static nint Enter(SafeHandle handle)
    {
        bool added = false;
        try { handle.DangerousAddRef(ref added); }
        catch (ObjectDisposedException) { throw new SocketException((int)SocketError.OperationAborted); }
        return handle.DangerousGetHandle();
    }
}
