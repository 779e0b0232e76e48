using System.Buffers;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Kvasir.Net;

/// <summary>
/// Sends a run of native memory segments (arena values, a pinned staging buffer) with as few
/// syscalls as possible: one sendmsg carries up to <see cref="MaxSegments"/> of them. On Linux the
/// socket's descriptor is used directly, with a reference held on its handle for the length of each
/// call so a concurrent close cannot hand the descriptor number to another connection mid-call.
/// When the socket buffer is full (EAGAIN) the rest of the current segment goes through .NET's
/// asynchronous send, which waits for room without blocking a thread. Elsewhere every segment is
/// sent with its own asynchronous send. The caller keeps every segment's memory valid until
/// <see cref="FlushAsync"/> returns; managed memory added as <see cref="ReadOnlyMemory{T}"/> is
/// pinned here until then. Not thread-safe: one sender per socket.
/// Over a <see cref="Stream"/> (an SslStream for TLS) the same segments are written one by one
/// with the stream's own writes (it encrypts each into its records); callers already coalesce
/// small pieces, so a segment is a staging run or a large value.
/// </summary>
public sealed partial class GatherSender
{
    /// <summary>Segments per sendmsg (Linux allows 1024 iovecs).</summary>
    public const int MaxSegments = 512;

    private const int EAGAIN = 11, EINTR = 4;

    private readonly NativeSend.Iovec[] _segments = new NativeSend.Iovec[MaxSegments];
    private readonly MemoryHandle[] _pins = new MemoryHandle[MaxSegments];
    private readonly Socket? _socket;
    private readonly Stream? _stream;
    private int _count;
    private bool _pinned;

    public GatherSender(Socket socket) => _socket = socket;

    /// <summary>Writes through <paramref name="stream"/> (e.g. an SslStream over the connection's socket).</summary>
    public GatherSender(Stream stream) => _stream = stream;

    public int Count => _count;

    public bool IsFull => _count == MaxSegments;

    /// <summary>Queues <paramref name="length"/> bytes at <paramref name="address"/>; flush first when <see cref="IsFull"/>.</summary>
    public void Add(nint address, int length)
    {
        if (length == 0) return;
        if (_count == MaxSegments) throw new InvalidOperationException("gather list is full; flush first");
        _segments[_count++] = new NativeSend.Iovec { Base = address, Length = (nuint)length };
    }

    /// <summary>
    /// Queues <paramref name="data"/> (managed or native memory), pinned until the next
    /// <see cref="FlushAsync"/> returns, whether or not that flush succeeds; flush first when <see cref="IsFull"/>.
    /// </summary>
    public unsafe void Add(ReadOnlyMemory<byte> data)
    {
        if (data.IsEmpty) return;
        if (_count == MaxSegments) throw new InvalidOperationException("gather list is full; flush first");
        var pin = data.Pin();
        _pins[_count] = pin;
        _pinned = true;
        _segments[_count++] = new NativeSend.Iovec { Base = (nint)pin.Pointer, Length = (nuint)data.Length };
    }

    /// <summary>Sends every queued segment, in order, completely.</summary>
    public async ValueTask FlushAsync(CancellationToken ct)
    {
        int first = 0;
        try
        {
            while (first < _count)
            {
                if (_stream is not null || !OperatingSystem.IsLinux())
                {
                    await SendOneAsync(first++, ct).ConfigureAwait(false);
                    continue;
                }
                long sent = Send(first, out int errno);
                if (sent < 0)
                {
                    if (errno == EINTR) continue;
                    if (errno != EAGAIN) throw new SocketException(errno);
                    await SendOneAsync(first++, ct).ConfigureAwait(false);   // waits for room
                    continue;
                }
                first = Advance(first, sent);
            }
        }
        finally
        {
            if (_pinned) Unpin();
            _count = 0;
        }
    }

    /// <summary>
    /// Blocking form of <see cref="FlushAsync"/>, for a dedicated writer thread: sends every queued
    /// segment, in order, completely, waiting for socket-buffer room on the calling thread.
    /// </summary>
    public void Flush()
    {
        int first = 0;
        try
        {
            while (first < _count)
            {
                if (_stream is not null || !OperatingSystem.IsLinux())
                {
                    SendOneBlocking(first++);
                    continue;
                }
                long sent = Send(first, out int errno);
                if (sent < 0)
                {
                    if (errno == EINTR) continue;
                    if (errno != EAGAIN) throw new SocketException(errno);
                    SendOneBlocking(first++);   // waits for room
                    continue;
                }
                first = Advance(first, sent);
            }
        }
        finally
        {
            if (_pinned) Unpin();
            _count = 0;
        }
    }

    /// <summary>Drops the first <paramref name="sent"/> bytes from the queued segments; returns the first segment with bytes left.</summary>
    private int Advance(int first, long sent)
    {
        while (sent > 0)
        {
            ref var s = ref _segments[first];
            if ((ulong)sent >= s.Length) { sent -= (long)s.Length; first++; }
            else { s.Base += (nint)sent; s.Length -= (nuint)sent; sent = 0; }
        }
        return first;
    }

    private unsafe void SendOneBlocking(int index)
    {
        var s = _segments[index];
        var rest = new ReadOnlySpan<byte>((void*)s.Base, checked((int)s.Length));
        if (_stream is not null)
        {
            _stream.Write(rest);
            return;
        }
        while (!rest.IsEmpty) rest = rest[_socket!.Send(rest, SocketFlags.None)..];
    }

    private void Unpin()
    {
        for (int i = 0; i < _count; i++)
        {
            _pins[i].Dispose();
            _pins[i] = default;
        }
        _pinned = false;
    }

    private unsafe long Send(int first, out int errno)
    {
        bool added = false;
        var handle = _socket!.SafeHandle;
        try
        {
            handle.DangerousAddRef(ref added);
            fixed (NativeSend.Iovec* iov = &_segments[first])
            {
                var message = new NativeSend.MessageHeader { Iov = iov, IovLength = (nuint)(_count - first) };
                long sent = NativeSend.SendMessage(handle.DangerousGetHandle(), &message, NativeSend.MSG_NOSIGNAL | NativeSend.MSG_DONTWAIT);
                errno = sent < 0 ? Marshal.GetLastPInvokeError() : 0;
                return sent;
            }
        }
        catch (ObjectDisposedException)
        {
            throw new SocketException((int)SocketError.OperationAborted);
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>Sends one whole segment (an asynchronous socket send completes only when all of it is sent).</summary>
    private async ValueTask SendOneAsync(int index, CancellationToken ct)
    {
        var s = _segments[index];
        var memory = new NativeMemoryManager(s.Base, checked((int)s.Length)).Memory;
        if (_stream is not null) await _stream.WriteAsync(memory, ct).ConfigureAwait(false);
        else await _socket!.SendAsync(memory, SocketFlags.None, ct).ConfigureAwait(false);
    }
}
