using System.Collections.Concurrent;
using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tiers;

/// <summary>The lower tiers of a node: where they live and how reads promote.</summary>
public sealed class TierOptions
{
    /// <summary>Directory of the local-disk tier's segment files. Null: no disk tier.</summary>
    public string? DiskPath { get; init; }

    /// <summary>Bytes the disk tier may hold; the oldest segment is deleted beyond it. Default 10 GiB.</summary>
    public long DiskCapacity { get; init; } = 10L << 30;

    /// <summary>Segment file size. Default: capacity / 8, clamped to 1 MiB..256 MiB.</summary>
    public long SegmentBytes { get; init; }

    /// <summary>A value read this many times from a lower tier is promoted into DRAM. Default 2; 1 promotes on first read.</summary>
    public int PromoteAfter { get; init; } = 2;

    /// <summary>Share of DRAM that promoted values may take. Default 0.2; beyond it reads are served without promotion.</summary>
    public double HotFraction { get; init; } = 0.2;

    /// <summary>Root of the shared-filesystem tier (mounted by many nodes). Null: none.</summary>
    public string? SharedFsPath { get; init; }

    /// <summary>Test hook: the devices of the disk tier (default: plain files in <see cref="DiskPath"/>).</summary>
    public IDeviceFactory? DeviceFactory { get; init; }

    public bool Any => DiskPath is not null || SharedFsPath is not null;

    public void Validate()
    {
        if (DiskPath is not null && DiskCapacity < 2L << 20) throw new ArgumentException("disk capacity must be at least 2 MiB");
        if (PromoteAfter < 1) throw new ArgumentException("promote-after must be at least 1");
        if (HotFraction is < 0 or > 1 || double.IsNaN(HotFraction)) throw new ArgumentException("hot fraction must be between 0 and 1");
    }
}

/// <summary>
/// DRAM's lower tiers, in read order: local disk, then the shared filesystem. Every stored value is
/// written to both (disk synchronously, before the PUT is acknowledged; the shared tier in the
/// background), so a value evicted from DRAM is already demoted. A DRAM miss looks below: the value
/// is read into arena memory and CRC-checked, then either served once from there (freed after the
/// reply) or, from its <see cref="TierOptions.PromoteAfter"/>-th read on and while promoted values
/// fit in the hot share of DRAM, published in DRAM (promoted).
/// </summary>
public sealed class TierSet : IDisposable
{
    private readonly TierOptions _options;
    private readonly ConcurrentDictionary<byte[], int> _reads = new(ByteKeyComparer.Instance);
    private long _promotions, _servedBelow, _loadFailures, _demotions, _dropped;

    public TierSet(TierOptions options)
    {
        options.Validate();
        _options = options;
        if (options.DiskPath is not null)
            Disk = new DiskTier(options.DeviceFactory ?? new FileDeviceFactory(options.DiskPath), options.DiskCapacity, options.SegmentBytes);
        if (options.SharedFsPath is not null) Shared = new SharedFsTier(options.SharedFsPath);
    }

    public DiskTier? Disk { get; }
    public SharedFsTier? Shared { get; }

    /// <summary>Counts an eviction from DRAM: a demotion when the disk tier holds the value, else a drop.</summary>
    public void OnEvicted(byte[] key)
    {
        if (Disk?.Contains(key) == true || (Disk is null && Shared is not null)) Interlocked.Increment(ref _demotions);
        else Interlocked.Increment(ref _dropped);
    }

    /// <summary>Called with a received value before it is published in DRAM (the arena copy is stable until then).</summary>
    public void OnStored(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, uint crc32c)
    {
        _reads.TryRemove(key.ToArray(), out _);
        Disk?.Append(key, value, crc32c);
        Shared?.Enqueue(key, value, crc32c);
    }

    /// <summary>Called before a key is removed from DRAM. True when a lower tier had it.</summary>
    public bool OnRemoved(ReadOnlySpan<byte> key)
    {
        bool had = Contains(key);
        Disk?.Remove(key);
        Shared?.Remove(key);
        return had;
    }

    public bool Contains(ReadOnlySpan<byte> key)
        => (Disk?.Contains(key) ?? false) || (Shared is not null && Shared.TryLocate(key, out _));

    /// <summary>
    /// A DRAM miss: finds the key below, reads it into the arena and leases it (promoting it when due).
    /// NotFound when no tier has a sound copy or the arena has no room for it.
    /// </summary>
    public StoreStatus TryLoad(KvArenaStore store, ReadOnlySpan<byte> key, ILeaseHolder? holder, out ValueLease? lease)
    {
        lease = null;
        long length;
        uint crc;
        DiskEntry? onDisk = null;
        SharedEntry? shared = null;
        if (Disk is not null && Disk.TryLocate(key, out onDisk)) (length, crc) = (onDisk!.Length, onDisk.Crc32C);
        else if (Shared is not null && Shared.TryLocate(key, out shared)) (length, crc) = (shared!.Length, shared.Crc32C);
        else return StoreStatus.NotFound;

        if (store.TryReserve(key, length, out var reservation) != StoreStatus.Ok)
        {
            Interlocked.Increment(ref _loadFailures);
            return StoreStatus.NotFound;
        }
        bool read;
        try
        {
            read = onDisk is not null ? Disk!.TryRead(key, onDisk, reservation!.Span) : Shared!.TryRead(shared!, reservation!.Span);
        }
        catch
        {
            store.Abort(reservation!);
            throw;
        }
        if (!read)
        {
            store.Abort(reservation!);
            return StoreStatus.NotFound;
        }
        Interlocked.Increment(ref _servedBelow);
        var keyCopy = key.ToArray();
        int reads = _reads.AddOrUpdate(keyCopy, 1, (_, n) => n + 1);
        if (_reads.Count > 1_000_000) _reads.Clear();   // bounded: counts are a hint, not state
        bool promote = reads >= _options.PromoteAfter
            && store.PromotedBytes + length <= (long)(_options.HotFraction * store.Options.Capacity);
        if (!promote)
        {
            lease = store.LeaseUnpublished(reservation!, crc, holder);
            return StoreStatus.Ok;
        }
        _reads.TryRemove(keyCopy, out _);
        if (store.CommitPromoted(reservation!, crc)) Interlocked.Increment(ref _promotions);
        return store.TryLease(key, holder, out lease);
    }

    /// <summary>Each failing tier and why; empty when all are healthy.</summary>
    public IReadOnlyList<(string Tier, string Reason)> Problems()
    {
        var list = new List<(string, string)>();
        if (Disk?.Degraded is { } d) list.Add(("disk", d));
        if (Shared?.Degraded is { } s) list.Add(("shared-fs", s));
        return list;
    }

    public IEnumerable<KeyValuePair<string, long>> Stats()
    {
        var list = new List<KeyValuePair<string, long>>
        {
            new("tier_promotions", Interlocked.Read(ref _promotions)),
            new("tier_served_below", Interlocked.Read(ref _servedBelow)),
            new("tier_load_failures", Interlocked.Read(ref _loadFailures)),
            new("tier_demotions", Interlocked.Read(ref _demotions)),
            new("tier_evicted_unsaved", Interlocked.Read(ref _dropped)),
        };
        if (Disk is not null) { list.AddRange(Disk.Stats()); list.Add(new("disk_healthy", Disk.Degraded is null ? 1 : 0)); }
        if (Shared is not null) { list.AddRange(Shared.Stats()); list.Add(new("shared_healthy", Shared.Degraded is null ? 1 : 0)); }
        return list;
    }

    public void Dispose()
    {
        Shared?.Dispose();
        Disk?.Dispose();
    }
}
