using System.Diagnostics.CodeAnalysis;
using Kvasir.Protocol;
using Kvasir.Storage.Internal;

namespace Kvasir.Storage;

/// <content>
/// Key management: listing by prefix (scan pages), per-key info, expiry (TTL) and namespace quotas. All state here is
/// guarded by the store's one lock, like the index it mirrors.
/// </content>
public sealed partial class KvArenaStore
{
    /// <summary>Keys the timer's sweep looks at per tick, so a sweep never holds the lock long.</summary>
    internal const int SweepBatch = 4096;

    // The index's keys in byte order: what scans page through (a page costs O(log n + page) under the lock).
    private readonly OrderedKeys _ordered = new();
    private readonly NamespaceQuota[] _quotas;
    private readonly long[] _namespaceUsed;
    private long _quotaRefusals;
    private long _expired;
    private byte[]? _sweepCursor;

    /// <summary>
    /// Called with each key whose value expired and was detached, under the store's lock: it must be quick and must
    /// not call back into the store. The tiered store uses it to remove the key's copies below DRAM.
    /// </summary>
    public Action<byte[]>? Expired { get; set; }

    /// <summary>Values that expired (found expired on lookup or by the sweep) since the store opened.</summary>
    public long ExpiredCount
    {
        get { lock (_gate) return _expired; }
    }

    /// <summary>PUTs refused with <see cref="WireStatus.QuotaExceeded"/> since the store opened.</summary>
    public long QuotaRefusals
    {
        get { lock (_gate) return _quotaRefusals; }
    }

    /// <summary>
    /// Up to <paramref name="limit"/> live keys that start with <paramref name="prefix"/> and sort after
    /// <paramref name="after"/> (empty: from the first), in byte order. Keys written during a scan that sort after
    /// the cursor are listed by a later page; keys removed are not. One page holds the lock for O(log n + limit).
    /// </summary>
    public KeyPage Scan(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> after, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        if (prefix.Length > Options.MaxKeyBytes) return new KeyPage([], false);
        byte[] upper = new byte[Options.MaxKeyBytes + 1];
        prefix.CopyTo(upper);
        upper.AsSpan(prefix.Length).Fill(0xFF);
        byte[] lower = after.IsEmpty || after.SequenceCompareTo(prefix) < 0 ? prefix.ToArray() : [.. after, 0];
        var list = new List<KeyEntry>(Math.Min(limit, 1024));
        lock (_gate)
        {
            ThrowIfDisposed();
            if (ByteOrderComparer.Instance.Compare(lower, upper) > 0) return new KeyPage([], false);
            long now = Environment.TickCount64;
            foreach (Slot slot in _ordered.Between(lower, upper))
            {
                if (list.Count == limit) return new KeyPage(list, true);
                if (!IsExpired(slot, now)) list.Add(new KeyEntry(slot.Key.ToArray(), slot.Current.Length));
            }
        }

        return new KeyPage(list, false);
    }

    /// <summary>The key's DRAM value: length, age, time to live, pins, leases and namespace; null when DRAM has no live value.</summary>
    public KeyInfo? Info(ReadOnlySpan<byte> key)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            if (!IsValidKey(key) || !TryGetLive(key, out Slot? slot)) return null;
            long now = Environment.TickCount64;
            return new KeyInfo(StoreTier.Dram, slot.Current.Length, now - slot.WrittenAt, slot.ExpiresAt == 0 ? 0 : Math.Max(1, slot.ExpiresAt - now),
                slot.PinCount, slot.Current.LeaseCount, NamespaceLocked(key));
        }
    }

    /// <summary>The namespace <paramref name="key"/> falls in (longest matching prefix), with its budget and use; null when none.</summary>
    public NamespaceUsage? NamespaceOf(ReadOnlySpan<byte> key)
    {
        lock (_gate) return NamespaceLocked(key);
    }

    /// <summary>Every namespace with its budget and use.</summary>
    public IReadOnlyList<NamespaceUsage> Namespaces()
    {
        lock (_gate) return [.. _quotas.Select((q, i) => new NamespaceUsage(q.Prefix, q.BudgetBytes, _namespaceUsed[i]))];
    }

    /// <summary>
    /// Looks at up to <paramref name="max"/> keys from where the last sweep stopped (wrapping round) and removes the
    /// expired ones. Returns how many it removed. Bounded, so the lock is never held long.
    /// </summary>
    public int SweepExpired(int max)
    {
        int removed = 0;
        lock (_gate)
        {
            if (_disposed || _ordered.Count == 0) return 0;
            long now = Environment.TickCount64;
            byte[] from = _sweepCursor is null || _sweepCursor.AsSpan().SequenceCompareTo(_ordered.Max!.Key) >= 0 ? [] : _sweepCursor;
            var expired = new List<Slot>();
            int seen = 0;
            Slot? last = null;
            foreach (Slot slot in _ordered.Between(from, null))
            {
                if (seen++ == max) break;
                last = slot;
                if (IsExpired(slot, now)) expired.Add(slot);
            }

            _sweepCursor = seen > max ? last!.Key.ToArray() : null;
            foreach (var slot in expired)
            {
                Detach(slot);
                _expired++;
                removed++;
                Expired?.Invoke(slot.Key.ToArray());
            }
        }

        return removed;
    }

    /// <summary>Looks up a live value; an expired one is detached here (lazy reclaim) and reported absent.</summary>
    private bool TryGetLive(ReadOnlySpan<byte> key, [NotNullWhen(true)] out Slot? slot)
    {
        if (!_index.TryGetValue(key, out slot)) return false;
        if (!IsExpired(slot, Environment.TickCount64)) return true;
        Detach(slot);
        _expired++;
        Expired?.Invoke(slot.Key.ToArray());
        slot = null;
        return false;
    }

    private static bool IsExpired(Slot slot, long now) => slot.ExpiresAt != 0 && now >= slot.ExpiresAt;

    /// <summary>The deadline for a value written at <paramref name="now"/> that lives <paramref name="ttl"/>; 0 for no expiry.</summary>
    private static long Deadline(TimeSpan? ttl, long now) => ttl is { } t && t > TimeSpan.Zero ? now + (long)t.TotalMilliseconds : 0;

    /// <summary>Under the lock: QuotaExceeded when storing <paramref name="length"/> bytes under the key would take its namespace over budget.</summary>
    private WireStatus CheckQuota(ReadOnlySpan<byte> key, long length, out int ns)
    {
        ns = Match(key);
        if (ns < 0) return WireStatus.Ok;
        long replaced = _index.TryGetValue(key, out Slot? existing) && existing.Current.Namespace == ns ? existing.Current.Length : 0;
        return _namespaceUsed[ns] - replaced + length > _quotas[ns].BudgetBytes ? WireStatus.QuotaExceeded : WireStatus.Ok;
    }

    private int Match(ReadOnlySpan<byte> key)
    {
        int best = -1;
        for (int i = 0; i < _quotas.Length; i++)
        {
            if (key.StartsWith(_quotas[i].Prefix) && (best < 0 || _quotas[i].Prefix.Length > _quotas[best].Prefix.Length)) best = i;
        }

        return best;
    }

    private NamespaceUsage? NamespaceLocked(ReadOnlySpan<byte> key)
    {
        int ns = Match(key);
        return ns < 0 ? null : new NamespaceUsage(_quotas[ns].Prefix, _quotas[ns].BudgetBytes, _namespaceUsed[ns]);
    }

    /// <summary>A version stops counting against its namespace when it becomes invisible (retired or aborted).</summary>
    private void Uncount(ValueVersion version)
    {
        if (version.Namespace < 0) return;
        _namespaceUsed[version.Namespace] -= version.Length;
        version.Namespace = -1;
    }
}
