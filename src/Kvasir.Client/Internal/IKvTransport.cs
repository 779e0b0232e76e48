using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// How a <see cref="KvStore"/> reaches one node. Each call serves the keys [start, end) of a batch
/// that the store has already checked against <see cref="Limits"/>, and writes their results in
/// place. Transport failures become per-key statuses, never exceptions; only cancellation throws.
/// </summary>
internal interface IKvTransport : IAsyncDisposable
{
    NodeLimits Limits { get; }

    /// <summary>What this transport is (never <see cref="KvTransportKind.Auto"/>).</summary>
    KvTransportKind Kind { get; }

    Task PutAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, CancellationToken ct);

    Task GetAsync(GetBatch batch, int start, int end, CancellationToken ct);

    /// <summary>EXISTS, REMOVE, PIN, UNPIN.</summary>
    Task KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end, KvStatus[] results, CancellationToken ct);

    Task<List<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct);

    Task PingAsync(CancellationToken ct);

    /// <summary>GET hits whose bytes did not match their node's CRC-32C (<see cref="KvStoreOptions.VerifyValueCrc"/>).</summary>
    long ChecksumMismatches { get; }

    /// <summary>True when the node stores a PUT's time to live (HELLO feature <see cref="ProtocolFeatures.Ttl"/>).</summary>
    bool SupportsTtl { get; }

    /// <summary>SCAN, INFO or REMOVE_PREFIX: sends the request metadata, returns the reply metadata; throws <see cref="KvasirException"/> with the reason when it fails.</summary>
    Task<byte[]> KeyRequestAsync(Opcode op, byte[] meta, CancellationToken ct);
}
