using System.Net.Sockets;

namespace Kvasir.Net;

/// <summary>
/// Reads exact byte counts from a socket through a small read-ahead buffer. Headers, metadata
/// and small values come out of the buffer (one recv serves many frames); a read of at least
/// <see cref="DirectReadMin"/> bytes that finds the buffer empty goes straight from the socket into
/// the caller's memory (the arena, a GET's destination), so values are not copied through managed
/// memory. Text protocols parse delimited units (lines) in place through <see cref="BufferedSpan"/>, <see cref="Consume"/>
/// and <see cref="FillAsync"/>. Not thread-safe: one reader at a time.
/// The same code reads a plain <see cref="Socket"/> (the fast path: receives go straight to the
/// socket) or a <see cref="Stream"/> such as an SslStream (TLS: the stream decrypts through its own
/// record buffer, so a large read costs one copy out of it).
/// </summary>
public sealed class BufferedReceiver
{
    private readonly Socket? _socket;
    private readonly Stream? _stream;
    private readonly byte[] _buffer;
    private int _start;
    private int _end;

    /// <summary>
    /// A read of at least this many bytes receives straight into its destination whenever the buffer is empty, down to its
    /// last byte: the kernel's copy is then the only one, and the read ends on a receive boundary, so the next large read
    /// (the next value) starts with an empty buffer and goes straight too. Smaller reads (headers, metadata, small values)
    /// receive into the buffer, where one receive serves several of them at the price of a copy out of it. Before session
    /// 13 only a read still wanting the buffer's whole size went straight, so the tail of every value and the head of the
    /// next one came through the buffer: for 64 KiB values nearly every byte was copied twice (docs/benchmarks.md).
    /// </summary>
    public const int DirectReadMin = 32 * 1024;

    public BufferedReceiver(Socket socket, int bufferSize = 64 * 1024)
    {
        _socket = socket;
        _buffer = new byte[bufferSize];
    }

    /// <summary>Reads through <paramref name="stream"/> (e.g. an SslStream over the connection's socket).</summary>
    public BufferedReceiver(Stream stream, int bufferSize = 64 * 1024)
    {
        _stream = stream;
        _buffer = new byte[bufferSize];
    }

    /// <summary>
    /// The most one receive of the checksumming read writes before its callback runs: small enough that the callback
    /// reads the piece from L2 rather than from L3 or DRAM after the kernel copied it.
    /// </summary>
    public const int ChecksumPiece = 256 * 1024;

    /// <summary>Bytes already buffered and not yet consumed.</summary>
    public int Buffered => _end - _start;

    /// <summary>Size of the read-ahead buffer: the longest unit <see cref="FillAsync"/> can gather in <see cref="BufferedSpan"/>.</summary>
    public int Capacity => _buffer.Length;

    /// <summary>The buffered bytes not yet consumed. Valid until the next read, fill or <see cref="Consume"/>.</summary>
    public ReadOnlySpan<byte> BufferedSpan => _buffer.AsSpan(_start, _end - _start);

    /// <summary>Marks the first <paramref name="count"/> bytes of <see cref="BufferedSpan"/> consumed.</summary>
    public void Consume(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _end - _start);
        _start += count;
    }

    /// <summary>
    /// Receives at least one more byte behind the buffered ones (moving those to the buffer's start
    /// first), for a parser that needs a whole delimited unit in <see cref="BufferedSpan"/>. Returns
    /// false at end of stream. Throws <see cref="InvalidOperationException"/> when <see cref="Buffered"/>
    /// already equals <see cref="Capacity"/>: the unit is longer than the buffer.
    /// </summary>
    public async ValueTask<bool> FillAsync(CancellationToken ct)
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buffer.Length) throw new InvalidOperationException($"read-ahead buffer of {_buffer.Length} bytes is full");
        int received = await ReceiveAsync(_buffer.AsMemory(_end), ct).ConfigureAwait(false);
        if (received == 0) return false;
        _end += received;
        return true;
    }

    /// <summary>
    /// Fills <paramref name="destination"/>. Returns false on a clean end of stream before the first
    /// byte; throws <see cref="EndOfStreamException"/> when the stream ends part-way.
    /// </summary>
    public async ValueTask<bool> ReadExactAsync(Memory<byte> destination, CancellationToken ct)
    {
        int done = 0;
        while (done < destination.Length)
        {
            if (_start < _end)
            {
                int n = Math.Min(_end - _start, destination.Length - done);
                _buffer.AsSpan(_start, n).CopyTo(destination.Span[done..]);
                _start += n;
                done += n;
                continue;
            }
            int want = destination.Length - done;
            int received;
            if (destination.Length >= DirectReadMin || want >= _buffer.Length)
            {
                received = await ReceiveAsync(destination[done..], ct).ConfigureAwait(false);
                if (received == 0) return EndOfStream(done);
                done += received;
            }
            else
            {
                received = await ReceiveAsync(_buffer.AsMemory(), ct).ConfigureAwait(false);
                if (received == 0) return EndOfStream(done);
                _start = 0;
                _end = received;
            }
        }
        return true;
    }

    /// <summary>Fills <paramref name="destination"/>; any end of stream is an <see cref="EndOfStreamException"/> (the read is inside a frame).</summary>
    public async ValueTask ReadRequiredAsync(Memory<byte> destination, CancellationToken ct)
    {
        if (!await ReadExactAsync(destination, ct).ConfigureAwait(false) && destination.Length > 0)
            throw new EndOfStreamException("connection closed inside a frame");
    }

    /// <summary>
    /// Fills <paramref name="destination"/> like <see cref="ReadRequiredAsync(Memory{byte}, CancellationToken)"/> but never
    /// receives past its end: for a small read that a large one follows at once (a PUT value's CRC trailer before the
    /// next value), so the large read finds the buffer empty and goes straight into its destination instead of taking
    /// its first bytes out of the buffer.
    /// </summary>
    public async ValueTask ReadRequiredExactAsync(Memory<byte> destination, CancellationToken ct)
    {
        int done = Math.Min(_end - _start, destination.Length);
        _buffer.AsSpan(_start, done).CopyTo(destination.Span);
        _start += done;
        while (done < destination.Length)
        {
            int received = await ReceiveAsync(destination[done..], ct).ConfigureAwait(false);
            if (received == 0) throw new EndOfStreamException("connection closed inside a frame");
            done += received;
        }
    }

    /// <summary>
    /// Fills <paramref name="destination"/> like <see cref="ReadRequiredAsync(Memory{byte}, CancellationToken)"/>, and
    /// passes every piece it writes there to <paramref name="append"/> (with <paramref name="state"/>) right after that
    /// piece arrived: each copy out of the read-ahead buffer and each receive straight from the socket, while the bytes
    /// are still in cache. Returns the final state. Used to checksum a value as it arrives, not in a second pass.
    /// </summary>
    public async ValueTask<uint> ReadRequiredAsync(Memory<byte> destination, uint state, Func<uint, ReadOnlySpan<byte>, uint> append, CancellationToken ct)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int n;
            if (_start < _end)
            {
                n = Math.Min(_end - _start, destination.Length - done);
                _buffer.AsSpan(_start, n).CopyTo(destination.Span[done..]);
                _start += n;
            }
            else if (destination.Length >= DirectReadMin || destination.Length - done >= _buffer.Length)
            {
                n = await ReceiveAsync(destination.Slice(done, Math.Min(destination.Length - done, ChecksumPiece)), ct).ConfigureAwait(false);
                if (n == 0) throw new EndOfStreamException("connection closed inside a frame");
            }
            else
            {
                int received = await ReceiveAsync(_buffer.AsMemory(), ct).ConfigureAwait(false);
                if (received == 0) throw new EndOfStreamException("connection closed inside a frame");
                _start = 0;
                _end = received;
                continue;
            }
            state = append(state, destination.Span.Slice(done, n));
            done += n;
        }
        return state;
    }

    /// <summary>Reads and discards <paramref name="count"/> bytes (the payload of a rejected value).</summary>
    public async ValueTask SkipAsync(long count, CancellationToken ct)
    {
        while (count > 0)
        {
            if (_start == _end)
            {
                int received = await ReceiveAsync(_buffer.AsMemory(), ct).ConfigureAwait(false);
                if (received == 0) throw new EndOfStreamException("connection closed inside a payload");
                _start = 0;
                _end = received;
            }
            int n = (int)Math.Min(count, _end - _start);
            _start += n;
            count -= n;
        }
    }

    private ValueTask<int> ReceiveAsync(Memory<byte> into, CancellationToken ct) =>
        _socket is not null ? _socket.ReceiveAsync(into, SocketFlags.None, ct) : _stream!.ReadAsync(into, ct);

    private static bool EndOfStream(int done) =>
        done == 0 ? false : throw new EndOfStreamException("connection closed inside a frame");
}
