using Kvasir.Net;

namespace Kvasir.Client.Internal;

/// <summary>
/// Writes one frame with as few send calls as possible. Header, metadata and small value pieces
/// are copied into a staging buffer; larger pieces, managed or native, are queued as they are.
/// Everything goes out through one <see cref="GatherSender"/> (sendmsg over many segments), so large
/// values are never copied. Cancellation may leave a frame half-written: the caller must then cut
/// the connection. Not thread-safe: the connection's send lock serialises frames.
/// </summary>
internal sealed class FrameSender(GatherSender sender)
{
    /// <summary>Pieces up to this size are copied into the staging buffer.</summary>
    public const int CoalesceLimit = 8 * 1024;

    private readonly byte[] _staging = GC.AllocateUninitializedArray<byte>(64 * 1024, pinned: true);
    private readonly GatherSender _sender = sender;
    private int _sealed;   // staging bytes already queued in _sender
    private int _staged;   // staging bytes written

    /// <summary>Room for the frame header at the start of the staging buffer; call before any Add.</summary>
    public Span<byte> BeginFrame(int headerSize)
    {
        _sealed = 0;
        _staged = headerSize;
        return _staging.AsSpan(0, headerSize);
    }

    /// <summary>Queues a piece; the caller keeps its memory unchanged until <see cref="FlushAsync"/> returns.</summary>
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
        SealStaging();
        if (_sender.Count >= GatherSender.MaxSegments - 2) await FlushAsync(ct).ConfigureAwait(false);
        _sender.Add(piece);
    }

    /// <summary>Sends everything staged and queued so far.</summary>
    public async ValueTask FlushAsync(CancellationToken ct)
    {
        SealStaging();
        await _sender.FlushAsync(ct).ConfigureAwait(false);
        _sealed = 0;
        _staged = 0;
    }

    private void SealStaging()
    {
        if (_staged > _sealed)
        {
            _sender.Add(_staging.AsMemory(_sealed, _staged - _sealed));
            _sealed = _staged;
        }
    }
}
