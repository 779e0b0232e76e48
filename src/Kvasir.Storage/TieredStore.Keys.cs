using System.Collections.Concurrent;
using Kvasir.Protocol;

namespace Kvasir.Storage;

/// <content>
/// Key management over every tier: listing (scan pages of DRAM), per-key info, removal by prefix, and expiry below
/// DRAM. A value's deadline lives with its DRAM slot; with lower tiers it is also kept here (key → deadline), so a
/// copy read back from the disk or the shared tier after its DRAM copy was evicted is still a miss once expired, and
/// the expiry of a DRAM value removes its copies below. The tiers below also write the deadline down (the disk
/// tier in each record's index entry, the shared tier in each file's header, as Unix time): after a restart, or on
/// another node reading the shared tier, a copy past its deadline is a miss, and a promoted copy keeps it.
/// </content>
public sealed partial class TieredStore
{
    // Keys written with an expiry while lower tiers exist: key → Environment.TickCount64 deadline.
    private readonly ConcurrentDictionary<byte[], long> _deadlines = new(Internal.ByteKeyComparer.Instance);
    private readonly ConcurrentDictionary<byte[], byte> _expiring = new(Internal.ByteKeyComparer.Instance);

    /// <summary>Which tiers <see cref="Scan"/> lists: DRAM only (keys held only by a lower tier are not listed).</summary>
    public const StoreTier ScanTiers = StoreTier.Dram;

    /// <summary>A page of keys in DRAM (see <see cref="KvArenaStore.Scan"/>).</summary>
    public KeyPage Scan(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> after, int limit) => _dram.Scan(prefix, after, limit);

    /// <summary>What the store knows of the key: its DRAM value, else its disk record; null when neither has it (or it expired).</summary>
    public KeyInfo? Info(ReadOnlySpan<byte> key)
    {
        if (!ValidKey(key)) return null;
        if (_dram.Info(key) is { } info) return info;
        if (_disk is null || ExpiredBelow(key) || !_disk.TryLocate(key, out var entry)) return null;
        long ttl = entry!.ExpiresAt != 0 ? Math.Max(1, Tiers.Expiry.Remaining(entry.ExpiresAt))
            : _deadlines.TryGetValue(key.ToArray(), out long deadline) ? Math.Max(1, deadline - Environment.TickCount64) : 0;
        return new KeyInfo(StoreTier.Disk, entry.Length, 0, ttl, 0, 0, _dram.NamespaceOf(key));
    }

    /// <summary>The namespace the key falls in, with its budget and use; null when none.</summary>
    public NamespaceUsage? NamespaceOf(ReadOnlySpan<byte> key) => _dram.NamespaceOf(key);

    /// <summary>Every namespace with its budget and use.</summary>
    public IReadOnlyList<NamespaceUsage> Namespaces() => _dram.Namespaces();

    /// <summary>
    /// Removes every key that starts with <paramref name="prefix"/> (empty: every key) from every tier: DRAM keys a
    /// page of <paramref name="page"/> at a time (the lock is held for one page's lookup, never for the whole
    /// removal), then keys only the disk holds. Keys in the shared tier that neither DRAM nor the disk lists are not
    /// found (the shared tier is not enumerated). Returns how many keys were removed and how many could not be (a
    /// disk tombstone failed).
    /// </summary>
    public async Task<(long Removed, long Failed)> RemovePrefixAsync(ReadOnlyMemory<byte> prefix, int page = 1024)
    {
        long removed = 0, failed = 0;
        byte[] after = [];
        while (true)
        {
            var batch = _dram.Scan(prefix.Span, after, page);
            foreach (var entry in batch.Keys) Count(await RemoveAsync(entry.Key).ConfigureAwait(false));
            if (!batch.More || batch.Keys.Count == 0) break;
            after = batch.Keys[^1].Key;
        }
        if (_disk is not null)
        {
            foreach (var key in _disk.KeysWithPrefix(prefix.Span)) Count(await RemoveAsync(key).ConfigureAwait(false));
        }
        return (removed, failed);

        void Count(WireStatus status)
        {
            if (status == WireStatus.Ok) removed++;
            else if (status != WireStatus.NotFound) failed++;
        }
    }

    /// <summary>Values that expired since the store opened (found on lookup or by the sweep).</summary>
    public long ExpiredCount => _dram.ExpiredCount;

    /// <summary>PUTs refused for a namespace's budget since the store opened.</summary>
    public long QuotaRefusals => _dram.QuotaRefusals;

    /// <summary>Runs one bounded expiry sweep now (the reaper timer does it every tick); returns the values removed.</summary>
    public int SweepExpired(int max = KvArenaStore.SweepBatch) => _dram.SweepExpired(max);

    private void NoteDeadline(byte[] key, TimeSpan? ttl)
    {
        var t = ttl ?? _dram.Options.DefaultTtl;
        if (t is { } life && life > TimeSpan.Zero) _deadlines[key] = Environment.TickCount64 + (long)life.TotalMilliseconds;
        else _deadlines.TryRemove(key, out _);
    }

    /// <summary>True when the key was written with an expiry that has passed: its copies below are misses, and are removed.</summary>
    private bool ExpiredBelow(ReadOnlySpan<byte> key)
    {
        if (_deadlines.IsEmpty) return false;
        byte[] copy = key.ToArray();
        if (!_deadlines.TryGetValue(copy, out long deadline) || Environment.TickCount64 < deadline) return false;
        OnExpired(copy);
        return true;
    }

    /// <summary>A value expired (in DRAM, under its lock, or found expired below): its copies below go, off this thread.</summary>
    private void OnExpired(byte[] key)
    {
        if (!_deadlines.TryGetValue(key, out long deadline) || Environment.TickCount64 < deadline) return;
        if (!_expiring.TryAdd(key, 0)) return;   // a removal is under way
        // The deadline stays until the tombstone is down, so a read meanwhile is still a miss; a rewrite replaces
        // the deadline, and then only the expired one is dropped.
        _ = Task.Run(async () =>
        {
            try
            {
                if (_shared is not null) BumpEpoch(key);
                await RemoveBelowAsync(key).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                // The store closed first: the copy below stays; its recorded deadline makes it a miss after a restart.
            }
            finally
            {
                _deadlines.TryRemove(new KeyValuePair<byte[], long>(key, deadline));
                _expiring.TryRemove(key, out _);
            }
        });
    }
}
