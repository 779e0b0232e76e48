using System.Diagnostics;
using Kvasir.Protocol;
using Kvasir.Storage.Internal;

namespace Kvasir.Storage;

/// <summary>
/// The in-memory KV-block store of a node: one arena carved by an allocator, a byte-key index, eviction between
/// watermarks, leases for readers and pins for values that must stay.
/// </summary>
/// <remarks>
/// <para>
/// Concurrency: every public member is thread-safe. One <see cref="Lock"/> guards the index, allocator, eviction
/// policy, version states, leases and counters. Critical sections are short and never touch payload bytes: the
/// caller copies a value into <see cref="Reservation"/> memory and out of <see cref="ValueLease"/> memory outside
/// the lock, and the reservation or lease is what keeps that memory from being reused meanwhile. For KV blocks
/// (tens of KiB to MiB) the copies dominate, so a single lock is not the bottleneck and keeps every state change
/// trivially atomic (publish, overwrite, evict, release).
/// </para>
/// <para>
/// Dispose frees the arena. The caller must stop all producers and readers first: memory behind an outstanding
/// reservation or lease is gone after Dispose, and every later call throws <see cref="ObjectDisposedException"/>.
/// The store owns native memory and a timer, so it must be disposed; it has no finalizer.
/// </para>
/// </remarks>
public sealed partial class KvArenaStore : IDisposable
{
    private readonly Lock _gate = new();
    private readonly IArenaMemory _arena;
    private readonly IAllocator _allocator;
    private readonly IEvictionPolicy _policy;
    private readonly SlotIndex _index = new();
    private readonly LeaseQueue _leaseQueue = new();
    private readonly Func<Slot, bool> _canEvict;
    private readonly Timer _reaper;
    private readonly long _highWaterBytes;
    private readonly long _lowWaterBytes;
    private readonly long _leaseTimeoutTicks;
    private readonly Tiers.VersionClock _clock;
    private bool _disposed;

    private long _liveBytes;
    private long _reservations;
    private long _activeLeases;
    private long _pinnedKeys;
    private long _lastLeaseId;
    private long _hits;
    private long _misses;
    private long _puts;
    private long _lateLinks;
    private readonly LateParents _lateParents;
    private long _removes;
    private long _evictions;
    private long _evictedBytes;
    private long _outOfMemory;
    private long _promotedBytes;

    /// <summary>Validates <paramref name="options"/>, allocates the arena and starts the lease reaper.</summary>
    /// <exception cref="ArgumentException">The options are invalid (see <see cref="StoreOptions.Validate"/>).</exception>
    /// <exception cref="OutOfMemoryException">The arena could not be allocated.</exception>
    public KvArenaStore(StoreOptions options)
        : this(options, new Tiers.VersionClock())
    {
    }

    /// <summary>A store whose writes take their versions from <paramref name="clock"/> (shared with the node's lower tiers).</summary>
    internal KvArenaStore(StoreOptions options, Tiers.VersionClock clock)
    {
        ArgumentNullException.ThrowIfNull(options);
        _clock = clock;
        options.Validate();
        Options = options;

        _arena = options.SharedMemoryPath is { } shm && !OperatingSystem.IsWindows() ? new ShmArenaMemory(shm, options.Capacity) : new NativeArenaMemory(options.Capacity);
        _allocator = options.BlockSize is int block
            ? new BlockAllocator(options.Capacity, block)
            : new TlsfAllocator(options.Capacity, options.Granule);
        _policy = EvictionPolicies.Create(options.Eviction);
        _lateParents = new LateParents(options.LateParentWindow, options.MaxLateParentWaits);
        _quotas = [.. options.Namespaces];
        _namespaceUsed = new long[_quotas.Length];
        _canEvict = static slot => slot.PinCount == 0 && slot.Current.LeaseCount == 0;
        _highWaterBytes = (long)(options.HighWatermark * options.Capacity);
        _lowWaterBytes = (long)(options.LowWatermark * options.Capacity);
        _leaseTimeoutTicks = (long)(options.LeaseTimeout.TotalSeconds * Stopwatch.Frequency);

        TimeSpan period = TimeSpan.FromTicks(Math.Clamp(options.LeaseTimeout.Ticks / 4, TimeSpan.TicksPerSecond, 5 * TimeSpan.TicksPerSecond));
        _reaper = new Timer(static state => ((KvArenaStore)state!).ReapFromTimer(), this, period, period);
    }

    /// <summary>Where the arena is mapped from, when it is a shared-memory file.</summary>
    public string? SharedMemoryPath => OperatingSystem.IsWindows() ? null : (_arena as ShmArenaMemory)?.Path;

    /// <summary>Start of the arena in this process (offsets sent to shared-memory clients are relative to it).</summary>
    public nint ArenaBase => _arena.BaseAddress;

    /// <summary>The validated options the store was built with.</summary>
    public StoreOptions Options { get; }

    private long AllocatedBytes => _allocator.CapacityBytes - _allocator.FreeBytes;

    /// <summary>
    /// Reserves arena space for a value of <paramref name="length"/> bytes under <paramref name="key"/>, evicting
    /// per policy if needed. The value stays invisible until <see cref="Commit"/>. Length 0 is legal (it still takes
    /// one allocation unit).
    /// </summary>
    /// <returns>
    /// <see cref="WireStatus.Ok"/> with a reservation; <see cref="WireStatus.InvalidKey"/> for an empty or too long
    /// key; <see cref="WireStatus.ValueTooLarge"/> above <see cref="StoreOptions.MaxValueBytes"/> (or the block size);
    /// <see cref="WireStatus.OutOfMemory"/> when nothing more can be evicted and the value still does not fit.
    /// </returns>
    public WireStatus TryReserve(ReadOnlySpan<byte> key, long length, out Reservation? reservation)
        => TryReserve(key, length, evict: true, out reservation, countQuota: true);

    /// <summary>As <see cref="TryReserve(ReadOnlySpan{byte}, long, out Reservation?)"/>; with <paramref name="evict"/> false only free space is used (a cold read that will not be published must not push out values that are).</summary>
    internal WireStatus TryReserve(ReadOnlySpan<byte> key, long length, bool evict, out Reservation? reservation, bool countQuota = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        reservation = null;
        if (!IsValidKey(key))
        {
            ThrowIfDisposed();
            return WireStatus.InvalidKey;
        }

        long size = _allocator.SizeFor(length);
        if (length > Options.MaxValueBytes || size < 0)
        {
            ThrowIfDisposed();
            return WireStatus.ValueTooLarge;
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            int ns = -1;
            if (countQuota && _quotas.Length > 0 && CheckQuota(key, length, out ns) != WireStatus.Ok)
            {
                _quotaRefusals++;
                return WireStatus.QuotaExceeded;
            }

            long offset = 0;
            if (evict ? !TryAllocateWithEviction(length, size, out offset) : !_allocator.TryAllocate(length, out offset))
            {
                _outOfMemory++;
                return WireStatus.OutOfMemory;
            }

            var version = new ValueVersion(offset, length) { State = VersionState.Reserved, Namespace = ns };
            if (ns >= 0) _namespaceUsed[ns] += length;
            nint address = _arena.BaseAddress + (nint)offset;
            // An overwrite names its key by the stored slot (no copy); a new key gets the reservation's own copy, which a new
            // slot keeps when the key is too long to hold inline (SlotKeys).
            reservation = _index.TryGetValue(key, out Slot? stored)
                ? new Reservation(this, stored, version, address)
                : new Reservation(this, key.ToArray(), version, address);
            _reservations++;
            return WireStatus.Ok;
        }
    }

    /// <summary>
    /// Publishes a reservation under its key, atomically: readers see the old value or the new one, never a mix.
    /// An existing value is replaced; its space is freed when its last lease is released. Pins and the slot's
    /// recency carry over to the new value.
    /// </summary>
    /// <param name="reservation">A pending reservation from this store.</param>
    /// <param name="crc32c">CRC-32C of the value as written (see <see cref="Crc32C"/>); stored, not verified.</param>
    /// <param name="parentKey">
    /// Non-empty: this block continues <paramref name="parentKey"/>'s block (a chain link, used by
    /// <see cref="EvictionPolicyKind.PrefixAware"/>). Ignored when that key is absent, is this key, or the link would
    /// close a cycle. Empty: this value starts a chain (an overwrite drops any previous link).
    /// </param>
    /// <returns>Always <see cref="WireStatus.Ok"/>.</returns>
    /// <exception cref="InvalidOperationException">The reservation was already committed or aborted.</exception>
    /// <exception cref="ArgumentException">The reservation belongs to another store.</exception>
    public WireStatus Commit(Reservation reservation, uint crc32c, ReadOnlySpan<byte> parentKey = default)
    {
        CommitVersioned(reservation, crc32c, parentKey, 0, null);
        return WireStatus.Ok;
    }

    /// <summary>
    /// <see cref="Commit"/> for a block whose parent may not be stored yet (a PUT flagged <c>PARENT_FOLLOWS</c>): when
    /// <paramref name="parentKey"/> is absent, the block is published as a root and linked to it if it is published
    /// within <see cref="ProtocolLimits.LateParentWindow"/> (and the block was neither overwritten nor removed meanwhile).
    /// </summary>
    internal WireStatus CommitParentFollows(Reservation reservation, uint crc32c, ReadOnlySpan<byte> parentKey)
    {
        CommitVersioned(reservation, crc32c, parentKey, 0, null, parentFollows: true);
        return WireStatus.Ok;
    }

    /// <summary>
    /// Publishes a reservation as version <paramref name="version"/> of its key (0: the next version of the clock;
    /// a version chosen by a client moves the clock past it),
    /// unless the key already holds a newer version in DRAM or <paramref name="newerBelow"/> says a lower tier holds
    /// a newer record (a newer write or a removal): then the reservation is aborted and false returned. Both checks
    /// and the publication happen under one hold of the store's lock, so an older write never replaces a newer one.
    /// </summary>
    /// <remarks>
    /// With <c>parentFollows</c> the parent key may be published after this block (<see cref="CommitParentFollows"/>):
    /// when it is absent now, the block waits for it (<see cref="LateParents"/>). Every publication links the blocks
    /// waiting for its key.
    /// </remarks>
    internal bool CommitVersioned(Reservation reservation, uint crc32c, ReadOnlySpan<byte> parentKey, long version, Func<byte[], long, bool>? newerBelow,
        bool parentFollows = false)
    {
        CheckOwner(reservation);
        lock (_gate)
        {
            ThrowIfDisposed();
            version = _clock.Take(version);
            if ((_index.TryGetValue(reservation.KeySpan, out Slot? existing) && existing.Current.Sequence > version)
                || (newerBelow is not null && newerBelow(reservation.Key, version)))
            {
                AbortLocked(reservation);
                return false;
            }

            ValueVersion published = Finish(reservation, crc32c, VersionState.Published);
            published.Sequence = version;

            Slot? parent = null;
            if (!parentKey.IsEmpty && parentKey.Length <= Options.MaxKeyBytes)
            {
                _index.TryGetValue(parentKey, out parent);
            }

            if (existing is { } slot)
            {
                ClearPromoted(slot);
                ValueVersion old = slot.Current;
                slot.Current = published;
                _liveBytes -= old.Length;
                Retire(old);
                ChainLinks.SetParent(slot, parent, _policy);
                _policy.OnAccess(slot);
            }
            else
            {
                slot = _policy.NewSlot(reservation.Key, published);   // the slot is the published version from here on
                _index.Add(slot);
                _ordered.Add(slot);
                ChainLinks.SetParent(slot, parent, _policy);
                _policy.OnInsert(slot);
            }

            slot.WrittenAt = Environment.TickCount64;
            slot.ExpiresAt = Deadline(reservation.Ttl ?? Options.DefaultTtl, slot.WrittenAt);
            _liveBytes += published.Length;
            _puts++;
            if (parentFollows && parent is null && !parentKey.IsEmpty && parentKey.Length <= Options.MaxKeyBytes && !parentKey.SequenceEqual(reservation.KeySpan))
            {
                _lateParents.Add(parentKey, slot, slot.Current, slot.WrittenAt);
            }

            _lateLinks += _lateParents.LinkWaiting(reservation.KeySpan, slot, _policy, slot.WrittenAt);
            return true;
        }
    }

    /// <summary>
    /// Removes the key's DRAM value if it is older than <paramref name="version"/> (a removal that a newer write
    /// overtook leaves that write in place). Ok when a value was removed, NotFound otherwise.
    /// </summary>
    internal WireStatus RemoveOlderThan(ReadOnlySpan<byte> key, long version) => WithSlot(key, slot =>
    {
        if (slot.Current.Sequence >= version) return false;
        Detach(slot);
        _removes++;
        return true;
    });

    /// <summary>
    /// Removes the key's value if it is still <paramref name="version"/> (a value found damaged: a newer write of the
    /// key stays). True when it was removed.
    /// </summary>
    internal bool RemoveVersion(ReadOnlySpan<byte> key, ValueVersion version) => WithSlot(key, slot =>
    {
        if (slot.Current != version) return false;
        Detach(slot);
        _removes++;
        return true;
    }) == WireStatus.Ok;

    /// <summary>
    /// Called with each evicted key, under the store's lock: it must be quick and must not call back
    /// into the store. The tiers use it to count demotions.
    /// </summary>
    public Action<byte[]>? Evicted { get; set; }

    /// <summary>DRAM bytes held by values promoted from a lower tier.</summary>
    public long PromotedBytes
    {
        get { lock (_gate) return _promotedBytes; }
    }

    /// <summary>
    /// Publishes a value loaded from a lower tier as version <paramref name="version"/>, only if the key has no value
    /// in DRAM and <paramref name="stillNewest"/> confirms, under the same lock hold, that no newer write or removal
    /// happened since the read (a newer put must never be replaced by an older copy); false otherwise, with the
    /// reservation still pending (the caller may serve it unpublished: the copy was current when it was looked up).
    /// </summary>
    internal bool CommitPromoted(Reservation reservation, uint crc32c, long version, Func<byte[], bool> stillNewest)
    {
        CheckOwner(reservation);
        lock (_gate)
        {
            ThrowIfDisposed();
            if (_index.Contains(reservation.KeySpan) || !stillNewest(reservation.Key))
            {
                return false;
            }

            ValueVersion published = Finish(reservation, crc32c, VersionState.Published);
            published.Sequence = version;
            Slot slot = _policy.NewSlot(reservation.Key, published);   // the slot is the published version from here on
            slot.Promoted = true;
            slot.WrittenAt = Environment.TickCount64;
            slot.ExpiresAt = Deadline(reservation.Ttl, slot.WrittenAt);   // the rest of the copy's recorded life; 0: none
            _index.Add(slot);
            _ordered.Add(slot);
            _policy.OnInsert(slot);
            _liveBytes += published.Length;
            _promotedBytes += published.Length;
            return true;
        }
    }

    /// <summary>
    /// Turns a filled reservation into a lease without publishing it: the value is readable through
    /// the lease only, invisible to every other reader, and its space is freed when the lease is
    /// released. Used to serve a value from a lower tier without taking DRAM for it.
    /// </summary>
    public ValueLease LeaseUnpublished(Reservation reservation, uint crc32c, ILeaseHolder? holder) => LeaseUnpublished(reservation, crc32c, holder, 0);

    /// <summary>As <see cref="LeaseUnpublished(Reservation, uint, ILeaseHolder?)"/>, for a value whose version (<see cref="ValueLease.Sequence"/>) a lower tier recorded.</summary>
    internal ValueLease LeaseUnpublished(Reservation reservation, uint crc32c, ILeaseHolder? holder, long sequence)
    {
        CheckOwner(reservation);
        lock (_gate)
        {
            ValueVersion version = Finish(reservation, crc32c, VersionState.Retired);
            version.Sequence = sequence;
            version.LeaseCount++;
            var lease = new ValueLease(this, ++_lastLeaseId, version, _arena.BaseAddress + (nint)version.Offset, holder,
                Stopwatch.GetTimestamp() + _leaseTimeoutTicks);
            _leaseQueue.Append(lease);
            _activeLeases++;
            return lease;
        }
    }

    /// <summary>
    /// Leases a value staged outside the arena (<see cref="StagingArea"/>): readable through the lease only, freed
    /// back to its staging area when the lease ends (released or expired), like an unpublished lease.
    /// </summary>
    internal ValueLease LeaseStaged(ValueVersion staged, nint address, uint crc32c, ILeaseHolder? holder, long sequence = 0)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            staged.Crc32C = crc32c;
            staged.Sequence = sequence;
            staged.State = VersionState.Retired;
            staged.LeaseCount++;
            var lease = new ValueLease(this, ++_lastLeaseId, staged, address, holder, Stopwatch.GetTimestamp() + _leaseTimeoutTicks);
            _leaseQueue.Append(lease);
            _activeLeases++;
            return lease;
        }
    }

    /// <summary>Ends a pending reservation (under the lock): its version gets its CRC and <paramref name="state"/>.</summary>
    private ValueVersion Finish(Reservation reservation, uint crc32c, VersionState state)
    {
        ThrowIfDisposed();
        if (reservation.State != ReservationState.Pending)
        {
            throw new InvalidOperationException($"The reservation is already {reservation.State.ToString().ToLowerInvariant()}.");
        }

        reservation.State = ReservationState.Committed;
        _reservations--;
        ValueVersion version = reservation.Version;
        version.Crc32C = crc32c;
        version.State = state;
        return version;
    }

    private void ClearPromoted(Slot slot)
    {
        if (slot.Promoted)
        {
            slot.Promoted = false;
            _promotedBytes -= slot.Current.Length;
        }
    }

    /// <summary>Gives a reservation's space back without publishing it. Idempotent; a committed reservation is left alone.</summary>
    public void Abort(Reservation reservation)
    {
        CheckOwner(reservation);
        lock (_gate)
        {
            ThrowIfDisposed();
            AbortLocked(reservation);
        }
    }

    private void AbortLocked(Reservation reservation)
    {
        if (reservation.State != ReservationState.Pending)
        {
            return;
        }

        reservation.State = ReservationState.Aborted;
        _reservations--;
        Uncount(reservation.Version);
        FreeSpace(reservation.Version);
    }

    /// <summary>Whether <paramref name="key"/> has a visible value. Does not count as a hit or touch recency.</summary>
    public bool Exists(ReadOnlySpan<byte> key)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            return IsValidKey(key) && TryGetLive(key, out _);
        }
    }

    /// <summary>
    /// Makes <paramref name="key"/> invisible at once; its space is freed when its last lease is released. Pinned
    /// keys can be removed (pins only stop eviction) and lose their pins. Keys continuing this one become chain roots.
    /// </summary>
    /// <returns><see cref="WireStatus.Ok"/>, <see cref="WireStatus.NotFound"/> or <see cref="WireStatus.InvalidKey"/>.</returns>
    public WireStatus Remove(ReadOnlySpan<byte> key) => WithSlot(key, slot =>
    {
        Detach(slot);
        _removes++;
    });

    /// <summary>Adds a pin: a pinned value is never evicted (it can still be overwritten or removed).</summary>
    /// <returns><see cref="WireStatus.Ok"/>, <see cref="WireStatus.NotFound"/> or <see cref="WireStatus.InvalidKey"/>.</returns>
    public WireStatus Pin(ReadOnlySpan<byte> key) => WithSlot(key, slot =>
    {
        if (++slot.PinCount == 1)
        {
            _pinnedKeys++;
            _policy.OnPinChanged(slot);
        }
    });

    /// <summary>Removes one pin; unpinning a key with no pins is a no-op that returns Ok.</summary>
    /// <returns><see cref="WireStatus.Ok"/>, <see cref="WireStatus.NotFound"/> or <see cref="WireStatus.InvalidKey"/>.</returns>
    public WireStatus Unpin(ReadOnlySpan<byte> key) => WithSlot(key, slot =>
    {
        if (slot.PinCount > 0 && --slot.PinCount == 0)
        {
            _pinnedKeys--;
            _policy.OnPinChanged(slot);
        }
    });

    /// <summary>A consistent snapshot of the counters.</summary>
    public StoreStats GetStats()
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            return new StoreStats(
                Options.Capacity, AllocatedBytes, _liveBytes, _index.Count, _reservations, _activeLeases, _pinnedKeys,
                _hits, _misses, _puts, _removes, _evictions, _evictedBytes, _outOfMemory,
                (double)_liveBytes / Options.Capacity, _allocator.LargestFreeExtentBytes, _lateLinks, _lateParents.Count);
        }
    }

    /// <summary>Stops the reaper and frees the arena. See the class remarks for what must have stopped first.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _reaper.Dispose();
        _arena.Dispose();
    }

    /// <summary>Allocates, evicting first down to the low watermark if the high one would be crossed, then until it fits.</summary>
    private bool TryAllocateWithEviction(long length, long size, out long offset)
    {
        if (AllocatedBytes + size > _highWaterBytes)
        {
            while (AllocatedBytes + size > _lowWaterBytes && EvictOne())
            {
            }
        }

        // The allocator may still fail on fragmentation (no extent long enough): keep evicting until it fits.
        while (!_allocator.TryAllocate(length, out offset))
        {
            if (!EvictOne())
            {
                return false;
            }
        }

        return true;
    }

    private bool EvictOne()
    {
        Slot? victim = _policy.TryPickVictim(_canEvict);
        if (victim is null)
        {
            return false;
        }

        _evictions++;
        _evictedBytes += victim.Current.Length;
        Detach(victim);
        Evicted?.Invoke(victim.Key.ToArray());
        return true;
    }

    /// <summary>Takes a live slot out of the index and retires its value.</summary>
    private void Detach(Slot slot)
    {
        ClearPromoted(slot);
        _index.Remove(slot);
        _ordered.Remove(slot);
        slot.IsLive = false;
        _policy.OnRemove(slot);
        ChainLinks.Detach(slot, _policy);
        if (slot.PinCount > 0)
        {
            _pinnedKeys--;
        }

        _liveBytes -= slot.Current.Length;
        Retire(slot.Current);
    }

    // Core safety rule: a version's space goes back to the allocator only when the version is invisible (retired:
    // overwritten, removed or evicted) AND no lease holds it. Retire frees at once only with zero leases; otherwise
    // ReleaseLocked frees it when the last lease goes. Eviction never picks a leased value (_canEvict), so evicted
    // versions are freed immediately. Readers therefore never see their bytes reused under them.
    private void Retire(ValueVersion version)
    {
        version.State = VersionState.Retired;
        Uncount(version);
        if (version.LeaseCount == 0)
        {
            FreeSpace(version);
        }
    }

    private void FreeSpace(ValueVersion version)
    {
        if (version is StagedVersion staged) staged.Owner.Free(version);
        else _allocator.Free(version.Offset);
        version.State = VersionState.Freed;
    }

    private WireStatus WithSlot(ReadOnlySpan<byte> key, Action<Slot> action) => WithSlot(key, slot =>
    {
        action(slot);
        return true;
    });

    private WireStatus WithSlot(ReadOnlySpan<byte> key, Func<Slot, bool> action)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!IsValidKey(key))
            {
                return WireStatus.InvalidKey;
            }

            if (!TryGetLive(key, out Slot? slot))
            {
                return WireStatus.NotFound;
            }

            return action(slot) ? WireStatus.Ok : WireStatus.NotFound;
        }
    }

    private bool IsValidKey(ReadOnlySpan<byte> key) => key.Length >= 1 && key.Length <= Options.MaxKeyBytes;

    private void CheckOwner(Reservation reservation)
    {
        ArgumentNullException.ThrowIfNull(reservation);
        if (reservation.Store != this)
        {
            throw new ArgumentException("The reservation belongs to another store.", nameof(reservation));
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
