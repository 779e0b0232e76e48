using Kvasir.Client;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;


namespace Kvasir.Embedded;

/// <summary>
/// The <see cref="IInProcessNode"/> of a <see cref="CacheNode"/> in this process: calls go straight
/// to the node's store, and each value is copied once between the caller's memory and the node's.
/// Same statuses and limits as the wire.
/// </summary>
/// <remarks>
/// Every call this box makes into the node's storage is in this class, so the store it talks to can
/// be changed in one place. Each is awaited where it is made, so a store whose operations complete
/// asynchronously (a tier below DRAM) slots in without changing the callers.
/// </remarks>
internal sealed class InProcessNode : IInProcessNode
{
    private readonly CacheNode _node;
    private readonly bool _ownsNode;
    private readonly TieredStore _store;
    private int _disposed;

    /// <param name="node">The node; with <paramref name="ownsNode"/> it is stopped when this is disposed, else the caller keeps it.</param>
    /// <param name="ownsNode">Whether disposing this stops <paramref name="node"/>.</param>
    public InProcessNode(CacheNode node, bool ownsNode)
    {
        _node = node;
        _ownsNode = ownsNode;
        _store = node.Store;
        var options = node.Options;
        Info = new InProcessNodeInfo
        {
            NodeId = node.NodeId,
            Address = node.DataAddress,
            Capacity = options.Store.Capacity,
            MaxValueBytes = options.Store.MaxValueBytes,
            MaxKeyBytes = options.Store.MaxKeyBytes,
            MaxBatchKeys = options.MaxBatchKeys,
            MaxMetaBytes = options.MaxMetaBytes,
        };
    }

    public InProcessNodeInfo Info { get; }

    public ValueTask<KvStatus> PutAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, CancellationToken ct)
        => PutAsync(key, value, chainParent, null, 0, ct);

    public ValueTask<KvStatus> PutAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, TimeSpan ttl, CancellationToken ct)
        => PutAsync(key, value, chainParent, (TimeSpan?)ttl, 0, ct);

    public async ValueTask<byte[]> KeyRequestAsync(Opcode op, ReadOnlyMemory<byte> meta, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        EnterOrThrow();
        try { return await KeyRequests.HandleAsync(_store, op, meta, _node.Options).ConfigureAwait(false); }
        catch (ProtocolException ex) { throw new KvasirException($"{op} refused: {ex.Message}", ex); }
        finally { _node.LeaveInProcessCall(); }
    }

    /// <summary>
    /// Every call that touches the node's store runs between <see cref="CacheNode.TryEnterInProcessCall"/> and its
    /// leave, so a stop (the store disposed, another owner stopping the node) waits for its copy instead of freeing
    /// the arena under it. A call that comes after the stop began is answered Unavailable: the node is gone.
    /// </summary>
    private void EnterOrThrow()
    {
        if (!_node.TryEnterInProcessCall()) throw new KvasirException($"node {_node.NodeId} is stopped");
    }

    /// <summary>The value is kept under <paramref name="version"/> (0: the node's clock), as a PUT with VERSION over the wire.</summary>
    public async ValueTask<KvStatus> PutAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, TimeSpan? ttl, long version, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        if (!_node.TryEnterInProcessCall()) return KvStatus.Unavailable;
        try { return await PutEnteredAsync(key, value, chainParent, ttl, version).ConfigureAwait(false); }
        finally { _node.LeaveInProcessCall(); }
    }

    private async ValueTask<KvStatus> PutEnteredAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, TimeSpan? ttl, long version)
    {
        long length = 0;
        for (int p = 0; p < value.Count; p++) length += value[p].Length;
        var status = _store.TryReserve(key.Span, length, out var reservation);
        if (status != WireStatus.Ok) return KvStatuses.FromWire(status);
        reservation!.Ttl = ttl;
        uint crc = Fill(reservation!, value);
        status = await _store.CommitAsync(reservation!, crc, chainParent.IsEmpty ? null : chainParent.ToArray(), version: version).ConfigureAwait(false);
        if (status == WireStatus.Ok) _node.Counters.ValueIn(NodeTransport.InProcess, Opcode.Put, length);
        return KvStatuses.FromWire(status);
    }

    /// <summary>Copies the pieces into the reservation, in order; returns their CRC-32C.</summary>
    private static uint Fill(Reservation reservation, IReadOnlyList<ReadOnlyMemory<byte>> value)
    {
        var target = reservation.Span;
        uint crc = Crc32C.InitialState;
        int offset = 0;
        for (int p = 0; p < value.Count; p++)
        {
            var piece = value[p].Span;
            piece.CopyTo(target[offset..]);
            crc = Crc32C.Append(crc, piece);
            offset += piece.Length;
        }
        return Crc32C.Complete(crc);
    }

    public async ValueTask<KvGetResult> GetAsync(ReadOnlyMemory<byte> key, IReadOnlyList<Memory<byte>> destination, CancellationToken ct)
        => (await GetVersionedAsync(key, destination, ct).ConfigureAwait(false)).Result;

    /// <summary>The version is the copy's as a GET reply reports it over the wire (0 for a value read from the shared tier).</summary>
    public async ValueTask<(KvGetResult Result, long Version)> GetVersionedAsync(ReadOnlyMemory<byte> key, IReadOnlyList<Memory<byte>> destination, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        if (!_node.TryEnterInProcessCall()) return (new KvGetResult(KvStatus.Unavailable, 0), 0);
        try
        {
            var (status, lease) = await _store.LeaseAsync(key, null).ConfigureAwait(false);
            if (status != WireStatus.Ok) return (new KvGetResult(status == WireStatus.NotFound ? KvStatus.NotFound : KvStatuses.FromWire(status), 0), 0);
            try
            {
                var result = CopyOut(lease!.Span, destination);
                if (result.Status == KvStatus.Ok) _node.Counters.ValueOut(NodeTransport.InProcess, Opcode.Get, lease.Length);
                return (result, lease.Sequence);
            }
            finally
            {
                _store.Release(lease!);
            }
        }
        finally
        {
            _node.LeaveInProcessCall();
        }
    }

    private static KvGetResult CopyOut(ReadOnlySpan<byte> value, IReadOnlyList<Memory<byte>> destination)
    {
        long capacity = 0;
        for (int p = 0; p < destination.Count; p++) capacity += destination[p].Length;
        if (value.Length > capacity) return new KvGetResult(KvStatus.BufferTooSmall, value.Length);
        int offset = 0;
        for (int p = 0; p < destination.Count && offset < value.Length; p++)
        {
            var piece = destination[p].Span;
            int n = Math.Min(piece.Length, value.Length - offset);
            value.Slice(offset, n).CopyTo(piece);
            offset += n;
        }
        return new KvGetResult(KvStatus.Ok, value.Length);
    }

    /// <summary>The allocating GET has no status to say the node is gone: it throws <see cref="KvasirException"/> then, as a store over a closed connection does.</summary>
    public async ValueTask<byte[]?> GetAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
        => (await GetVersionedAsync(key, ct).ConfigureAwait(false)).Value;

    public async ValueTask<(byte[]? Value, long Version)> GetVersionedAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        EnterOrThrow();
        try
        {
            var (status, lease) = await _store.LeaseAsync(key, null).ConfigureAwait(false);
            if (status != WireStatus.Ok) return (null, 0);
            try
            {
                _node.Counters.ValueOut(NodeTransport.InProcess, Opcode.Get, lease!.Length);
                return (lease.Span.ToArray(), lease.Sequence);
            }
            finally
            {
                _store.Release(lease!);
            }
        }
        finally
        {
            _node.LeaveInProcessCall();
        }
    }

    public ValueTask<KvStatus> ExistsAsync(ReadOnlyMemory<byte> key, CancellationToken ct) => KeyCallAsync(key, static (s, k) => s.ExistsAsync(k));

    public ValueTask<KvStatus> RemoveAsync(ReadOnlyMemory<byte> key, CancellationToken ct) => KeyCallAsync(key, static (s, k) => s.RemoveAsync(k));

    public ValueTask<KvStatus> PinAsync(ReadOnlyMemory<byte> key, CancellationToken ct) => KeyCallAsync(key, static (s, k) => new(s.Pin(k.Span)));

    public ValueTask<KvStatus> UnpinAsync(ReadOnlyMemory<byte> key, CancellationToken ct) => KeyCallAsync(key, static (s, k) => new(s.Unpin(k.Span)));

    /// <summary>One key's EXISTS, REMOVE, PIN or UNPIN inside the node's in-process gate; Unavailable once it is stopping.</summary>
    private async ValueTask<KvStatus> KeyCallAsync(ReadOnlyMemory<byte> key, Func<TieredStore, ReadOnlyMemory<byte>, ValueTask<WireStatus>> call)
    {
        if (!_node.TryEnterInProcessCall()) return KvStatus.Unavailable;
        try { return KvStatuses.FromWire(await call(_store, key).ConfigureAwait(false)); }
        finally { _node.LeaveInProcessCall(); }
    }

    /// <summary>Starts the DRAM index loads of the batch's next keys (<see cref="TieredStore.PrefetchIndex(IReadOnlyList{ReadOnlyMemory{byte}}, int, int)"/>): a hint, no outcome changes.</summary>
    public int PrefetchKeys(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end) => _store.PrefetchIndex(keys, start, end);

    public void CountRequest(Opcode op, int keys) => _node.Counters.Request(op, keys);

    public ValueTask<IReadOnlyList<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct)
    {
        EnterOrThrow();
        try { return new(_node.StatsSnapshot()); }
        finally { _node.LeaveInProcessCall(); }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_ownsNode) await _node.StopAsync().ConfigureAwait(false);
    }
}
