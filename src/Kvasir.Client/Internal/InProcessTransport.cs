using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Client.Internal;

/// <summary>
/// A node embedded in this process: calls go straight to its store, values are copied once between
/// the caller's memory and the arena. Same statuses and limits as the wire.
/// </summary>
internal sealed class InProcessTransport(CacheNode node, bool ownsNode) : IKvTransport
{
    private readonly TieredStore _store = node.Store;

    public NodeLimits Limits { get; } = new(node.Options.Store.MaxValueBytes, node.Options.Store.MaxKeyBytes,
        node.Options.MaxBatchKeys, node.Options.MaxMetaBytes, node.Options.Store.Capacity, node.NodeId);

    public KvTransportKind Kind => KvTransportKind.InProcess;

    public async Task PutAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, CancellationToken ct)
    {
        Task? previous = null;
        for (int i = start; i < end; i++)
        {
            ct.ThrowIfCancellationRequested();
            var key = batch.Keys[i].Span;
            var value = batch.Values[i];
            var status = _store.TryReserve(key, value.Length, out var reservation);
            if (status == WireStatus.Ok)
            {
                var target = reservation!.Span;
                uint crc = Crc32C.InitialState;
                int offset = 0;
                for (int p = 0; p < value.PieceCount; p++)
                {
                    var piece = value.Piece(p).Span;
                    piece.CopyTo(target[offset..]);
                    crc = Crc32C.Append(crc, piece);
                    offset += piece.Length;
                }
                var link = !chain ? null : i > start ? batch.Keys[i - 1].ToArray() : hasParent ? parent.ToArray() : null;
                var commit = _store.CommitAsync(reservation, Crc32C.Complete(crc), link, chain ? previous : null);
                if (chain) previous = commit;
                status = await commit.ConfigureAwait(false);
            }
            batch.Results[i] = StatusConvert.FromWire((status));
        }
        node.Counters.Request(Opcode.Put, end - start);
    }

    public async Task GetAsync(GetBatch batch, int start, int end, CancellationToken ct)
    {
        for (int i = start; i < end; i++)
        {
            ct.ThrowIfCancellationRequested();
            var (status, lease) = await _store.LeaseAsync(batch.Keys[i], null).ConfigureAwait(false);
            if (status != WireStatus.Ok)
            {
                batch.Results[i] = new KvGetResult(KvStatus.NotFound, 0);
                continue;
            }
            try
            {
                batch.Results[i] = CopyOut(lease!.Span, batch.Destinations[i], out batch.Allocated[i]);
            }
            finally
            {
                _store.Release(lease!);
            }
        }
        node.Counters.Request(Opcode.Get, end - start);
    }

    private static KvGetResult CopyOut(ReadOnlySpan<byte> value, ValueDestination dest, out byte[]? allocated)
    {
        allocated = null;
        if (value.Length > dest.Capacity) return new KvGetResult(KvStatus.BufferTooSmall, value.Length);
        if (dest.Allocate)
        {
            allocated = value.ToArray();
            return new KvGetResult(KvStatus.Ok, value.Length);
        }
        int offset = 0;
        for (int p = 0; p < dest.PieceCount && offset < value.Length; p++)
        {
            var piece = dest.Piece(p).Span;
            int n = Math.Min(piece.Length, value.Length - offset);
            value.Slice(offset, n).CopyTo(piece);
            offset += n;
        }
        return new KvGetResult(KvStatus.Ok, value.Length);
    }

    public async Task KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end, KvStatus[] results, CancellationToken ct)
    {
        for (int i = start; i < end; i++)
        {
            var key = keys[i];
            var status = op switch
            {
                Opcode.Exists => await _store.ExistsAsync(key).ConfigureAwait(false),
                Opcode.Remove => await _store.RemoveAsync(key).ConfigureAwait(false),
                Opcode.Pin => _store.Pin(key.Span),
                Opcode.Unpin => _store.Unpin(key.Span),
                _ => throw new ArgumentOutOfRangeException(nameof(op)),
            };
            results[i] = StatusConvert.FromWire((status));
        }
        node.Counters.Request(op, end - start);
    }

    public Task<List<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct) => Task.FromResult(node.StatsSnapshot());

    public Task PingAsync(CancellationToken ct) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (ownsNode) await node.StopAsync().ConfigureAwait(false);
    }
}
