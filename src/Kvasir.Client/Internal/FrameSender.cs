using System.Buffers.Binary;
using Kvasir.Net;
using Kvasir.Protocol;

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

    /// <summary>
    /// A value sent with its CRC_TRAILER is checksummed and sent in runs of this many bytes: each run is read for the
    /// CRC and then copied by the kernel while it is still in this core's cache (2 MiB L2 on the machine measured).
    /// Measured against 64–512 KiB (docs/benchmarks.md § CRC after the value): smaller runs cost more sends and more
    /// wake-ups of the receiver than the cache saves; much larger ones no longer fit the cache.
    /// </summary>
    public const int ChecksumRun = 1 << 20;

    private readonly byte[] _staging = GC.AllocateUninitializedArray<byte>(64 * 1024, pinned: true);
    private readonly GatherSender _sender = sender;
    private int _sealed;   // staging bytes already queued in _sender
    private int _staged;   // staging bytes written
    private long _unsent;  // bytes checksummed and queued since the last flush

    /// <summary>Room for the frame header at the start of the staging buffer; call before any Add.</summary>
    public Span<byte> BeginFrame(int headerSize)
    {
        _unsent = 0;
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

    /// <summary>
    /// Queues a piece of a value whose CRC-32C goes after it (CRC_TRAILER), appending it to <paramref name="crcState"/>
    /// run by run; whenever a run's worth is queued it is sent at once, so the bytes the CRC just read are copied to the
    /// socket from cache instead of being read from memory a second time. Returns the updated state.
    /// </summary>
    public async ValueTask<uint> AddChecksummedAsync(ReadOnlyMemory<byte> piece, uint crcState, CancellationToken ct)
    {
        for (int offset = 0; offset < piece.Length;)
        {
            int n = (int)Math.Min(piece.Length - offset, ChecksumRun - _unsent);
            var run = piece.Slice(offset, n);
            crcState = Crc32C.Append(crcState, run.Span);
            await AddAsync(run, ct).ConfigureAwait(false);
            offset += n;
            _unsent += n;
            if (_unsent >= ChecksumRun) await FlushAsync(ct).ConfigureAwait(false);
        }
        return crcState;
    }

    /// <summary>Stages a little-endian u32 (a CRC_TRAILER).</summary>
    public async ValueTask AddU32Async(uint value, CancellationToken ct)
    {
        if (_staging.Length - _staged < sizeof(uint)) await FlushAsync(ct).ConfigureAwait(false);
        BinaryPrimitives.WriteUInt32LittleEndian(_staging.AsSpan(_staged), value);
        _staged += sizeof(uint);
    }

    /// <summary>Sends everything staged and queued so far.</summary>
    public async ValueTask FlushAsync(CancellationToken ct)
    {
        SealStaging();
        _unsent = 0;
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
