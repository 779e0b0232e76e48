using Kvasir.Protocol;

namespace Kvasir.Client;

/// <summary>
/// Per-key result of a batch call. Values 0–4 are the node's answers and are the per-key
/// <see cref="WireStatus"/> codes with the same numbers and names (Ok, NotFound, ValueTooLarge,
/// InvalidKey, OutOfMemory): <see cref="KvStatuses.FromWire"/> is a cast, and a per-key code the
/// protocol adds later is added here with the same number. Values from 16 arise in the client.
/// The Python client reports the same codes negated (−1 NotFound … −18 Unavailable).
/// </summary>
public enum KvStatus
{
    /// <summary>Success. For a GET, the value was copied whole into the destination.</summary>
    Ok = 0,
    /// <summary>The key is not stored (never written, removed, evicted or on a node that is down).</summary>
    NotFound = 1,
    /// <summary>The value is larger than the node's maximum value size or block size.</summary>
    ValueTooLarge = 2,
    /// <summary>The key is empty or longer than 512 bytes.</summary>
    InvalidKey = 3,
    /// <summary>The node could not make room: everything left is pinned, leased or being written.</summary>
    OutOfMemory = 4,
    /// <summary>The node's disk tier could not store the value (I/O error, disk full): it was not stored, the key keeps what it had.</summary>
    TierFailed = 5,
    /// <summary>PUT: the key's namespace (a prefix with a byte budget, <c>--namespace-quota</c>) would go over its budget; nothing stored. <see cref="KvStore.QuotaMessageAsync"/> names the namespace and budget.</summary>
    QuotaExceeded = 6,
    /// <summary>GET: the destination is smaller than the value; nothing useful was written to it.</summary>
    BufferTooSmall = 16,
    /// <summary>
    /// No reply within the request timeout. Over shared memory also: the copy took so long (over 0.9 s after
    /// LEASE or ALLOC) that the node had expired the lease or reservation, so a GET's bytes are not trusted
    /// (dropped) and a PUT's value was not stored.
    /// </summary>
    Timeout = 17,
    /// <summary>The node could not be reached or the connection broke before the reply.</summary>
    Unavailable = 18,
    /// <summary>The node answered with a frame-level error (see the exception or log for the reason).</summary>
    ProtocolError = 19,
    /// <summary>
    /// GET, with <see cref="KvStoreOptions.VerifyValueCrc"/>: the bytes received do not match the CRC-32C the node sent
    /// with the value (corrupted on the wire, in a buffer on the way, or in the arena), so the value is treated as a miss.
    /// The destination's contents for that key are unspecified (an allocate-on-get value is dropped); the batch's other
    /// keys and the connection are unaffected. Counted in <see cref="KvStore.ChecksumMismatches"/> and logged at Warning.
    /// The Python client reports it as CHECKSUM_MISMATCH (−20), per key, in the same cases.
    /// </summary>
    ChecksumMismatch = 20,
}

/// <summary>The node's statuses in the client's vocabulary.</summary>
public static class KvStatuses
{
    /// <summary>
    /// A per-key wire status as the <see cref="KvStatus"/> of the same number; a frame-level status
    /// (32 and up), or a per-key number this protocol version does not define, is <see cref="KvStatus.ProtocolError"/>.
    /// </summary>
    public static KvStatus FromWire(WireStatus status)
        => WireStatuses.IsPerKey(status) && Enum.IsDefined(status) ? (KvStatus)(int)status : KvStatus.ProtocolError;
}

/// <summary>Result of one key of a GET: its status and, when Ok, the value's length in bytes.</summary>
public readonly record struct KvGetResult(KvStatus Status, long Length)
{
    public bool Found => Status == KvStatus.Ok;
}

/// <summary>Options of a batch PUT.</summary>
public sealed class PutOptions
{
    /// <summary>The keys form a chain: each key's block continues the previous key's block (prefix-aware eviction keeps chains as prefixes).</summary>
    public bool Chain { get; init; }

    /// <summary>With <see cref="Chain"/>: the already stored key that the first block continues. Empty for none.</summary>
    public ReadOnlyMemory<byte> ChainParent { get; init; }

    /// <summary>In a cluster: copies of these values, overriding <see cref="KvStoreOptions.Replicas"/>. Null for the store's setting.</summary>
    public int? Replicas { get; init; }

    /// <summary>
    /// With <see cref="Chain"/> in a cluster: place every key of the batch on the nodes of the chain's root key (one
    /// request per replica) instead of each key on its own nodes. Null for <see cref="KvStoreOptions.ChainPlacement"/>.
    /// </summary>
    public bool? ChainPlacement { get; init; }

    /// <summary>
    /// With chain placement: the chain's first key, whose nodes hold the whole chain. Empty: the batch's first key,
    /// which is the root only when <see cref="ChainParent"/> is empty (a continuation must name its root, or its
    /// blocks would land on other nodes than the blocks they continue).
    /// </summary>
    public ReadOnlyMemory<byte> ChainRoot { get; init; }

    /// <summary>
    /// The CRC-32C of each value (one per key, in order), when the writer already has them: sent as they are to a node
    /// that grants VALUE_CRC instead of being computed by the client. A wrong one makes the value a miss. Null: computed.
    /// </summary>
    public IReadOnlyList<uint>? ValueCrc32C { get; init; }

    /// <summary>
    /// How long the values live: null (the default) for the node's <c>--default-ttl</c>; <see cref="TimeSpan.Zero"/> for never,
    /// even on a node with a default; else whole seconds, 1 s to <see cref="uint.MaxValue"/> s (an expired value is a miss).
    /// </summary>
    public TimeSpan? Ttl { get; init; }

    /// <summary>The TTL as the wire's u32 seconds; a one-line <see cref="ArgumentOutOfRangeException"/> outside 0 or 1 s..u32 max seconds.</summary>
    internal static uint TtlSeconds(TimeSpan ttl)
    {
        if (ttl == TimeSpan.Zero) return 0;
        double seconds = Math.Ceiling(ttl.TotalSeconds);
        if (ttl < TimeSpan.Zero || seconds > uint.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(ttl), $"TTL {ttl} is outside 1 s..{uint.MaxValue} s (0 = never expires)");
        return (uint)seconds;
    }
}

/// <summary>A call failed as a whole: bad options, authentication refused, or the node unreachable at connect.</summary>
public class KvasirException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The node refused our credentials, or could not prove it holds the same key.</summary>
public sealed class KvasirAuthException(string message) : KvasirException(message);
