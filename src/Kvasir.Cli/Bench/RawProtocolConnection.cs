using System.Buffers.Text;
using System.Net.Sockets;
using Kvasir.Net;

namespace Kvasir.Cli.Bench;

/// <summary>
/// One TCP connection to a text-framed peer (Redis RESP, memcached ASCII) for the benchmark: a request
/// builder whose segments go out through the node's <see cref="GatherSender"/> (value bytes straight from
/// the caller's memory), and replies read through the node's <see cref="BufferedReceiver"/> (values of at
/// least the buffer's size go straight from the socket into the caller's memory), plus a CRLF line reader.
/// </summary>
/// <remarks>
/// Failure model: any I/O failure, end of stream, protocol violation or timeout poisons the connection
/// (<see cref="Poison"/> closes the socket); a poisoned connection never talks to the peer again and the
/// targets answer every later call with errors. Not thread-safe: one operation at a time, though the
/// request of an operation is sent concurrently with reading its replies (so a long pipeline can never
/// deadlock against a peer that stops reading while its replies are unread).
/// </remarks>
internal sealed class RawProtocolConnection : IAsyncDisposable
{
    /// <summary>Values and keys up to this size are copied into the request buffer; larger ones are sent from the caller's memory.</summary>
    internal const int CoalesceLimit = 8 * 1024;

    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    private readonly Socket _socket;
    private readonly BufferedReceiver _rx;
    private readonly GatherSender _tx;
    private readonly byte[] _line;
    private readonly byte[] _crlf = new byte[2];
    private int _lineLength;

    // Request under construction: _scratch[_pending.._length) is not yet cut into a segment.
    private byte[] _scratch = new byte[16 * 1024];
    private int _length;
    private int _pending;
    private readonly List<ReadOnlyMemory<byte>> _segments = [];

    private CancellationTokenSource _timeout = new();
    private bool _broken;

    private RawProtocolConnection(Socket socket, int bufferSize)
    {
        _socket = socket;
        _rx = new BufferedReceiver(socket, bufferSize);
        _tx = new GatherSender(socket);
        _line = new byte[bufferSize];
    }

    /// <summary>Opens the connection (Nagle off). Connection failures throw: there is no target to return.</summary>
    public static async Task<RawProtocolConnection> ConnectAsync(string host, int port, CancellationToken ct, int bufferSize = 64 * 1024)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, 1024);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(host, port, ct).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new RawProtocolConnection(socket, bufferSize);
    }

    /// <summary>
    /// Bound on one whole operation (send plus all replies). Default 30 s; <see cref="Timeout.InfiniteTimeSpan"/>
    /// disables it. When it fires the connection is poisoned. Too short a bound turns slow large batches into errors.
    /// </summary>
    public TimeSpan OperationTimeout { get; set; } = DefaultTimeout;

    /// <summary>True once the connection has failed; it is never used again.</summary>
    public bool IsBroken => _broken;

    /// <summary>Marks the connection unusable and closes the socket (which also ends any pending send or receive).</summary>
    public void Poison()
    {
        _broken = true;
        _socket.Dispose();
    }

    /// <summary>True for the exceptions that mean "the peer or the wire failed", as opposed to a caller's bug.</summary>
    public static bool IsConnectionFailure(Exception e) =>
        e is SocketException or IOException or ObjectDisposedException or OperationCanceledException;

    // ---- operation bracket -------------------------------------------------------------------

    /// <summary>Starts an operation's timeout and returns the token every send and receive of it uses.</summary>
    public CancellationToken BeginOperation()
    {
        if (OperationTimeout != Timeout.InfiniteTimeSpan) _timeout.CancelAfter(OperationTimeout);
        return _timeout.Token;
    }

    /// <summary>Stops the operation's timeout and clears the request buffer.</summary>
    public void EndOperation()
    {
        if (!_timeout.TryReset())
        {
            _timeout.Dispose();
            _timeout = new CancellationTokenSource();
        }
        ClearRequest();
    }

    // ---- request building ----------------------------------------------------------------------

    public void ClearRequest()
    {
        _length = 0;
        _pending = 0;
        _segments.Clear();
    }

    /// <summary>Appends protocol bytes (commands, lengths, CRLF) to the request buffer.</summary>
    public void Write(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Reserve(bytes.Length));
        _length += bytes.Length;
    }

    public void WriteDecimal(long value)
    {
        Span<byte> span = Reserve(20);
        if (!Utf8Formatter.TryFormat(value, span, out int written)) throw new InvalidOperationException("decimal does not fit");
        _length += written;
    }

    /// <summary>
    /// Appends caller data: small data is copied into the request buffer, large data is referenced and sent
    /// from <paramref name="data"/> itself, which must stay unchanged until the operation ends.
    /// </summary>
    public void WriteData(ReadOnlyMemory<byte> data)
    {
        if (data.Length <= CoalesceLimit)
        {
            Write(data.Span);
            return;
        }
        CutPending();
        _segments.Add(data);
    }

    private Span<byte> Reserve(int count)
    {
        if (_scratch.Length - _length < count)
        {
            // Earlier segments keep referencing the old array, whose bytes no longer change.
            var bigger = new byte[Math.Max(_scratch.Length * 2, _length + count)];
            _scratch.AsSpan(_pending, _length - _pending).CopyTo(bigger.AsSpan(_pending));
            _scratch = bigger;
        }
        return _scratch.AsSpan(_length, count);
    }

    private void CutPending()
    {
        if (_length > _pending) _segments.Add(_scratch.AsMemory(_pending, _length - _pending));
        _pending = _length;
    }

    /// <summary>
    /// Sends the built request as gathered sends (one sendmsg for up to <see cref="GatherSender.MaxSegments"/>
    /// headers and values). Never throws: a failure poisons the connection and returns false, so the task may
    /// run unobserved next to the reply reader.
    /// </summary>
    public async Task<bool> SendRequestAsync(CancellationToken ct)
    {
        CutPending();
        try
        {
            foreach (var segment in _segments)
            {
                if (_tx.IsFull) await _tx.FlushAsync(ct).ConfigureAwait(false);
                _tx.Add(segment);
            }
            await _tx.FlushAsync(ct).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
            Poison();
            return false;
        }
    }

    // ---- receiving -----------------------------------------------------------------------------

    /// <summary>The line returned by the last <see cref="ReadLineAsync"/>, without its CRLF; valid until the next read.</summary>
    public ReadOnlySpan<byte> Line => _line.AsSpan(0, _lineLength);

    /// <summary>
    /// Reads one CRLF-terminated line into <see cref="Line"/>. A line longer than the read buffer, or an end of
    /// stream, is an <see cref="IOException"/>.
    /// </summary>
    public async ValueTask ReadLineAsync(CancellationToken ct)
    {
        while (true)
        {
            int at = _rx.BufferedSpan.IndexOf("\r\n"u8);
            if (at >= 0)
            {
                _rx.BufferedSpan[..at].CopyTo(_line);
                _lineLength = at;
                _rx.Consume(at + 2);
                return;
            }
            if (_rx.Buffered == _rx.Capacity) throw new IOException($"protocol: reply line longer than {_rx.Capacity} bytes");
            if (!await _rx.FillAsync(ct).ConfigureAwait(false)) throw new EndOfStreamException("connection closed while waiting for a reply line");
        }
    }

    /// <summary>Fills <paramref name="destination"/>; reads of at least the buffer's size bypass it. End of stream throws.</summary>
    public ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken ct) => _rx.ReadRequiredAsync(destination, ct);

    /// <summary>
    /// Checks a batch GET's arguments (throws on mismatched counts). False when there is nothing to send:
    /// an empty batch, or a broken connection, in which case every key is marked <see cref="IBenchTarget.Error"/>.
    /// </summary>
    public bool ReadyForGet(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations, long[] lengths)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(destinations);
        ArgumentNullException.ThrowIfNull(lengths);
        int n = keys.Count;
        if (destinations.Count != n || lengths.Length < n) throw new ArgumentException("keys, destinations and lengths differ in count");
        if (n > 0 && IsBroken) lengths.AsSpan(0, n).Fill(IBenchTarget.Error);
        return n > 0 && !IsBroken;
    }

    /// <summary>The same for a batch EXISTS: a broken connection marks every key −1.</summary>
    public bool ReadyForExists(IReadOnlyList<ReadOnlyMemory<byte>> keys, int[] present)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(present);
        int n = keys.Count;
        if (present.Length < n) throw new ArgumentException("present is shorter than keys", nameof(present));
        if (n > 0 && IsBroken) present.AsSpan(0, n).Fill(-1);
        return n > 0 && !IsBroken;
    }

    /// <summary>
    /// Reads a value of <paramref name="length"/> bytes followed by CRLF straight into
    /// <paramref name="destination"/>; a value longer than the destination is drained instead.
    /// Returns the length, or <see cref="IBenchTarget.Error"/> when it did not fit.
    /// </summary>
    public async ValueTask<long> ReadValueAsync(Memory<byte> destination, long length, CancellationToken ct)
    {
        long result = length;
        if (length > destination.Length)
        {
            await SkipAsync(length, ct).ConfigureAwait(false);
            result = IBenchTarget.Error;
        }
        else
        {
            await ReadExactAsync(destination[..(int)length], ct).ConfigureAwait(false);
        }
        await ReadCrlfAsync(ct).ConfigureAwait(false);
        return result;
    }

    /// <summary>Reads and discards <paramref name="count"/> bytes (a value that does not fit its destination).</summary>
    public ValueTask SkipAsync(long count, CancellationToken ct) => _rx.SkipAsync(count, ct);

    /// <summary>Consumes the CRLF that ends a value; anything else is a protocol violation.</summary>
    public async ValueTask ReadCrlfAsync(CancellationToken ct)
    {
        await _rx.ReadRequiredAsync(_crlf, ct).ConfigureAwait(false);
        if (_crlf[0] != '\r' || _crlf[1] != '\n') throw new IOException("protocol: value not followed by CRLF");
    }

    /// <summary>Parses a whole span as a decimal integer (optionally negative); anything else is a protocol violation.</summary>
    public static long ParseInteger(ReadOnlySpan<byte> text)
    {
        if (!Utf8Parser.TryParse(text, out long value, out int consumed) || consumed != text.Length || text.Length == 0)
            throw new IOException("protocol: malformed integer in reply");
        return value;
    }

    public ValueTask DisposeAsync()
    {
        _broken = true;
        _socket.Dispose();
        _timeout.Dispose();
        return default;
    }
}
