using Kvasir.Protocol;

namespace Kvasir.Client;

/// <summary>
/// A node in this process that a <see cref="KvStore"/> reaches without a socket
/// (<see cref="KvStore.Open"/>, or as a cluster member through
/// <see cref="KvStore.ConnectAsync(KvStoreOptions, IInProcessNode, CancellationToken)"/>).
/// Kvasir.Embedded implements it over a cache node.
/// </summary>
/// <remarks>
/// Contract for implementers: the store calls only with keys of 1 to <see cref="InProcessNodeInfo.MaxKeyBytes"/>
/// bytes and PUT values of at most <see cref="InProcessNodeInfo.MaxValueBytes"/> (it answers the others itself),
/// from many threads at once. Per-key outcomes are statuses with the node's wire meanings (Ok, NotFound,
/// ValueTooLarge, InvalidKey, OutOfMemory), never exceptions; only cancellation throws. A node that has stopped (or is
/// stopping) answers Unavailable, and the calls without a per-key status (the allocating GET, stats, key requests) throw
/// <see cref="KvasirException"/>; a call already under way when the stop begins completes first. The caller's memory
/// is used only until the returned task completes. A GET is strict: the whole value or a miss.
/// The store that was handed a node disposes it once, when the store is disposed.
/// </remarks>
public interface IInProcessNode : IAsyncDisposable
{
    /// <summary>Identity, address and limits; read when a store is opened over the node, and must not change afterwards.</summary>
    InProcessNodeInfo Info { get; }

    /// <summary>
    /// Stores <paramref name="key"/> with the concatenation of <paramref name="value"/>'s pieces.
    /// <paramref name="chainParent"/> names the already stored key whose block this one continues
    /// (prefix-aware eviction); empty for none.
    /// </summary>
    ValueTask<KvStatus> PutAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, CancellationToken ct);

    /// <summary>
    /// Copies the key's whole value over <paramref name="destination"/>'s pieces, filled in order: Ok with the
    /// value's length (bytes past it untouched), NotFound, or <see cref="KvStatus.BufferTooSmall"/> with the
    /// value's length when the pieces hold less (nothing written).
    /// </summary>
    ValueTask<KvGetResult> GetAsync(ReadOnlyMemory<byte> key, IReadOnlyList<Memory<byte>> destination, CancellationToken ct);

    /// <summary>A copy of the key's value in a new array; null when the node does not have it.</summary>
    ValueTask<byte[]?> GetAsync(ReadOnlyMemory<byte> key, CancellationToken ct);

    /// <summary>Ok when the key is stored, NotFound when not.</summary>
    ValueTask<KvStatus> ExistsAsync(ReadOnlyMemory<byte> key, CancellationToken ct);

    /// <summary>Removes the key (Ok) or answers NotFound; readers in flight finish with the old bytes.</summary>
    ValueTask<KvStatus> RemoveAsync(ReadOnlyMemory<byte> key, CancellationToken ct);

    /// <summary>Pins the key against eviction (pins nest): Ok, or NotFound.</summary>
    ValueTask<KvStatus> PinAsync(ReadOnlyMemory<byte> key, CancellationToken ct);

    /// <summary>Drops one pin: Ok, or NotFound.</summary>
    ValueTask<KvStatus> UnpinAsync(ReadOnlyMemory<byte> key, CancellationToken ct);

    /// <summary>
    /// Records one batch of <paramref name="keys"/> keys served through this interface under
    /// <paramref name="op"/> (PUT, GET, EXISTS, REMOVE, PIN, UNPIN), so the node's request counters
    /// count it as one request, as they count a wire request.
    /// </summary>
    void CountRequest(Opcode op, int keys);

    /// <summary>The node's counters, named as in a STATS reply.</summary>
    ValueTask<IReadOnlyList<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct);

    /// <summary>
    /// As <see cref="PutAsync(ReadOnlyMemory{byte}, IReadOnlyList{ReadOnlyMemory{byte}}, ReadOnlyMemory{byte}, CancellationToken)"/>,
    /// expiring after <paramref name="ttl"/> (<see cref="TimeSpan.Zero"/>: never). A node without expiry keeps the default, which
    /// refuses with <see cref="NotSupportedException"/> naming what is missing.
    /// </summary>
    ValueTask<KvStatus> PutAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, TimeSpan ttl, CancellationToken ct)
        => throw new NotSupportedException($"{GetType().Name} does not store a time to live; put without one");

    /// <summary>
    /// As <see cref="PutAsync(ReadOnlyMemory{byte}, IReadOnlyList{ReadOnlyMemory{byte}}, ReadOnlyMemory{byte}, CancellationToken)"/>
    /// (with <paramref name="ttl"/> when not null), storing the value under <paramref name="version"/>, a replica version
    /// (docs/cluster.md § Versions; 0: the node's clock): a version older than the key's newest is acknowledged (Ok) and not
    /// stored. A cluster store with replica versions calls it. A node without versions keeps the default, which stores
    /// the value under its own clock; its copies then report version 0 and never outvote a versioned copy.
    /// </summary>
    ValueTask<KvStatus> PutAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, TimeSpan? ttl, long version, CancellationToken ct)
        => ttl is { } t ? PutAsync(key, value, chainParent, t, ct) : PutAsync(key, value, chainParent, ct);

    /// <summary>
    /// As <see cref="GetAsync(ReadOnlyMemory{byte}, IReadOnlyList{Memory{byte}}, CancellationToken)"/>, with the version of
    /// the copy read (0 when the node keeps none: the default).
    /// </summary>
    async ValueTask<(KvGetResult Result, long Version)> GetVersionedAsync(ReadOnlyMemory<byte> key, IReadOnlyList<Memory<byte>> destination, CancellationToken ct)
        => (await GetAsync(key, destination, ct).ConfigureAwait(false), 0);

    /// <summary>As <see cref="GetAsync(ReadOnlyMemory{byte}, CancellationToken)"/>, with the version of the copy read (0 when the node keeps none: the default).</summary>
    async ValueTask<(byte[]? Value, long Version)> GetVersionedAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
        => (await GetAsync(key, ct).ConfigureAwait(false), 0);

    /// <summary>
    /// A hint before a batch's per-key calls: the node may start loading what looking up <paramref name="keys"/>[<paramref name="start"/>..<paramref name="end"/>)
    /// will read, so the batch's memory misses overlap. Returns the index up to which it did (call again when the batch reaches it);
    /// the default does nothing and returns <paramref name="end"/>. Only timing may change, never an outcome.
    /// </summary>
    int PrefetchKeys(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end) => end;

    /// <summary>
    /// SCAN, INFO or REMOVE_PREFIX with wire request metadata; returns the wire reply metadata (docs/protocol.md). A node that does
    /// not manage keys keeps the default, which refuses with <see cref="NotSupportedException"/>.
    /// </summary>
    ValueTask<byte[]> KeyRequestAsync(Opcode op, ReadOnlyMemory<byte> meta, CancellationToken ct)
        => throw new NotSupportedException($"{GetType().Name} does not answer {op}");
}

/// <summary>What a store needs to know about an <see cref="IInProcessNode"/>.</summary>
public sealed class InProcessNodeInfo
{
    /// <summary>The node's id: its placement identity in a cluster.</summary>
    public required string NodeId { get; init; }

    /// <summary>
    /// "host:port" where other processes reach the node; in a cluster without a registry it is the
    /// node's entry in the membership. A node that listens nowhere may give any placeholder.
    /// </summary>
    public required string Address { get; init; }

    /// <summary>The node's memory in bytes (reported as its capacity).</summary>
    public required long Capacity { get; init; }

    /// <summary>Largest value the node stores, in bytes; larger PUTs are answered ValueTooLarge without calling the node.</summary>
    public required long MaxValueBytes { get; init; }

    /// <summary>Longest key in bytes. Default 512 (the wire's limit); with no wire in between a node may accept longer ones.</summary>
    public int MaxKeyBytes { get; init; } = ProtocolLimits.MaxKeyBytes;

    /// <summary>Keys per batch the store hands over before splitting, as a wire node's batch limit. Default 8192.</summary>
    public int MaxBatchKeys { get; init; } = ProtocolLimits.DefaultMaxBatchKeys;

    /// <summary>Metadata bytes per batch before splitting, as a wire node's limit. Default 8 MiB.</summary>
    public int MaxMetaBytes { get; init; } = ProtocolLimits.DefaultMaxMetaBytes;
}
