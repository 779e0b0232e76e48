using Kvasir.Net;
using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// A request waiting for its reply. Exactly one party owns it at a time: the connection's reader
/// claims it (<see cref="TryBeginReceive"/>) before it writes into caller buffers, or the caller
/// abandons it (<see cref="TryAbandon"/>) on timeout/cancellation, after which the reader drains
/// the reply without touching the caller's memory. Whoever loses must wait for the winner.
/// </summary>
internal abstract class PendingRequest
{
    private const int Waiting = 0, Receiving = 1, Done = 2, Abandoned = 3;
    private readonly TaskCompletionSource _done;
    private int _state;

    /// <param name="inline">
    /// The caller's continuation runs on the thread that completes the request (the connection's reader), not through
    /// the thread pool: <see cref="KvStoreOptions.InlineCompletions"/>.
    /// </param>
    protected PendingRequest(bool inline = false) =>
        _done = new(inline ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously);

    public Task Completion => _done.Task;

    /// <summary>The node's frame-level error, when it sent one.</summary>
    public (WireStatus Status, string Message)? FrameError { get; private set; }

    public bool TryBeginReceive() => Interlocked.CompareExchange(ref _state, Receiving, Waiting) == Waiting;

    public bool TryAbandon() => Interlocked.CompareExchange(ref _state, Abandoned, Waiting) == Waiting;

    /// <summary>True once the reply was fully handled or the request failed.</summary>
    public bool IsDone => Volatile.Read(ref _state) == Done;

    /// <summary>
    /// Sets every key's status after the caller gave up on the request. Only valid once the reader can
    /// no longer touch it: after a successful <see cref="TryAbandon"/>, or after <see cref="Completion"/>.
    /// </summary>
    public void MarkAll(KvStatus status) => FailAll(status);

    /// <summary>Reads the reply's payload (exactly <c>header.PayloadLength</c> bytes) into the caller's buffers.</summary>
    public abstract ValueTask ReceiveAsync(FrameHeader header, ReadOnlyMemory<byte> meta, BufferedReceiver rx, CancellationToken ct);

    /// <summary>Marks every key of the request with <paramref name="status"/>.</summary>
    protected abstract void FailAll(KvStatus status);

    public void Complete()
    {
        Volatile.Write(ref _state, Done);
        _done.TrySetResult();
    }

    /// <summary>Fails the request unless it already completed. Safe from any thread once the reader no longer touches it.</summary>
    public void Fail(KvStatus status, (WireStatus, string)? frameError = null)
    {
        int state = Interlocked.Exchange(ref _state, Done);
        if (state == Done) return;
        FrameError = frameError;
        if (state != Abandoned) FailAll(status);
        _done.TrySetResult();
    }
}

/// <summary>Replies whose metadata is a status per key (PUT, EXISTS, REMOVE, PIN, UNPIN).</summary>
internal sealed class StatusListRequest(KvStatus[] results, int start, int count, bool inline = false) : PendingRequest(inline)
{
    public override ValueTask ReceiveAsync(FrameHeader header, ReadOnlyMemory<byte> meta, BufferedReceiver rx, CancellationToken ct)
    {
        var statuses = StatusListReply.Read(meta.Span, count);
        for (int i = 0; i < count; i++) results[start + i] = KvStatuses.FromWire(statuses[i]);
        return ValueTask.CompletedTask;
    }

    protected override void FailAll(KvStatus status) => Array.Fill(results, status, start, count);
}

/// <summary>
/// A GET: each hit's bytes go straight from the socket into the caller's destination pieces. With
/// <paramref name="check"/> each hit is checksummed piece by piece as it arrives and compared with the CRC its node sent: a
/// mismatch is <see cref="KvStatus.ChecksumMismatch"/> for that key alone (its bytes were read in full, so the reply's
/// other values and the connection are unaffected).
/// </summary>
internal sealed class GetRequest(GetBatch batch, int start, int count, bool inline = false, ValueCheck? check = null, string node = "")
    : PendingRequest(inline)
{
    /// <summary>The connection it is sent on was granted value versions: reply entries end with a version.</summary>
    public bool Versioned { get; set; }

    public override async ValueTask ReceiveAsync(FrameHeader header, ReadOnlyMemory<byte> meta, BufferedReceiver rx, CancellationToken ct)
    {
        var entries = GetReply.Read(meta.Span, count, header.PayloadLength, Versioned);
        bool verify = check is { Enabled: true };
        for (int i = 0; i < count; i++)
        {
            var e = entries[i];
            int k = start + i;
            if (e.Status != WireStatus.Ok)
            {
                batch.Results[k] = new KvGetResult(KvStatuses.FromWire(e.Status), 0);
                continue;
            }
            batch.Versions[k] = e.Version;
            var dest = batch.Destinations[k];
            if (e.Length > dest.Capacity)
            {
                await rx.SkipAsync(e.Length, ct).ConfigureAwait(false);
                batch.Results[k] = new KvGetResult(KvStatus.BufferTooSmall, e.Length);
                continue;
            }
            uint crc = Crc32C.InitialState;
            if (dest.Allocate)
            {
                var value = new byte[e.Length];
                if (verify) crc = await rx.ReadRequiredAsync(value, crc, ValueCheck.Append, ct).ConfigureAwait(false);
                else await rx.ReadRequiredAsync(value, ct).ConfigureAwait(false);
                batch.Allocated[k] = value;
            }
            else
            {
                long left = e.Length;
                for (int p = 0; p < dest.PieceCount && left > 0; p++)
                {
                    var piece = dest.Piece(p);
                    int n = (int)Math.Min(piece.Length, left);
                    if (verify) crc = await rx.ReadRequiredAsync(piece[..n], crc, ValueCheck.Append, ct).ConfigureAwait(false);
                    else await rx.ReadRequiredAsync(piece[..n], ct).ConfigureAwait(false);
                    left -= n;
                }
            }
            if (verify && !check!.Matches(crc, e.Crc32C, batch.Keys[k].Span, e.Length, node, KvTransportKind.Tcp))
            {
                batch.Results[k] = new KvGetResult(KvStatus.ChecksumMismatch, 0);
                batch.Allocated[k] = null;
                continue;
            }
            batch.Results[k] = new KvGetResult(KvStatus.Ok, e.Length);
        }
    }

    protected override void FailAll(KvStatus status)
    {
        for (int i = start; i < start + count; i++) batch.Results[i] = new KvGetResult(status, 0);
    }
}

/// <summary>HELLO, AUTH, PING, STATS: the metadata is copied out for the caller to parse.</summary>
internal sealed class MetaRequest : PendingRequest
{
    public byte[] Meta { get; private set; } = [];
    public KvStatus Status { get; private set; } = KvStatus.Ok;

    public override ValueTask ReceiveAsync(FrameHeader header, ReadOnlyMemory<byte> meta, BufferedReceiver rx, CancellationToken ct)
    {
        Meta = meta.ToArray();
        return ValueTask.CompletedTask;
    }

    protected override void FailAll(KvStatus status) => Status = status;
}
