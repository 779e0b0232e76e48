using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Kvasir.Client.Internal;

/// <summary>
/// Writes one frame with as few send calls as possible. Header, metadata and small value pieces
/// are copied into a staging buffer; larger pieces backed by managed arrays join a gather list
/// that goes out in one sendmsg (at most <see cref="MaxSegments"/> segments per call); pieces in
/// native memory are sent on their own. Large values are never copied. Not thread-safe: the
/// connection's send lock serialises frames.
/// </summary>
internal sealed class FrameSender(Socket socket, Action abort)
{
    /// <summary>Pieces up to this size are copied into the staging buffer.</summary>
    public const int CoalesceLimit = 8 * 1024;

    /// <summary>Segments per sendmsg; Linux allows 1024 iovecs.</summary>
    public const int MaxSegments = 512;

    private readonly byte[] _staging = GC.AllocateUninitializedArray<byte>(64 * 1024);
    private readonly List<ArraySegment<byte>> _segments = new(MaxSegments);
    private int _sealed;   // staging bytes already in _segments
    private int _staged;   // staging bytes written

    /// <summary>Room for the frame header at the start of the staging buffer; call before any Add.</summary>
    public Span<byte> BeginFrame(int headerSize)
    {
        _segments.Clear();
        _sealed = 0;
        _staged = headerSize;
        return _staging.AsSpan(0, headerSize);
    }

    public async ValueTask AddAsync(ReadOnlyMemory<byte> piece, CancellationToken ct)
    {
        if (piece.IsEmpty) return;
        if (piece.Length <= CoalesceLimit)
        {
            if (piece.Length > _staging.Length - _staged) await FlushAsync(ct).ConfigureAwait(false);
            piece.Span.CopyTo(_staging.AsSpan(_staged));
            _staged += piece.Length;
            return;
        }
        if (MemoryMarshal.TryGetArray(piece, out var array))
        {
            SealStaging();
            _segments.Add(array);
            if (_segments.Count >= MaxSegments - 1) await FlushAsync(ct).ConfigureAwait(false);
            return;
        }
        await FlushAsync(ct).ConfigureAwait(false);
        await socket.SendAsync(piece, SocketFlags.None, ct).ConfigureAwait(false);
    }

    /// <summary>Sends everything staged and gathered so far.</summary>
    public async ValueTask FlushAsync(CancellationToken ct)
    {
        SealStaging();
        if (_segments.Count == 0) return;
        // The gather overload takes no token: cancelling cuts the connection, which fails the send
        // (the frame is half-written by then, so the connection is unusable anyway).
        using (ct.Register(abort))
        {
            if (_segments.Count == 1)
                await socket.SendAsync(_segments[0], SocketFlags.None).ConfigureAwait(false);
            else
                await socket.SendAsync(_segments, SocketFlags.None).ConfigureAwait(false);
        }
        ct.ThrowIfCancellationRequested();
        _segments.Clear();
        _sealed = 0;
        _staged = 0;
    }

    private void SealStaging()
    {
        if (_staged > _sealed)
        {
            _segments.Add(new ArraySegment<byte>(_staging, _sealed, _staged - _sealed));
            _sealed = _staged;
        }
    }
}
