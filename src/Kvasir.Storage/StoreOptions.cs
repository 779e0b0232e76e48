using System.Numerics;
using Kvasir.Protocol;

namespace Kvasir.Storage;

/// <summary>
/// Configuration of a <see cref="KvArenaStore"/>. Immutable once the store is built; <see cref="Validate"/>
/// is called by the store's constructor.
/// </summary>
public sealed class StoreOptions
{
    /// <summary>Hard ceiling on <see cref="MaxKeyBytes"/>; keys are copied into managed memory per entry.</summary>
    public const int MaxKeyBytesLimit = 64 * 1024;

    /// <summary>Most <see cref="Namespaces"/>: a value records its namespace in 16 bits.</summary>
    public const int MaxNamespaces = short.MaxValue;

    /// <summary>
    /// Arena size in bytes. Default 1 GiB. The whole arena is reserved up front (pages are committed by the
    /// operating system as they are first written). Too small and eviction churns constantly; larger than the
    /// machine's free memory and the process is paged or killed by the OOM killer once the arena fills.
    /// </summary>
    public long Capacity { get; init; } = 1L << 30;

    /// <summary>
    /// Largest value accepted, in bytes. Default 64 MiB. Must be &lt;= <see cref="Capacity"/> and &lt;= <see cref="int.MaxValue"/>.
    /// Large values close to <see cref="Capacity"/> need a contiguous extent, so storing one can evict most of the arena.
    /// </summary>
    public long MaxValueBytes { get; init; } = 64L << 20;

    /// <summary>
    /// Longest key accepted, in bytes; keys are 1..MaxKeyBytes bytes. Default 512 (the wire limit).
    /// At most <see cref="MaxKeyBytesLimit"/>: every key is held in managed memory, so very long keys cost heap per entry.
    /// </summary>
    public int MaxKeyBytes { get; init; } = 512;

    /// <summary>
    /// Null (default) selects variable-size allocation in <see cref="Granule"/> units. When set, the arena is cut into
    /// blocks of exactly this many bytes and every value takes one block: a value longer than the block is
    /// <see cref="WireStatus.ValueTooLarge"/>, a shorter one keeps its real length and wastes the rest of the block.
    /// A block size that is not a multiple of 64 leaves blocks unaligned to cache lines (slower copies).
    /// </summary>
    public int? BlockSize { get; init; }

    /// <summary>
    /// Allocation unit of variable mode, in bytes: a power of two, at least 64. Default 4096 (one page).
    /// Every value occupies a whole number of granules (at least one, even when empty), so a large granule wastes
    /// space on small values; the allocator keeps 16 bytes of managed bookkeeping per granule, so a small granule
    /// costs memory (64-byte granules on a 1 GiB arena: 256 MiB of bookkeeping). Ignored in block mode.
    /// </summary>
    public int Granule { get; init; } = 4096;

    /// <summary>
    /// Fraction of <see cref="Capacity"/> that allocated bytes may reach before a put starts evicting. Default 0.95.
    /// 1.0 defers eviction until an allocation actually fails (more fragmentation-driven evictions); low values waste the arena.
    /// </summary>
    public double HighWatermark { get; init; } = 0.95;

    /// <summary>
    /// Fraction of <see cref="Capacity"/> that eviction, once started, brings allocated bytes down to (counting the
    /// value being stored). Default 0.90. Must be in (0, <see cref="HighWatermark"/>]. Equal to the high watermark,
    /// eviction runs on almost every put once full; far below it, each eviction round drops many values at once.
    /// </summary>
    public double LowWatermark { get; init; } = 0.90;

    /// <summary>Which values are evicted first. Default <see cref="EvictionPolicyKind.ChainLfu"/> (chosen by replaying a production trace: docs/eviction.md).</summary>
    public EvictionPolicyKind Eviction { get; init; } = EvictionPolicyKind.ChainLfu;

    /// <summary>
    /// How long a lease may be held before it is reaped. Default 30 s. The background reaper runs every
    /// LeaseTimeout/4, clamped to 1..5 s, so a lease may live up to that much longer. Too short and slow readers
    /// (a large value to a slow client) lose their lease mid-transfer; too long and a dead client's leases keep
    /// old versions' space allocated for that long.
    /// </summary>
    public TimeSpan LeaseTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Expiry given to a value whose PUT names none. Null (the default): values never expire. An expired value is a
    /// miss at once and its space is reclaimed when it is next looked up or by the sweep (a bounded walk every
    /// reaper tick). At most <see cref="uint.MaxValue"/> seconds (the wire's field).
    /// </summary>
    public TimeSpan? DefaultTtl { get; init; }

    /// <summary>
    /// Namespaces with byte budgets (key prefixes); empty (the default): no quotas. A PUT that would take a
    /// namespace's DRAM bytes above its budget is answered QuotaExceeded. Only the bytes PUT into this node's DRAM
    /// count: copies on the disk or shared tier and values promoted back from them do not (the disk is a write-through
    /// copy of everything with its own capacity; a read never fails on a quota). Too small a budget refuses a
    /// tenant's writes; budgets may add up to more than the arena (they are caps, not reservations).
    /// </summary>
    public IReadOnlyList<NamespaceQuota> Namespaces { get; init; } = [];

    /// <summary>How long a block stored with <c>PARENT_FOLLOWS</c> waits for its parent (the protocol's value; tests shorten it).</summary>
    internal TimeSpan LateParentWindow { get; init; } = ProtocolLimits.LateParentWindow;

    /// <summary>Blocks waiting for a late parent at most (the protocol's value; tests lower it).</summary>
    internal int MaxLateParentWaits { get; init; } = ProtocolLimits.MaxLateParentWaits;

    /// <summary>Throws <see cref="ArgumentException"/> naming the offending option when a value or combination is unusable.</summary>
    /// <summary>
    /// Put the arena in this shared-memory file (created mode 0600, removed on dispose) so same-host
    /// clients can map it. Default null: process-private memory.
    /// </summary>
    public string? SharedMemoryPath { get => _sharedMemoryPath; init => _sharedMemoryPath = value; }

    private string? _sharedMemoryPath;

    /// <summary>These options with the arena in <paramref name="path"/> (every other setting kept).</summary>
    public StoreOptions WithSharedMemoryPath(string path)
    {
        var copy = (StoreOptions)MemberwiseClone();
        copy._sharedMemoryPath = path;
        return copy;
    }

    public void Validate()
    {
        if (Capacity <= 0)
        {
            throw new ArgumentException($"Capacity must be positive (was {Capacity}).", nameof(Capacity));
        }

        if (MaxValueBytes < 0 || MaxValueBytes > Capacity || MaxValueBytes > int.MaxValue)
        {
            throw new ArgumentException(
                $"MaxValueBytes must be in 0..min(Capacity, int.MaxValue) (was {MaxValueBytes}, Capacity {Capacity}).",
                nameof(MaxValueBytes));
        }

        if (MaxKeyBytes < 1 || MaxKeyBytes > MaxKeyBytesLimit)
        {
            throw new ArgumentException($"MaxKeyBytes must be in 1..{MaxKeyBytesLimit} (was {MaxKeyBytes}).", nameof(MaxKeyBytes));
        }

        if (BlockSize is int block)
        {
            if (block <= 0 || block > Capacity)
            {
                throw new ArgumentException($"BlockSize must be in 1..Capacity (was {block}, Capacity {Capacity}).", nameof(BlockSize));
            }

            if (Capacity / block > int.MaxValue)
            {
                throw new ArgumentException($"Capacity / BlockSize must not exceed int.MaxValue blocks (BlockSize {block}).", nameof(BlockSize));
            }
        }
        else
        {
            if (Granule < 64 || !BitOperations.IsPow2(Granule))
            {
                throw new ArgumentException($"Granule must be a power of two >= 64 (was {Granule}).", nameof(Granule));
            }

            if (Capacity < Granule)
            {
                throw new ArgumentException($"Capacity ({Capacity}) must hold at least one granule ({Granule}).", nameof(Capacity));
            }

            if (Capacity / Granule > int.MaxValue)
            {
                throw new ArgumentException($"Capacity / Granule must not exceed int.MaxValue units; raise Granule (was {Granule}).", nameof(Granule));
            }
        }

        if (!(HighWatermark > 0 && HighWatermark <= 1))
        {
            throw new ArgumentException($"HighWatermark must be in (0, 1] (was {HighWatermark}).", nameof(HighWatermark));
        }

        if (!(LowWatermark > 0 && LowWatermark <= HighWatermark))
        {
            throw new ArgumentException(
                $"LowWatermark must be in (0, HighWatermark] (was {LowWatermark}, HighWatermark {HighWatermark}).", nameof(LowWatermark));
        }

        if (!Enum.IsDefined(Eviction))
        {
            throw new ArgumentException($"Eviction must be a defined EvictionPolicyKind (was {(int)Eviction}).", nameof(Eviction));
        }

        if (DefaultTtl is { } ttl && (ttl < TimeSpan.FromSeconds(1) || ttl.TotalSeconds > uint.MaxValue))
        {
            throw new ArgumentException($"DefaultTtl must be 1 s to {uint.MaxValue} s (was {ttl}).", nameof(DefaultTtl));
        }

        if (Namespaces.Count > MaxNamespaces)
        {
            throw new ArgumentException($"at most {MaxNamespaces} namespace quotas (was {Namespaces.Count}).", nameof(Namespaces));
        }

        var prefixes = new HashSet<string>();
        foreach (var ns in Namespaces)
        {
            if (ns.Prefix.Length == 0 || ns.Prefix.Length > MaxKeyBytes || ns.BudgetBytes <= 0)
            {
                throw new ArgumentException($"namespace quota needs a prefix of 1..{MaxKeyBytes} bytes and a positive budget (was {ns.Prefix.Length} bytes, {ns.BudgetBytes}).", nameof(Namespaces));
            }

            if (!prefixes.Add(Convert.ToHexString(ns.Prefix)))
            {
                throw new ArgumentException($"namespace prefix '{System.Text.Encoding.UTF8.GetString(ns.Prefix)}' is given twice.", nameof(Namespaces));
            }
        }

        if (LeaseTimeout <= TimeSpan.Zero || LeaseTimeout > TimeSpan.FromDays(1))
        {
            throw new ArgumentException($"LeaseTimeout must be in (0, 1 day] (was {LeaseTimeout}).", nameof(LeaseTimeout));
        }
    }
}
