using Kvasir.Protocol;
using Kvasir.Storage.Tiers;

namespace Kvasir.Storage;

/// <summary>A lease found by <see cref="TieredStore.LeaseAsync"/>: Ok with the lease, or why there is none.</summary>
public readonly record struct LeaseResult(WireStatus Status, ValueLease? Lease)
{
    /// <summary>Where the value was found: <see cref="StoreTier.Dram"/>, or the tier it was staged from; None without a lease.</summary>
    public StoreTier Tier { get; init; }
}

/// <summary>The tier a read was served from (for access statistics).</summary>
public enum StoreTier : byte
{
    None,
    Dram,
    Disk,
    Shared,
}

/// <summary>
/// A node's store: the DRAM arena and the tiers below it (local disk, shared filesystem), behind the one entry
/// point through which every caller — TCP, shared memory, an in-process client, recovery — puts, gets, removes and
/// pins. The tier rules (docs/tiers.md) live here and nowhere else:
/// <list type="bullet">
/// <item>an acknowledged PUT is on disk (as <see cref="DiskSyncMode"/> promises) before it is published in DRAM;
/// if the disk cannot take it the PUT fails with <see cref="WireStatus.TierFailed"/> and nothing changes;</item>
/// <item>a later version is never replaced by an earlier one: every write takes a version from one clock, the disk
/// records it, and DRAM publication, promotion and recovery compare versions under one lock hold;</item>
/// <item>REMOVE removes from every tier (a disk tombstone, the shared file, then DRAM);</item>
/// <item>a DRAM miss looks below; a value read from below is published in DRAM only when it is hot (read
/// <see cref="TierOptions.PromoteAfter"/> times, within <see cref="TierOptions.HotFraction"/>), otherwise served
/// from free arena space without evicting published values;</item>
/// <item>tier I/O never runs on the caller's thread: disk writes go through the disk writer's queue, reads and
/// shared-filesystem calls through tier threads, and what follows them continues on the thread pool.</item>
/// </list>
/// </summary>
/// <remarks>
/// Thread-safe. Without lower tiers every call completes synchronously (no task is allocated for PUT, GET or
/// REMOVE). Dispose lets queued disk and shared writes finish, flushes the disk to stable storage and frees the
/// arena; callers must have stopped first (see <see cref="KvArenaStore"/>).
/// </remarks>
public sealed partial class TieredStore : IDisposable
{
    private const int EpochStripes = 1024;
    private static readonly Task<WireStatus> s_ok = Task.FromResult(WireStatus.Ok);
    private static readonly Task<WireStatus> s_tierFailed = Task.FromResult(WireStatus.TierFailed);

    private readonly VersionClock _clock = new();
    private readonly KvArenaStore _dram;
    private readonly DiskTier? _disk;
    private readonly SharedFsTier? _shared;
    private readonly TierIo? _io;
    private readonly Internal.StagingArea? _staging;
    private readonly TierOptions _tiers;
    private readonly long[] _epochs = new long[EpochStripes];
    private readonly Lock[] _shareStripes = [.. Enumerable.Range(0, 256).Select(_ => new Lock())];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<byte[], int> _reads = new(Internal.ByteKeyComparer.Instance);
    private readonly Func<byte[], long, bool>? _newerOnDisk;
    private long _promotions, _servedBelow, _loadFailures, _loadsUnstaged, _loadsStaged, _loadsEvicting, _demotions, _dropped, _superseded, _tierFailures, _servedDisk, _servedShared;

    private delegate bool ReadInto(Span<byte> destination);

    /// <summary>Allocates the arena, opens (and recovers) the disk tier and the shared tier.</summary>
    /// <exception cref="ArgumentException">Invalid options.</exception>
    /// <exception cref="IOException">A tier's directory cannot be used.</exception>
    public TieredStore(StoreOptions store, TierOptions? tiers = null)
    {
        _tiers = tiers ?? new TierOptions();
        _tiers.Validate();
        _dram = new KvArenaStore(store, _clock);
        try
        {
            if (_tiers.DiskPath is { } path)
            {
                _disk = new DiskTier(_tiers.DeviceFactory ?? new FileDeviceFactory(path), _tiers.DiskCapacity, _tiers.SegmentBytes, _tiers.DiskSync, _clock);
                _newerOnDisk = (key, version) => _disk.NewestVersion(key) > version;
            }
            if (_tiers.SharedFsPath is { } shared) _shared = new SharedFsTier(shared, _tiers.SharedQueueBytes, _tiers.SharedUsageInterval);
            if (_tiers.Any)
            {
                _io = new TierIo(_tiers.ReadThreads, "kvasir tier io");
                long staging = _tiers.StagingBytes > 0 ? _tiers.StagingBytes : Math.Clamp(store.Capacity / 4, 64L << 20, 1L << 30);
                _staging = new Internal.StagingArea(Math.Max(staging, store.MaxValueBytes));
            }
        }
        catch
        {
            _io?.Dispose();
            _disk?.Dispose();
            _dram.Dispose();
            throw;
        }
        _dram.Evicted = OnEvicted;
        if (_io is not null) _dram.Expired = OnExpired;
    }

    /// <summary>The DRAM tier's options.</summary>
    public StoreOptions Options => _dram.Options;

    /// <summary>Start of the arena in this process (shared-memory clients receive offsets relative to it).</summary>
    public nint ArenaBase => _dram.ArenaBase;

    /// <summary>Where the arena is mapped from, when it is a shared-memory file.</summary>
    public string? SharedMemoryPath => _dram.SharedMemoryPath;

    /// <summary>True with a local-disk tier.</summary>
    public bool HasDisk => _disk is not null;

    /// <summary>True with a shared-filesystem tier.</summary>
    public bool HasSharedFs => _shared is not null;

    /// <summary>Values recovered from the disk tier when the store opened.</summary>
    public long RecoveredKeys => _disk?.RecoveredKeys ?? 0;

    internal DiskTier? Disk => _disk;

    internal SharedFsTier? Shared => _shared;

    /// <summary>Reserves arena space for a value (see <see cref="KvArenaStore.TryReserve(ReadOnlySpan{byte}, long, out Reservation?)"/>); then write it and call <see cref="CommitAsync"/> or <see cref="Abort"/>.</summary>
    public WireStatus TryReserve(ReadOnlySpan<byte> key, long length, out Reservation? reservation) => _dram.TryReserve(key, length, out reservation);

    /// <summary>Gives back a reservation that will not be committed.</summary>
    public void Abort(Reservation reservation) => _dram.Abort(reservation);

    /// <summary>
    /// Stores a filled reservation: written through to the disk tier (its task completes once the record is as durable
    /// as <see cref="TierOptions.DiskSync"/> promises), then published in DRAM, then queued for the shared tier.
    /// Ok also when a newer write of the key overtook this one (this one is then superseded, as if it came first);
    /// <see cref="WireStatus.TierFailed"/> when the disk could not take it (the value is not stored anywhere).
    /// </summary>
    /// <param name="reservation">Filled; its bytes must not change until the task completes.</param>
    /// <param name="crc32c">CRC-32C of the bytes written.</param>
    /// <param name="chainParent">The key whose block this one continues (prefix-aware eviction), or null.</param>
    /// <param name="publishAfter">
    /// Publish only after this task (the previous value of a chained batch), so chain links find their parent. The
    /// disk write does not wait for it.
    /// </param>
    /// <param name="writerCrc">
    /// <paramref name="crc32c"/> is the writer's claim, not computed here: it is checked against the bytes before
    /// the value first crosses a tier boundary (at once when there is a disk tier) or is first read; a mismatch is
    /// dropped and counted (<see cref="CrcMismatches"/>), never written down or served.
    /// </param>
    /// <param name="version">
    /// The value's version chosen by the writer (a PUT's <c>VERSION</c>; docs/cluster.md § Versions), or 0 for the
    /// node's clock. A write whose version is older than the key's newest in any tier is superseded (Ok, not stored).
    /// </param>
    /// <param name="parentFollows">
    /// <paramref name="chainParent"/> may be published after this value (a PUT's <c>PARENT_FOLLOWS</c>): when it is not
    /// stored yet, the value is linked to it if it comes within <see cref="ProtocolLimits.LateParentWindow"/>.
    /// </param>
    public Task<WireStatus> CommitAsync(Reservation reservation, uint crc32c, byte[]? chainParent = null, Task? publishAfter = null,
        bool writerCrc = false, long version = 0, bool parentFollows = false)
    {
        ArgumentNullException.ThrowIfNull(reservation);
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        if (writerCrc && !AcceptWriterCrc(reservation, crc32c)) return s_tierFailed;
        if (_shared is not null) BumpEpoch(reservation.Key);
        if (_disk is null && publishAfter is null)
        {
            var status = Publish(reservation, crc32c, chainParent, version, parentFollows);
            return status == WireStatus.Ok ? s_ok : Task.FromResult(status);
        }
        return CommitThroughAsync(reservation, crc32c, chainParent, publishAfter, version, parentFollows);
    }

    private async Task<WireStatus> CommitThroughAsync(Reservation reservation, uint crc32c, byte[]? chainParent, Task? publishAfter, long version,
        bool parentFollows = false)
    {
        if (_disk is not null)
        {
            long expiresAt = Expiry.FromTtl(reservation.Ttl ?? _dram.Options.DefaultTtl);
            var write = await _disk.WriteAsync(reservation.Key, reservation.Address, reservation.Length, crc32c, version, expiresAt).ConfigureAwait(false);
            if (!write.Ok)
            {
                await AwaitQuietly(publishAfter).ConfigureAwait(false);
                _dram.Abort(reservation);
                Interlocked.Increment(ref _tierFailures);
                return WireStatus.TierFailed;
            }
            version = write.Version;
        }
        await AwaitQuietly(publishAfter).ConfigureAwait(false);
        return Publish(reservation, crc32c, chainParent, version, parentFollows);
    }

    private static async Task AwaitQuietly(Task? task)
    {
        if (task is null) return;
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The previous value's failure is its own caller's to report; this one only waited for its turn.
        }
    }

    private WireStatus Publish(Reservation reservation, uint crc32c, byte[]? chainParent, long version, bool parentFollows = false)
    {
        // Only the lower tiers keep keys as arrays: a DRAM-only node never asks for one (an overwrite's reservation has none to give).
        if (_io is not null)
        {
            _reads.TryRemove(reservation.Key, out _);   // read counts exist only with lower tiers
            NoteDeadline(reservation.Key, reservation.Ttl);
        }
        if (!_dram.CommitVersioned(reservation, crc32c, chainParent, version, _newerOnDisk, parentFollows))
        {
            Interlocked.Increment(ref _superseded);
            return WireStatus.Ok;
        }
        if (_shared is not null) ShareAsync(reservation.Key);
        return WireStatus.Ok;
    }

    /// <summary>Queues the key's published value for the shared tier, copied from a lease; when it cannot be, the key's older file goes.</summary>
    /// <remarks>
    /// The lease and the enqueue (of the copy, or of the older file's removal) happen under the key's stripe lock: two
    /// racing publications of a key then queue their copies in the order they leased them, so the last copy queued (the
    /// file left standing) is the value DRAM published last, never an older one that was leased first and queued
    /// second; and a removal never cancels or deletes the copy of a value published after it.
    /// </remarks>
    private void ShareAsync(byte[] key)
    {
        lock (_shareStripes[Stripe(key) % _shareStripes.Length])
        {
            bool queued = false;
            if (_dram.TryLease(key, null, out var lease, countAsAccess: false) == WireStatus.Ok && CheckWriterCrc(key, lease!))
            {
                try
                {
                    long expiresAt = _deadlines.TryGetValue(key, out long deadline) ? Expiry.ToUnixMs(deadline) : 0;
                    queued = _shared!.Enqueue(key, lease!.Span, lease.Crc32C, expiresAt);
                }
                finally
                {
                    _dram.Release(lease!);
                }
            }
            if (!queued) _shared!.EnqueueRemoval(key);
        }
    }

    /// <summary>
    /// Leases the key's value for reading: from DRAM when it is there (completes synchronously), else from the disk
    /// or the shared tier, read on a tier thread into arena space and CRC-checked. NotFound for a miss in every tier
    /// (and for a damaged copy below, or no room to stage a cold read in); OutOfMemory for an arena-only reader when a cold
    /// value has no room in the arena (the reader reads it over TCP instead).
    /// </summary>
    /// <param name="key">The key; its memory must stay unchanged until the task completes.</param>
    /// <param name="holder">Told when the lease outlives the lease timeout; null for a lease the reaper may end by itself.</param>
    /// <param name="arenaOnly">
    /// The reader maps the arena (shared memory): a cold read must be staged in the arena. It uses free space, and
    /// when there is none it evicts as a PUT would. False (TCP, in-process): a cold read uses free arena space or the
    /// staging area beside the arena, and never evicts.
    /// </param>
    public ValueTask<LeaseResult> LeaseAsync(ReadOnlyMemory<byte> key, ILeaseHolder? holder, bool arenaOnly = false)
    {
        var status = _dram.TryLease(key.Span, holder, out var lease);
        if (lease is not null && !CheckWriterCrc(key.Span, lease)) return new(new LeaseResult(WireStatus.NotFound, null));
        if (status != WireStatus.NotFound || _io is null) return new(new LeaseResult(status, lease) { Tier = lease is null ? StoreTier.None : StoreTier.Dram });
        return new(LoadAsync(key, holder, arenaOnly));
    }

    private async Task<LeaseResult> LoadAsync(ReadOnlyMemory<byte> key, ILeaseHolder? holder, bool arenaOnly)
    {
        if (ExpiredBelow(key.Span)) return new LeaseResult(WireStatus.NotFound, null);
        long epoch = Epoch(key.Span);   // before anything is looked at: a write or removal from here on is noticed
        if (_disk is not null && _disk.TryLocate(key.Span, out var entry))
        {
            for (int attempt = 1; ; attempt++)
            {
                var result = await StageAsync(key, holder, arenaOnly, StoreTier.Disk, entry!.Length, entry.Crc32C, entry.Version, 0, entry.ExpiresAt,
                    d => _disk.TryRead(key.Span, entry, d)).ConfigureAwait(false);
                // A miss because the record was overtaken while the read waited (an overwrite, then its segment dropped):
                // the key was stored throughout, so the read looks again, DRAM first, and serves the newer value. A damaged
                // record of a key nobody wrote meanwhile stays a miss; the looks are bounded (a key overwritten faster than
                // its segments are dropped ends as a miss, as before).
                if (result.Status != WireStatus.NotFound || attempt == 3 || !_disk.TryLocate(key.Span, out var newer) || newer == entry) return result;
                entry = newer;
                var status = _dram.TryLease(key.Span, holder, out var lease);
                if (lease is not null && !CheckWriterCrc(key.Span, lease)) return new LeaseResult(WireStatus.NotFound, null);
                if (status != WireStatus.NotFound) return new LeaseResult(status, lease) { Tier = lease is null ? StoreTier.None : StoreTier.Dram };
            }
        }
        if (_shared is null || _shared.HasPending(key.Span) || (_disk is not null && _disk.NewestVersion(key.Span) != 0))
            return new LeaseResult(WireStatus.NotFound, null);
        var located = await _io!.Run(() => _shared.TryLocate(key.Span, out var e) ? e : null).ConfigureAwait(false);
        if (located is null) return new LeaseResult(WireStatus.NotFound, null);
        return await StageAsync(key, holder, arenaOnly, StoreTier.Shared, located.Length, located.Crc32C, 0, epoch, located.ExpiresAt,
            d => _shared.TryRead(located, d)).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads a value from below and leases it: into arena space, published (promoted) when hot; else unpublished, in
    /// free arena space or the staging area (never evicting a published value), or for an arena-only reader in arena
    /// space made as a PUT makes it. A promoted copy keeps the expiry its tier recorded (<paramref name="expiresAt"/>,
    /// Unix ms; 0: none), so a value does not outlive its TTL by being read back into DRAM.
    /// </summary>
    private async Task<LeaseResult> StageAsync(ReadOnlyMemory<byte> key, ILeaseHolder? holder, bool arenaOnly, StoreTier tier, long length, uint crc,
        long version, long epoch, long expiresAt, ReadInto read)
    {
        byte[] keyCopy = key.ToArray();
        int reads = _reads.AddOrUpdate(keyCopy, 1, (_, n) => n + 1);
        if (_reads.Count > 1_000_000) _reads.Clear();   // bounded: counts are a hint, not state
        bool promote = reads >= _tiers.PromoteAfter && _dram.PromotedBytes + length <= (long)(_tiers.HotFraction * _dram.Options.Capacity);
        Internal.ValueVersion? staged = null;
        nint stagedAt = 0;
        if (_dram.TryReserve(keyCopy, length, evict: promote, out var reservation) != WireStatus.Ok)
        {
            reservation = null;
            bool evicted = promote;   // a promotion already tried to make room
            if (promote)
            {
                // No room to promote now (what DRAM holds is pinned, leased or being written): served unpromoted below.
                Interlocked.Increment(ref _loadFailures);
                promote = false;
            }
            if (!arenaOnly && _staging!.TryAllocate(length, out staged, out stagedAt))
            {
                Interlocked.Increment(ref _loadsStaged);
            }
            else if (arenaOnly && !evicted && _dram.TryReserve(keyCopy, length, evict: true, out reservation) == WireStatus.Ok)
            {
                Interlocked.Increment(ref _loadsEvicting);
            }
            else
            {
                // The value is there but has nowhere to go. A shared-memory reader is told OUT_OF_MEMORY and reads the key
                // over TCP, which can use the staging area; for a TCP reader both places are full, so it is a miss.
                Interlocked.Increment(ref _loadsUnstaged);
                return new LeaseResult(arenaOnly ? WireStatus.OutOfMemory : WireStatus.NotFound, null);
            }
        }
        bool ok;
        try
        {
            ok = await _io!.Run(() => read(reservation is not null ? reservation.Span : StagedSpan(stagedAt, length))).ConfigureAwait(false);
        }
        catch
        {
            Abandon(reservation, staged);
            throw;
        }
        if (!ok)
        {
            Abandon(reservation, staged);
            return new LeaseResult(WireStatus.NotFound, null);
        }
        Interlocked.Increment(ref _servedBelow);
        Interlocked.Increment(ref tier == StoreTier.Disk ? ref _servedDisk : ref _servedShared);
        if (staged is not null) return new LeaseResult(WireStatus.Ok, _dram.LeaseStaged(staged, stagedAt, crc, holder, version)) { Tier = tier };
        if (!promote) return new LeaseResult(WireStatus.Ok, _dram.LeaseUnpublished(reservation!, crc, holder, version)) { Tier = tier };
        _reads.TryRemove(keyCopy, out _);
        long left = Expiry.Remaining(expiresAt);
        if (left < 0)
        {
            Abandon(reservation, null);   // it expired while it was read
            return new LeaseResult(WireStatus.NotFound, null);
        }
        reservation!.Ttl = left > 0 ? TimeSpan.FromMilliseconds(left) : null;
        // The copy read may have been overtaken: by a newer disk record (or a tombstone), or, for a shared file, by any
        // write or removal of the key since the read began. Checked under the DRAM lock, with the publication.
        // When it was, the copy is still served (unpublished): it was the newest when this read looked it up, so the
        // read is ordered before the write that overtook it.
        bool published = _dram.CommitPromoted(reservation!, crc, version, k => version > 0
            ? _disk!.NewestVersion(k) == version
            : Epoch(k) == epoch && (_disk is null || _disk.NewestVersion(k) == 0));
        if (!published) return new LeaseResult(WireStatus.Ok, _dram.LeaseUnpublished(reservation!, crc, holder, version)) { Tier = tier };
        Interlocked.Increment(ref _promotions);
        // Not a DRAM hit: this read was counted as a DRAM miss and is served from below (tier_served_*).
        var status = _dram.TryLease(keyCopy, holder, out var lease, countAsAccess: true, countHit: false);
        return new LeaseResult(status, lease) { Tier = lease is null ? StoreTier.None : tier };
    }

    private void Abandon(Reservation? reservation, Internal.ValueVersion? staged)
    {
        if (reservation is not null) _dram.Abort(reservation);
        if (staged is not null) _staging!.Free(staged);
    }

    private static unsafe Span<byte> StagedSpan(nint address, long length) => new((void*)address, checked((int)length));

    /// <summary>Ends a lease (idempotent): true when this call ended it, false when it had ended (released or expired).</summary>
    public bool Release(ValueLease lease) => _dram.Release(lease);

    /// <summary>
    /// Starts the DRAM index loads of a batch's next lookups (EXISTS, GET, ...) ahead of them, so their cache misses overlap
    /// (<see cref="KvArenaStore.PrefetchIndex(IReadOnlyList{ReadOnlyMemory{byte}}, int, int)"/>); only timing changes.
    /// Returns where the prefetched window ends: call again when the batch reaches it.
    /// </summary>
    public int PrefetchIndex(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end) => _dram.PrefetchIndex(keys, start, end);

    /// <summary>As <see cref="PrefetchIndex(IReadOnlyList{ReadOnlyMemory{byte}}, int, int)"/>, for keys given as (offset, length) ranges of <paramref name="buffer"/>.</summary>
    public int PrefetchIndex(ReadOnlySpan<byte> buffer, ReadOnlySpan<(int Offset, int Length)> ranges, int start) => _dram.PrefetchIndex(buffer, ranges, start);

    /// <summary>Ok when the key has a value in any tier, NotFound otherwise, InvalidKey for a bad key.</summary>
    public ValueTask<WireStatus> ExistsAsync(ReadOnlyMemory<byte> key)
    {
        if (!ValidKey(key.Span)) return new(WireStatus.InvalidKey);
        if (_dram.Exists(key.Span)) return new(WireStatus.Ok);
        if (ExpiredBelow(key.Span)) return new(WireStatus.NotFound);
        if (_disk?.Contains(key.Span) == true) return new(WireStatus.Ok);
        if (_shared is null || (_disk is not null && _disk.NewestVersion(key.Span) != 0)) return new(WireStatus.NotFound);
        return new(ExistsSharedAsync(key));
    }

    private async Task<WireStatus> ExistsSharedAsync(ReadOnlyMemory<byte> key)
        => await _io!.Run(() => _shared!.TryLocate(key.Span, out _, countMiss: false)).ConfigureAwait(false) ? WireStatus.Ok : WireStatus.NotFound;

    /// <summary>
    /// Removes the key from every tier: a disk tombstone (durable before this completes), the shared file, then DRAM.
    /// Ok when any tier had it, NotFound when none did; TierFailed when the tombstone could not be written (nothing
    /// was removed from DRAM then, so no tier disagrees).
    /// </summary>
    public ValueTask<WireStatus> RemoveAsync(ReadOnlyMemory<byte> key)
    {
        if (!ValidKey(key.Span)) return new(WireStatus.InvalidKey);
        if (_shared is not null) BumpEpoch(key.Span);
        if (_io is null) return new(_dram.Remove(key.Span));
        byte[] copy = key.ToArray();
        _deadlines.TryRemove(copy, out _);
        return new(RemoveBelowAsync(copy));
    }

    private async Task<WireStatus> RemoveBelowAsync(byte[] key)
    {
        bool below = false;
        long version;
        if (_disk is not null)
        {
            below = _disk.Contains(key);
            var write = await _disk.RemoveAsync(key).ConfigureAwait(false);
            if (!write.Ok)
            {
                Interlocked.Increment(ref _tierFailures);
                return WireStatus.TierFailed;
            }
            version = write.Version;
        }
        else
        {
            version = _clock.Next();
        }
        if (_shared is not null)
        {
            below |= await _io!.Run(() =>
            {
                bool had = _shared.Exists(key);
                _shared.Remove(key);
                return had;
            }).ConfigureAwait(false);
        }
        var status = _dram.RemoveOlderThan(key, version);
        return status == WireStatus.NotFound && below ? WireStatus.Ok : status;
    }

    /// <summary>Whether DRAM holds a value of the key (no lower tier is asked; no counter or recency changes).</summary>
    public bool InDram(ReadOnlySpan<byte> key) => _dram.Exists(key);

    /// <summary>Handles leases past their deadline now (the reaper does it on a timer); see <see cref="KvArenaStore.ReapExpiredLeases"/>.</summary>
    public int ReapExpiredLeases() => _dram.ReapExpiredLeases();

    /// <summary>Adds a pin to the key's DRAM value (a key only in a lower tier answers NotFound).</summary>
    public WireStatus Pin(ReadOnlySpan<byte> key) => _dram.Pin(key);

    /// <summary>Drops one pin.</summary>
    public WireStatus Unpin(ReadOnlySpan<byte> key) => _dram.Unpin(key);

    /// <summary>The DRAM tier's counters.</summary>
    public StoreStats GetStats() => _dram.GetStats();

    /// <summary>Counters of the tiers below DRAM, by STATS name; empty without lower tiers.</summary>
    public IReadOnlyList<KeyValuePair<string, long>> TierStats()
    {
        if (!_tiers.Any) return [];
        var list = new List<KeyValuePair<string, long>>
        {
            new("tier_promotions", Interlocked.Read(ref _promotions)),
            new("tier_served_below", Interlocked.Read(ref _servedBelow)),
            new("tier_served_disk", Interlocked.Read(ref _servedDisk)),
            new("tier_served_shared", Interlocked.Read(ref _servedShared)),
            new("tier_load_failures", Interlocked.Read(ref _loadFailures)),
            new("tier_loads_unstaged", Interlocked.Read(ref _loadsUnstaged)),
            new("tier_loads_staged", Interlocked.Read(ref _loadsStaged)),
            new("tier_loads_evicting", Interlocked.Read(ref _loadsEvicting)),
            new("tier_demotions", Interlocked.Read(ref _demotions)),
            new("tier_evicted_unsaved", Interlocked.Read(ref _dropped)),
            new("tier_superseded", Interlocked.Read(ref _superseded)),
            new("tier_write_failures", Interlocked.Read(ref _tierFailures)),
        };
        if (_disk is not null)
        {
            list.AddRange(_disk.Stats());
            list.Add(new("disk_healthy", _disk.Degraded is null ? 1 : 0));
        }
        if (_shared is not null)
        {
            list.AddRange(_shared.Stats());
            list.Add(new("shared_healthy", _shared.Degraded is null ? 1 : 0));
        }
        list.Add(new("tier_expiry_tracked", _deadlines.Count));
        return list;
    }

    /// <summary>Each failing tier and why; empty when all are healthy.</summary>
    public IReadOnlyList<(string Tier, string Reason)> Problems()
    {
        var list = new List<(string, string)>();
        if (_disk?.Degraded is { } d) list.Add(("disk", d));
        if (_shared?.Degraded is { } s) list.Add(("shared-fs", s));
        return list;
    }

    /// <summary>Waits until the shared tier's queued writes are done (tests, clean shutdown), at most <paramref name="timeout"/>.</summary>
    public bool DrainShared(TimeSpan timeout) => _shared?.Drain(timeout) ?? true;

    /// <summary>Forces the disk tier's files to stable storage.</summary>
    public void FlushDisk() => _disk?.Flush();

    /// <summary>Finishes queued tier writes, flushes the disk to stable storage, closes the tiers and frees the arena.</summary>
    public void Dispose()
    {
        _shared?.Dispose();
        _disk?.Dispose();
        _io?.Dispose();
        _dram.Dispose();
        _staging?.Dispose();
    }

    /// <summary>Under the DRAM lock: an evicted value is demoted when a lower tier holds it, dropped otherwise.</summary>
    private void OnEvicted(byte[] key)
    {
        if (_disk?.Contains(key) == true || (_disk is null && _shared is not null)) Interlocked.Increment(ref _demotions);
        else Interlocked.Increment(ref _dropped);
    }

    private void BumpEpoch(ReadOnlySpan<byte> key) => Interlocked.Increment(ref _epochs[Stripe(key)]);

    private long Epoch(ReadOnlySpan<byte> key) => Volatile.Read(ref _epochs[Stripe(key)]);

    private static int Stripe(ReadOnlySpan<byte> key) => (int)((uint)Internal.ByteKeyComparer.Instance.GetHashCode(key) % EpochStripes);

    private bool ValidKey(ReadOnlySpan<byte> key) => key.Length >= 1 && key.Length <= _dram.Options.MaxKeyBytes;
}
