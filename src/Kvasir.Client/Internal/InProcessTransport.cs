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
    private readonly KvArenaStore _store = node.Store;

    public NodeLimits Limits { get; } = new(node.Options.Store.MaxValueBytes, node.Options.Store.MaxKeyBytes,
        node.Options.MaxBatchKeys, node.Options.MaxMetaBytes, node.Options.Store.Capacity, node.NodeId);

    public KvTransportKind Kind => KvTransportKind.InProcess;

    public Task PutAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, CancellationToken ct)
    {
        for (int i = start; i < end; i++)
        {
            ct.ThrowIfCancellationRequested();
            var key = batch.Keys[i].Span;
            var value = batch.Values[i];
            var status = _store.TryReserve(key, value.Length, out var reservation);
            if (status == StoreStatus.Ok)
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
                var link = !chain ? default : i > start ? batch.Keys[i - 1].Span : hasParent ? parent.Span : default;
                status = _store.Commit(reservation, Crc32C.Complete(crc), link);
            }
            batch.Results[i] = KvStatuses.FromWire(StatusMap.ToWire(status));
        }
        node.Counters.Request(Opcode.Put, end - start);
        return Task.CompletedTask;
    }

    public Task GetAsync(GetBatch batch, int start, int end, CancellationToken ct)
    {
        for (int i = start; i < end; i++)
        {
            ct.ThrowIfCancellationRequested();
            if (_store.TryLease(batch.Keys[i].Span, null, out var lease) != StoreStatus.Ok)
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
        return Task.CompletedTask;
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

    public Task KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end, KvStatus[] results, CancellationToken ct)
    {
        for (int i = start; i < end; i++)
        {
            var key = keys[i].Span;
            var status = op switch
            {
                Opcode.Exists => _store.Exists(key) ? StoreStatus.Ok : StoreStatus.NotFound,
                Opcode.Remove => _store.Remove(key),
                Opcode.Pin => _store.Pin(key),
                Opcode.Unpin => _store.Unpin(key),
                _ => throw new ArgumentOutOfRangeException(nameof(op)),
            };
            results[i] = KvStatuses.FromWire(StatusMap.ToWire(status));
        }
        node.Counters.Request(op, end - start);
        return Task.CompletedTask;
    }

    public Task<List<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct) => Task.FromResult(node.StatsSnapshot());

    public Task PingAsync(CancellationToken ct) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (ownsNode) await node.StopAsync().ConfigureAwait(false);
    }
}
