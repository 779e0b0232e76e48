namespace Kvasir.Storage.Tiers;

/// <summary>When the disk tier forces written records to stable storage before a PUT is acknowledged.</summary>
public enum DiskSyncMode
{
    /// <summary>
    /// Default. A PUT is acknowledged once its record and index entry are written to the kernel (page cache):
    /// every acknowledged value survives <c>kill -9</c> and an OOM kill; after a power loss or a kernel crash
    /// the last seconds of writes may be missing (recovery then drops torn records: misses, never wrong bytes).
    /// </summary>
    None,

    /// <summary>
    /// Group commit: the disk writer writes every queued record, then calls fsync once on the segment files it
    /// touched, and acknowledges those PUTs only after that. Acknowledged values survive a power loss; a PUT waits
    /// for one fsync shared with the others in flight (milliseconds on SSDs, far more on disks without a
    /// write cache).
    /// </summary>
    Batch,

    /// <summary>fsync after every record before its PUT is acknowledged: the same promise as Batch at a much higher cost per PUT.</summary>
    Always,
}

/// <summary>The lower tiers of a node: where they live, how durable writes are, and how reads promote.</summary>
public sealed class TierOptions
{
    /// <summary>Directory of the local-disk tier's segment files. Null (default): no disk tier.</summary>
    public string? DiskPath { get; init; }

    /// <summary>Bytes the disk tier may hold; beyond it the oldest segment is deleted and its keys leave the tier. Default 10 GiB; at least 2 MiB.</summary>
    public long DiskCapacity { get; init; } = 10L << 30;

    /// <summary>Segment file size. Default (0): capacity / 8, clamped to 1 MiB..256 MiB. The largest value the disk tier holds is one segment.</summary>
    public long SegmentBytes { get; init; }

    /// <summary>When an acknowledged PUT reaches stable storage (<see cref="DiskSyncMode"/>). Default <see cref="DiskSyncMode.None"/>.</summary>
    public DiskSyncMode DiskSync { get; init; } = DiskSyncMode.None;

    /// <summary>A value read this many times from a lower tier is promoted into DRAM. Default 2; 1 promotes on first read.</summary>
    public int PromoteAfter { get; init; } = 2;

    /// <summary>Share of DRAM that promoted values may take. Default 0.2; beyond it reads are served without promotion.</summary>
    public double HotFraction { get; init; } = 0.2;

    /// <summary>Root of the shared-filesystem tier (mounted by many nodes). Null (default): none.</summary>
    public string? SharedFsPath { get; init; }

    /// <summary>
    /// Bytes of values queued for the shared tier and not yet written. Default 256 MiB. Past it a value is not shared
    /// (counted in <c>shared_dropped</c>; the key's older file is removed, so no node reads an older value back): a slow
    /// filesystem then costs sharing, not memory. Small: bursts of writes are not shared; large: that much memory held
    /// by copies waiting for a slow filesystem.
    /// </summary>
    public long SharedQueueBytes { get; init; } = 256L << 20;

    /// <summary>
    /// How often the shared tier's tree is walked to count its files and bytes (metrics: <c>kvasir_tier_used_bytes{tier="shared"}</c>).
    /// Default 30 s, at least 100 ms. A walk visits every file of every node: on a large tree over a network filesystem a
    /// short interval keeps the filesystem busy; a long one leaves the numbers older.
    /// </summary>
    public TimeSpan SharedUsageInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Threads that serve lower-tier reads (disk pread, shared-filesystem files). Default 4. More threads let more
    /// cold reads overlap on fast devices; each blocked read holds one of them, never a socket thread.
    /// </summary>
    public int ReadThreads { get; init; } = 4;

    /// <summary>
    /// Bytes apart from the arena, allocated once at start, where cold reads that will not be promoted are staged for
    /// TCP and in-process readers when the arena has no free space (a cold read never evicts a published value).
    /// Default 0: a quarter of the arena, at least 64 MiB, at most 1 GiB. Reads that find it full too are misses
    /// (<c>tier_loads_unstaged</c>); more of it serves more concurrent cold reads at the cost of that much memory.
    /// </summary>
    public long StagingBytes { get; init; }

    /// <summary>Test hook: the devices of the disk tier (default: plain files in <see cref="DiskPath"/>).</summary>
    public IDeviceFactory? DeviceFactory { get; init; }

    /// <summary>True when any lower tier is configured.</summary>
    public bool Any => DiskPath is not null || SharedFsPath is not null;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (DiskPath is not null && DiskCapacity < 2L << 20) throw new ArgumentException("disk capacity must be at least 2 MiB");
        if (PromoteAfter < 1) throw new ArgumentException("promote-after must be at least 1");
        if (HotFraction is < 0 or > 1 || double.IsNaN(HotFraction)) throw new ArgumentException("hot fraction must be between 0 and 1");
        if (ReadThreads is < 1 or > 256) throw new ArgumentException("tier read threads must be between 1 and 256");
        if (SharedUsageInterval < TimeSpan.FromMilliseconds(100)) throw new ArgumentException("shared usage interval must be at least 100 ms");
        if (SharedQueueBytes < 1) throw new ArgumentException("shared queue bytes must be at least 1");
        if (StagingBytes < 0) throw new ArgumentException("staging bytes must not be negative (0 picks the default)");
        if (!Enum.IsDefined(DiskSync)) throw new ArgumentException($"disk sync mode {DiskSync} is not none, batch or always");
    }
}

/// <summary>
/// The node's one sequence of versions: every PUT and REMOVE that reaches a tier takes the next number (or the version
/// its writer chose), and every tier keeps the highest. Persisted with each disk record, so recovery, promotion and
/// eviction-then-reload all agree on which acknowledged write won. A <see cref="Protocol.HybridClock"/>, so versions of
/// different nodes and clients compare (docs/cluster.md § Versions). Thread-safe.
/// </summary>
internal sealed class VersionClock : Protocol.HybridClock;
