namespace Kvasir.Protocol;

/// <summary>Operation codes of wire protocol v1. A reply carries the opcode of its request.</summary>
public enum Opcode : byte
{
    Hello = 0x01,
    Auth = 0x02,
    Ping = 0x03,
    Put = 0x10,
    Get = 0x11,
    Exists = 0x12,
    Remove = 0x13,
    Pin = 0x14,
    Unpin = 0x15,
    /// <summary>Lists keys by prefix, a bounded page at a time, resumed from a cursor.</summary>
    Scan = 0x16,
    /// <summary>Per-key size, tier, age, time to live, pins, leases and namespace.</summary>
    Info = 0x17,
    /// <summary>Removes every key that starts with a prefix (an empty prefix: every key).</summary>
    RemovePrefix = 0x18,
    Stats = 0x20,
    /// <summary>Shared-memory transport: where the arena file is (same-host clients only).</summary>
    ShmInfo = 0x30,
    /// <summary>Shared-memory GET: lease each value and return its arena offset.</summary>
    Lease = 0x31,
    /// <summary>Ends leases taken with LEASE.</summary>
    Release = 0x32,
    /// <summary>Shared-memory PUT, step 1: reserve arena space per key and return its offset.</summary>
    Alloc = 0x33,
    /// <summary>Shared-memory PUT, step 2: publish reservations the client has filled.</summary>
    Commit = 0x34,
}

/// <summary>Header flag bits. Unknown bits in a request are a <see cref="WireStatus.BadFrame"/>.</summary>
[Flags]
public enum FrameFlags : ushort
{
    None = 0,
    /// <summary>PUT: the keys form a chain, each key's block continues the previous key's block.</summary>
    Chain = 0x0001,
    /// <summary>PUT with <see cref="Chain"/>: the metadata starts with the key that the first block continues.</summary>
    ChainParent = 0x0002,
    /// <summary>
    /// PUT, with feature <see cref="ProtocolFeatures.ValueCrc"/> granted: every entry ends with the CRC-32C the writer
    /// computed over its value (u32), which the node stores instead of computing it.
    /// </summary>
    ValueCrc = 0x0004,
    /// <summary>PUT (feature <see cref="ProtocolFeatures.Ttl"/>): the metadata ends with a u32 time to live in seconds for every entry.</summary>
    Ttl = 0x0008,
    /// <summary>PUT, on a connection granted <see cref="ValueVersions.Feature"/>: every entry ends with the value's version (u64).</summary>
    Version = 0x0010,
    /// <summary>
    /// ALLOC, with feature <see cref="ProtocolFeatures.ArenaProof"/> granted: the metadata ends with a proof that the client
    /// read the arena file (<see cref="ArenaProof"/>); the node then hands out the space without zeroing it.
    /// </summary>
    Mapped = 0x0020,
    /// <summary>COMMIT, with feature <see cref="ProtocolFeatures.ArenaProof"/> granted: after the ids, one writer's CRC-32C (u32) per id.</summary>
    CommitCrc = 0x0040,
    /// <summary>
    /// PUT, with feature <see cref="ProtocolFeatures.CrcTrailer"/> granted: every value in the payload is followed by the
    /// CRC-32C the writer computed over it (u32), stored as a <see cref="ValueCrc"/> writer's CRC. The writer checksums
    /// each value as it sends it, so its bytes are read from memory once. Never together with <see cref="ValueCrc"/>.
    /// </summary>
    CrcTrailer = 0x0080,
    /// <summary>
    /// PUT with <see cref="ChainParent"/>, with feature <see cref="ProtocolFeatures.LateParent"/> granted: the parent may
    /// not be stored yet (a striped chain's run, whose parent is the last key of a run still in flight on another
    /// connection). If it is absent when the first entry is published, the node links that entry to it when it is
    /// published within <see cref="ProtocolLimits.LateParentWindow"/>.
    /// </summary>
    ParentFollows = 0x0100,
    /// <summary>Set on every frame sent by the node.</summary>
    Reply = 0x8000,
}

/// <summary>Helpers over <see cref="Opcode"/>.</summary>
public static class Opcodes
{
    /// <summary>True for the opcodes whose request metadata is a key batch.</summary>
    public static bool IsKeyBatch(Opcode op) => op is Opcode.Get or Opcode.Exists or Opcode.Remove or Opcode.Pin or Opcode.Unpin or Opcode.Lease or Opcode.Info;

    /// <summary>True for every opcode defined by protocol v1.</summary>
    public static bool IsDefined(byte op) => Enum.IsDefined(typeof(Opcode), op);
}

/// <summary>HELLO feature bits: a client asks for them, the node grants those it has (unknown bits are never granted).</summary>
public static class ProtocolFeatures
{
    /// <summary>PUT may carry the writer's CRC-32C of each value (flag <see cref="FrameFlags.ValueCrc"/>).</summary>
    public const ulong ValueCrc = 0x1;

    /// <summary>PUT may carry the <see cref="FrameFlags.Ttl"/> flag and its u32 seconds.</summary>
    public const ulong Ttl = 0x2;

    /// <summary>PUT may carry the <see cref="FrameFlags.Version"/> flag and GET reply entries end with versions (<see cref="ValueVersions"/>).</summary>
    public const ulong Versions = ValueVersions.Feature;

    /// <summary>
    /// Shared-memory writes without the node's passes (docs/protocol.md § Writes without the node's passes): SHM_INFO
    /// replies end with a per-connection challenge, ALLOC may carry <see cref="FrameFlags.Mapped"/> (and
    /// <see cref="FrameFlags.Ttl"/> with <see cref="Ttl"/> granted), COMMIT may carry <see cref="FrameFlags.CommitCrc"/>.
    /// </summary>
    public const ulong ArenaProof = 0x8;

    /// <summary>
    /// COMMIT may carry <see cref="FrameFlags.Chain"/> (its ids, in order, are one chain of blocks, as a chained PUT's
    /// entries) and <see cref="FrameFlags.ChainParent"/> (the stored key the first id's block continues, after the ids
    /// and their CRCs): shared-memory writers declare chains as socket writers do (docs/protocol.md, "Chains through the arena").
    /// </summary>
    public const ulong CommitChain = 0x20;

    /// <summary>PUT may carry <see cref="FrameFlags.CrcTrailer"/>: each value in the payload followed by its writer's CRC-32C.</summary>
    public const ulong CrcTrailer = 0x10;

    /// <summary>
    /// PUT may carry <see cref="FrameFlags.ParentFollows"/>: a chain's parent that arrives later (on another connection)
    /// is linked when it does, so a client may stripe one chain over several connections (docs/protocol.md, "PUT chains").
    /// </summary>
    public const ulong LateParent = 0x40;

    /// <summary>Every feature this implementation knows.</summary>
    public const ulong Known = ValueCrc | Ttl | Versions | ArenaProof | CrcTrailer | CommitChain | LateParent;
}
