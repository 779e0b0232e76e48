namespace Kvasir.Transfer.Internal;

/// <summary>
/// Reads a lane's frames with blocking calls: headers and metadata through a small read-ahead buffer (one recv
/// serves many small replies), payloads straight into their place in registered memory with one
/// MSG_WAITALL recv once the buffered bytes are used up. The buffer is small (8 KiB) so that the part of a
/// payload that arrives with its header and is copied out of it stays a small fraction of a slice. One reader
/// per lane: the handshake, then the lane's receiver thread.
/// </summary>
internal sealed unsafe class LaneReader(LaneSocket socket)
{
    private const int BufferBytes = 8 * 1024;

    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(BufferBytes, pinned: true);
    private int _start;
    private int _end;

    public LaneSocket Socket { get; } = socket;

    /// <summary>Fills <paramref name="destination"/>; false on a clean end of stream before its first byte, <see cref="EndOfStreamException"/> part-way.</summary>
    public bool ReadExact(Span<byte> destination)
    {
        fixed (byte* d = destination) return ReadExact(d, destination.Length);
    }

    /// <summary>Fills <paramref name="destination"/>; any end of stream is an <see cref="EndOfStreamException"/> (the read is inside a frame).</summary>
    public void ReadRequired(Span<byte> destination)
    {
        if (!ReadExact(destination) && destination.Length > 0) throw new EndOfStreamException("connection closed inside a frame");
    }

    /// <summary>Fills [<paramref name="destination"/>, +<paramref name="length"/>) (registered memory) inside a frame.</summary>
    public void ReadRequired(nint destination, int length)
    {
        if (!ReadExact((byte*)destination, length) && length > 0) throw new EndOfStreamException("connection closed inside a frame");
    }

    /// <summary>
    /// Copies the next <paramref name="destination"/>.Length bytes of the stream into it without consuming them, if they
    /// are buffered or can be received now without blocking; false otherwise (nothing is lost: what came stays buffered).
    /// At most the buffer's size.
    /// </summary>
    public bool TryPeek(Span<byte> destination)
    {
        int have = _end - _start;
        if (have < destination.Length)
        {
            if (_start > 0)
            {
                _buffer.AsSpan(_start, have).CopyTo(_buffer);
                _start = 0;
                _end = have;
            }
            fixed (byte* b = _buffer)
            {
                int received = Socket.TryReceive(b + _end, _buffer.Length - _end);
                if (received <= 0) return false;   // nothing there now, or the end of the stream (the next read sees it)
                _end += received;
            }
            if (_end - _start < destination.Length) return false;
        }
        _buffer.AsSpan(_start, destination.Length).CopyTo(destination);
        return true;
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes (the payload of a refused slice).</summary>
    public void Skip(long count)
    {
        while (count > 0)
        {
            if (_start == _end && !Fill()) throw new EndOfStreamException("connection closed inside a payload");
            int n = (int)Math.Min(count, _end - _start);
            _start += n;
            count -= n;
        }
    }

    private bool ReadExact(byte* destination, int length)
    {
        int done = Math.Min(length, _end - _start);
        if (done > 0)
        {
            new ReadOnlySpan<byte>(_buffer, _start, done).CopyTo(new Span<byte>(destination, done));
            _start += done;
        }
        if (done == length) return true;
        int want = length - done;
        if (want >= _buffer.Length)
        {
            int received = Socket.Receive(destination + done, want, waitAll: true);
            if (received == want) return true;
            return done + received == 0 ? false : throw new EndOfStreamException("connection closed inside a frame");
        }
        while (done < length)
        {
            if (!Fill()) return done == 0 ? false : throw new EndOfStreamException("connection closed inside a frame");
            int n = Math.Min(_end - _start, length - done);
            new ReadOnlySpan<byte>(_buffer, _start, n).CopyTo(new Span<byte>(destination + done, n));
            _start += n;
            done += n;
        }
        return true;
    }

    /// <summary>Receives whatever is there into the empty buffer; false at the end of the stream.</summary>
    private bool Fill()
    {
        fixed (byte* b = _buffer)
        {
            int received = Socket.Receive(b, _buffer.Length, waitAll: false);
            _start = 0;
            _end = received;
            return received > 0;
        }
    }
}
