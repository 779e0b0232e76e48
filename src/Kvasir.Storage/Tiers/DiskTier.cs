using System.Buffers;
using Kvasir.Protocol;
using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tiers;

/// <summary>
/// The local-disk tier: an append-only log of records in segment files, each segment with an index file that
/// names its records (docs/tiers.md). The in-memory index maps each key to its newest record — a value, or a
/// tombstone that hides older ones — by version (<see cref="VersionClock"/>), so a newer record always wins,
/// whatever order writes complete or segments are read in. Writes go through one writer thread
/// (<see cref="DiskWriter"/>): versions are taken in the order records are laid down, so disk order and version
/// order agree. Reads are blocking preads, made on tier threads by the caller. Capacity is kept by dropping the
/// oldest segment; a drop visits only the keys of that segment, never the whole index.
/// </summary>
/// <remarks>
/// Every read verifies the record's header (magic, CRC over header and key, its own position) and the value's
/// CRC-32C: a damaged record is a miss, never data. Recovery reads only the offsets that index entries name, so
/// bytes inside a stored value are never taken for a record; a record whose header is damaged hides every older
/// version of any key with its key CRC (a miss rather than an older value). Thread-safe: one lock guards the
/// index, the segment table and the counters; no I/O happens under it.
/// </remarks>
internal sealed class DiskTier : IDisposable
{
    /// <summary>Keys unindexed per lock hold while a segment is dropped.</summary>
    private const int DropChunk = 4096;

    private readonly IDeviceFactory _factory;
    private readonly VersionClock _clock;
    private readonly Lock _gate = new();
    private readonly Dictionary<byte[], DiskEntry> _index = new(ByteKeyComparer.Instance);
    private readonly Dictionary<byte[], DiskEntry>.AlternateLookup<ReadOnlySpan<byte>> _lookup;
    private readonly SortedDictionary<int, DiskSegment> _segments = [];
    private readonly DiskWriter _writer;
    private DiskSegment? _current;
    private int _lastId;
    private long _bytes;
    private long _liveKeys;
    private bool _disposed;

    private long _hits, _misses, _writes, _writeErrors, _readErrors, _corrupt, _droppedKeys, _deletedSegments, _recovered,
        _tornRecords, _damagedRecords, _dropVisits, _syncs, _legacyFiles;
    private string? _lastError;
    private long _lastErrorTicks = long.MinValue;
    private bool _full;

    public DiskTier(IDeviceFactory factory, long capacity, long segmentBytes, DiskSyncMode sync, VersionClock clock)
    {
        _factory = factory;
        _clock = clock;
        Capacity = capacity;
        SegmentBytes = segmentBytes > 0 ? segmentBytes : Math.Clamp(capacity / 8, 1L << 20, 256L << 20);
        if (Capacity < 2 * SegmentBytes) throw new ArgumentException($"disk capacity {capacity} must hold at least two segments of {SegmentBytes} bytes");
        Sync = sync;
        _lookup = _index.GetAlternateLookup<ReadOnlySpan<byte>>();
        Recover();
        _writer = new DiskWriter(this);
    }

    public long Capacity { get; }

    public long SegmentBytes { get; }

    public DiskSyncMode Sync { get; }

    /// <summary>Failing: the disk is full, or an error happened in the last 10 s. Null when healthy.</summary>
    public string? Degraded
    {
        get
        {
            lock (_gate)
            {
                if (_full) return $"disk full: {_lastError}";
                if (Environment.TickCount64 - _lastErrorTicks < 10_000) return _lastError;
                return _legacyFiles > 0 ? $"{_legacyFiles} segment files of the version-1 format are ignored (delete segment-*.kvd)" : null;
            }
        }
    }

    /// <summary>Index entries visited by segment drops (each drop visits the keys of its segment, no others).</summary>
    internal long DropVisits
    {
        get { lock (_gate) return _dropVisits; }
    }

    /// <summary>Values the index held when recovery ended.</summary>
    public long RecoveredKeys
    {
        get { lock (_gate) return _recovered; }
    }

    /// <summary>Keys with a value on disk (tombstones not counted).</summary>
    public long LiveKeys
    {
        get { lock (_gate) return _liveKeys; }
    }

    /// <summary>
    /// Writes a value record; completes once it is written as <see cref="Sync"/> promises, with the version it took.
    /// <paramref name="expiresAtUnixMs"/> is when the value expires (Unix ms, kept in the record's index entry; 0: never).
    /// </summary>
    /// <remarks>The caller keeps the <paramref name="length"/> bytes at <paramref name="value"/> unchanged until the task completes.</remarks>
    public Task<DiskWrite> WriteAsync(byte[] key, nint value, long length, uint crc32c, long version = 0, long expiresAtUnixMs = 0)
        => _writer.Enqueue(key, value, length, crc32c, DiskRecord.KindValue, version, expiresAtUnixMs);

    /// <summary>Writes a tombstone: the key and every older version of it are gone, durably.</summary>
    public Task<DiskWrite> RemoveAsync(byte[] key) => _writer.Enqueue(key, 0, 0, 0, DiskRecord.KindTombstone);

    /// <summary>Finds the key's newest value (false for a tombstone, a value past its expiry, or no record).</summary>
    public bool TryLocate(ReadOnlySpan<byte> key, out DiskEntry? entry)
    {
        lock (_gate)
        {
            if (_lookup.TryGetValue(key, out entry) && !entry.Tombstone && !entry.Expired) return true;
            _misses++;
            entry = null;
            return false;
        }
    }

    /// <summary>Keys with a live value (not a tombstone, not expired) that start with <paramref name="prefix"/>: one pass over the index (for removal by prefix).</summary>
    public List<byte[]> KeysWithPrefix(ReadOnlySpan<byte> prefix)
    {
        var keys = new List<byte[]>();
        lock (_gate)
        {
            foreach (var (key, entry) in _index)
                if (!entry.Tombstone && !entry.Expired && key.AsSpan().StartsWith(prefix)) keys.Add(key);
        }
        return keys;
    }

    /// <summary>Whether a live value of <paramref name="key"/> (not past its expiry) is on disk (no counters touched).</summary>
    public bool Contains(ReadOnlySpan<byte> key)
    {
        lock (_gate) return _lookup.TryGetValue(key, out var e) && !e.Tombstone && !e.Expired;
    }

    /// <summary>The version of the key's newest record (value or tombstone); 0 when the disk knows nothing of it.</summary>
    public long NewestVersion(ReadOnlySpan<byte> key)
    {
        lock (_gate) return _lookup.TryGetValue(key, out var e) ? e.Version : 0;
    }

    /// <summary>
    /// Reads a located value into <paramref name="destination"/> (exactly its length), checking the record's header
    /// against the entry and the value's CRC. Blocking: call it on a tier thread. False is a miss, and the entry is
    /// dropped so it is not tried again.
    /// </summary>
    public bool TryRead(ReadOnlySpan<byte> key, DiskEntry entry, Span<byte> destination)
    {
        DiskSegment? segment;
        lock (_gate)
        {
            if (!_segments.TryGetValue(entry.Segment, out segment) || !segment.TryAcquire()) segment = null;
        }
        string? failure = null;
        bool corrupt = false;
        if (segment is null) failure = "segment dropped";
        else
        {
            byte[] header = ArrayPool<byte>.Shared.Rent(DiskRecord.HeaderSize + key.Length);
            try
            {
                var head = header.AsSpan(0, DiskRecord.HeaderSize + key.Length);
                if (segment.Data.Read(entry.Offset, head) != head.Length) (failure, corrupt) = ("short read (torn record)", true);
                else if (!DiskRecord.TryParseHeader(head, out var r, out int keyLength) || keyLength != key.Length
                    || !DiskRecord.HeaderCrcMatches(head, head[DiskRecord.HeaderSize..]) || !head[DiskRecord.HeaderSize..].SequenceEqual(key)
                    || r.Kind != DiskRecord.KindValue || r.Offset != entry.Offset || r.Segment != entry.Segment || r.Sequence != entry.Version
                    || r.ValueLength != entry.Length || r.ValueCrc != entry.Crc32C)
                {
                    (failure, corrupt) = ("damaged record header", true);
                }
                else if (segment.Data.Read(entry.Offset + DiskRecord.HeaderSize + key.Length, destination) != destination.Length)
                {
                    (failure, corrupt) = ("short read (torn record)", true);
                }
                else if (Crc32C.Compute(destination) != entry.Crc32C)
                {
                    (failure, corrupt) = ("CRC-32C mismatch", true);
                }
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or UnauthorizedAccessException)
            {
                failure = $"read error: {ex.Message}";
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(header);
                segment.Release();
            }
        }
        lock (_gate)
        {
            if (failure is null)
            {
                _hits++;
                return true;
            }
            if (_lookup.TryGetValue(key, out var current) && current == entry)
            {
                _lookup.Remove(key, out _, out _);
                _liveKeys--;
            }
            if (corrupt) _corrupt++;
            else if (segment is not null) _readErrors++;
            if (segment is not null) Fail($"{segment.Data.Name}: {failure}");
            return false;
        }
    }

    // ---- Used by the writer thread only. ----

    /// <summary>
    /// Places a record: rotates to a new segment when it does not fit, picks segments to drop while the tier is over
    /// capacity, and takes the record's version, all under the lock so disk order is version order (except for a version a
    /// writer chose, <paramref name="requested"/>: recovery and <see cref="Apply"/> compare versions, never positions).
    /// </summary>
    internal (DiskSegment Segment, long Offset, long IndexOffset, long Version) Place(long recordBytes, List<DiskSegment> toDrop, DiskSegment? opened, long requested)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (opened is not null)
            {
                _segments[opened.Id] = opened;
                _current = opened;
            }
            var current = _current!;
            while (_bytes + recordBytes + DiskRecord.IndexEntrySize > Capacity && _segments.Count > 1)
            {
                var oldest = _segments.First().Value;
                _segments.Remove(oldest.Id);
                oldest.Dropped = true;
                _bytes -= oldest.Bytes;
                _deletedSegments++;
                toDrop.Add(oldest);
            }
            long offset = current.DataTail, indexOffset = current.IndexTail;
            current.DataTail += recordBytes;
            current.IndexTail += DiskRecord.IndexEntrySize;
            _bytes += recordBytes + DiskRecord.IndexEntrySize;
            return (current, offset, indexOffset, _clock.Take(requested));
        }
    }

    /// <summary>Whether a record of <paramref name="recordBytes"/> needs a new segment first.</summary>
    internal bool NeedsNewSegment(long recordBytes)
    {
        lock (_gate) return _current is null || _current.DataTail + recordBytes > SegmentBytes;
    }

    /// <summary>Opens the next segment's files (outside the lock; only the writer thread calls this).</summary>
    internal DiskSegment OpenNext()
    {
        int id;
        lock (_gate) id = ++_lastId;
        var data = _factory.Open(DiskSegment.DataName(id));
        try
        {
            return new DiskSegment(id, data, _factory.Open(DiskSegment.IndexName(id)));
        }
        catch
        {
            data.Dispose();
            throw;
        }
    }

    /// <summary>Forgets the keys of a dropped segment, a chunk per lock hold, then deletes its files.</summary>
    internal void Drop(DiskSegment segment)
    {
        var keys = segment.Keys;
        for (int start = 0; start < keys.Count; start += DropChunk)
        {
            lock (_gate)
            {
                int end = Math.Min(keys.Count, start + DropChunk);
                for (int i = start; i < end; i++)
                {
                    _dropVisits++;
                    if (_lookup.TryGetValue(keys[i], out var e) && e.Segment == segment.Id)
                    {
                        _lookup.Remove(keys[i], out _, out _);
                        if (!e.Tombstone)
                        {
                            _liveKeys--;
                            _droppedKeys++;
                        }
                    }
                }
            }
        }
        keys.Clear();
        keys.TrimExcess();
        try
        {
            _factory.Delete(segment.Data.Name);
            _factory.Delete(segment.Index.Name);
        }
        catch (IOException ex)
        {
            lock (_gate) Fail($"cannot delete {segment.Data.Name}: {ex.Message}");
        }
        segment.Release();
    }

    /// <summary>Indexes a written record if it is newer than what the index has.</summary>
    internal void Apply(byte[] key, DiskSegment segment, long offset, long length, uint crc, long version, bool tombstone, long expiresAt = 0)
    {
        lock (_gate)
        {
            _writes++;
            _full = false;
            if (segment.Dropped) return;
            byte[] stored = key;
            if (_lookup.TryGetValue(key, out byte[]? actual, out var existing))
            {
                if (existing.Version >= version) return;
                stored = actual;
                if (!existing.Tombstone) _liveKeys--;
            }
            _index[stored] = new DiskEntry(segment.Id, offset, length, crc, version, tombstone, expiresAt);
            if (!tombstone) _liveKeys++;
            segment.Keys.Add(stored);
        }
    }

    internal void WriteFailed(Exception ex, string device)
    {
        lock (_gate)
        {
            _writeErrors++;
            if (ex.Message.Contains("space", StringComparison.OrdinalIgnoreCase) || ex.HResult == 28 /* ENOSPC */) _full = true;
            Fail($"{device}: write error: {ex.Message}");
        }
    }

    internal void Synced()
    {
        lock (_gate) _syncs++;
    }

    private void Fail(string reason)
    {
        _lastError = reason;
        _lastErrorTicks = Environment.TickCount64;
    }

    /// <summary>
    /// Rebuilds the index from every segment's index file, in id order. Each entry's record header is read at the
    /// offset the entry names and must match it; zeroed or torn entries are skipped (a write that never finished),
    /// and a damaged header hides older versions of its key (by key CRC) instead of letting them come back.
    /// </summary>
    private void Recover()
    {
        var ids = new List<int>();
        foreach (var name in _factory.List())
        {
            int id = DiskSegment.ParseDataName(name);
            if (id > 0) ids.Add(id);
            else if (name.StartsWith("segment-", StringComparison.Ordinal) && name.EndsWith(".kvd", StringComparison.Ordinal)) _legacyFiles++;
        }
        ids.Sort();
        var damaged = new Dictionary<uint, (long Version, int Segment)>();
        long maxVersion = 0;
        var entryBuffer = new byte[DiskRecord.IndexEntrySize * 1024];
        var header = new byte[DiskRecord.HeaderSize + DiskRecord.MaxKeyBytes];
        foreach (int id in ids)
        {
            var data = _factory.Open(DiskSegment.DataName(id));
            var segment = new DiskSegment(id, data, _factory.Open(DiskSegment.IndexName(id)));
            _segments[id] = segment;
            _lastId = Math.Max(_lastId, id);
            long indexLength = segment.Index.Length, dataLength = segment.Data.Length;
            for (long at = 0; at < indexLength; at += entryBuffer.Length)
            {
                int got = segment.Index.Read(at, entryBuffer);
                for (int e = 0; e + DiskRecord.IndexEntrySize <= got; e += DiskRecord.IndexEntrySize)
                {
                    var raw = entryBuffer.AsSpan(e, DiskRecord.IndexEntrySize);
                    if (!DiskRecord.TryParseIndexEntry(raw, id, out var r, out int keyLength, out uint keyCrc, out long expiresAt))
                    {
                        _tornRecords++;   // never written (a hole left by a crash) or torn
                        continue;
                    }
                    maxVersion = Math.Max(maxVersion, r.Sequence);
                    var head = header.AsSpan(0, DiskRecord.HeaderSize + keyLength);
                    if (r.Offset + head.Length + r.ValueLength > dataLength || segment.Data.Read(r.Offset, head) != head.Length
                        || !DiskRecord.TryParseHeader(head, out var h, out int hKeyLength) || hKeyLength != keyLength
                        || !DiskRecord.HeaderCrcMatches(head, head[DiskRecord.HeaderSize..]) || h != r
                        || Crc32C.Compute(head[DiskRecord.HeaderSize..]) != keyCrc)
                    {
                        _damagedRecords++;
                        if (!damaged.TryGetValue(keyCrc, out var d) || d.Version < r.Sequence) damaged[keyCrc] = (r.Sequence, id);
                        continue;
                    }
                    var key = head[DiskRecord.HeaderSize..].ToArray();
                    // An expired value is indexed like any other (it still hides older versions of its key); reads treat it as a miss.
                    Apply(key, segment, r.Offset, r.ValueLength, r.ValueCrc, r.Sequence, r.Kind == DiskRecord.KindTombstone, expiresAt);
                    _writes--;   // Apply counts writes; recovery is not one
                }
            }
            segment.DataTail = dataLength;
            segment.IndexTail = indexLength;
            _bytes += segment.Bytes;
        }
        if (damaged.Count > 0)
        {
            foreach (var (key, entry) in _index.ToList())
            {
                if (!damaged.TryGetValue(Crc32C.Compute(key), out var d) || entry.Version >= d.Version) continue;
                if (!entry.Tombstone) _liveKeys--;
                _index[key] = new DiskEntry(d.Segment, 0, 0, 0, d.Version, tombstone: true);
                if (_segments.TryGetValue(d.Segment, out var s)) s.Keys.Add(key);
            }
        }
        _clock.AtLeast(maxVersion);
        _recovered = _liveKeys;
        // New records go to a fresh segment: a recovered one may end in a torn record or a hole.
        _current = null;
    }

    /// <summary>Counters, by STATS name (prefix "disk_").</summary>
    public IEnumerable<KeyValuePair<string, long>> Stats()
    {
        lock (_gate)
        {
            return
            [
                new("disk_capacity_bytes", Capacity), new("disk_bytes", _bytes), new("disk_keys", _liveKeys),
                new("disk_hits", _hits), new("disk_misses", _misses), new("disk_writes", _writes),
                new("disk_write_errors", _writeErrors), new("disk_read_errors", _readErrors), new("disk_corrupt", _corrupt),
                new("disk_dropped_keys", _droppedKeys), new("disk_deleted_segments", _deletedSegments),
                new("disk_recovered_keys", _recovered), new("disk_torn_records", _tornRecords),
                new("disk_damaged_records", _damagedRecords), new("disk_full", _full ? 1 : 0), new("disk_syncs", _syncs),
                new("disk_queued", _writer.Queued),
            ];
        }
    }

    /// <summary>Forces every segment to stable storage (fsync).</summary>
    public void Flush()
    {
        DiskSegment[] segments;
        lock (_gate) segments = [.. _segments.Values];
        foreach (var s in segments)
        {
            if (!s.TryAcquire()) continue;
            try
            {
                s.Data.Flush();
                s.Index.Flush();
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
                lock (_gate) Fail($"{s.Data.Name}: flush failed: {ex.Message}");
            }
            finally
            {
                s.Release();
            }
        }
    }

    /// <summary>Lets queued writes finish, flushes every segment to stable storage, then closes the files.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
        }
        _writer.Dispose();
        Flush();
        lock (_gate)
        {
            _disposed = true;
            foreach (var s in _segments.Values) s.Release();
            _segments.Clear();
        }
    }
}
