using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using Kvasir.Storage.Internal;

namespace Kvasir.Storage.Tiers;

/// <summary>Where a value lives on disk.</summary>
public sealed record DiskEntry(int Segment, long Offset, long Length, uint Crc32C, long Sequence);

/// <summary>
/// The local-disk tier: an append-only log of records in segment files (docs/tiers.md).
/// Every value is written when it is stored (so a node killed at any moment comes back with every
/// acknowledged value), the index lives in memory and is rebuilt from the segments on start, and
/// capacity is kept by deleting the oldest segment (its keys leave the tier). Every read checks the
/// value's CRC-32C: a mismatch, a torn record or an I/O error is a miss, never data.
/// </summary>
/// <remarks>
/// Record: a 32-byte header — u32 magic "KVDR", u16 version 1, u16 kind (1 value, 2 tombstone),
/// u32 key length, u32 value CRC-32C, u64 value length, u32 header CRC-32C (of header bytes 0..24
/// and the key), u32 zero — then the key, then the value, padded to 8 bytes. Thread-safe: appends
/// reserve their range under a lock and write outside it; the index is updated after the write.
/// </remarks>
public sealed class DiskTier : IDisposable
{
    internal const uint Magic = 0x5244564B; // "KVDR"
    internal const int HeaderSize = 32;
    private const ushort KindValue = 1, KindTombstone = 2;
    private const string Prefix = "segment-", Suffix = ".kvd";

    private readonly IDeviceFactory _factory;
    private readonly Lock _gate = new();
    private readonly Dictionary<byte[], DiskEntry> _index = new(ByteKeyComparer.Instance);
    private readonly Dictionary<byte[], DiskEntry>.AlternateLookup<ReadOnlySpan<byte>> _lookup;
    private readonly SortedDictionary<int, IDevice> _segments = [];
    private readonly Queue<IDevice> _retired = new();
    private int _current;
    private long _tail;
    private long _sequence;
    private long _bytes;
    private bool _disposed;

    private long _hits, _misses, _writes, _writeErrors, _readErrors, _corrupt, _droppedKeys, _deletedSegments, _recovered, _tornRecords;
    private string? _lastError;
    private long _lastErrorTicks = long.MinValue;
    private bool _full;

    public DiskTier(IDeviceFactory factory, long capacity, long segmentBytes = 0)
    {
        _factory = factory;
        Capacity = capacity;
        SegmentBytes = segmentBytes > 0 ? segmentBytes : Math.Clamp(capacity / 8, 1L << 20, 256L << 20);
        if (Capacity < 2 * SegmentBytes) throw new ArgumentException($"disk capacity {capacity} must hold at least two segments of {SegmentBytes} bytes");
        _lookup = _index.GetAlternateLookup<ReadOnlySpan<byte>>();
        Recover();
    }

    public long Capacity { get; }
    public long SegmentBytes { get; }

    /// <summary>Failing: the last write failed, the disk is full, or an error happened in the last 10 s. Null when healthy.</summary>
    public string? Degraded
    {
        get
        {
            lock (_gate)
            {
                if (_full) return $"disk full: {_lastError}";
                return Environment.TickCount64 - _lastErrorTicks < 10_000 ? _lastError : null;
            }
        }
    }

    public bool Contains(ReadOnlySpan<byte> key)
    {
        lock (_gate) return _lookup.ContainsKey(key);
    }

    public bool TryLocate(ReadOnlySpan<byte> key, out DiskEntry? entry)
    {
        lock (_gate)
        {
            if (_lookup.TryGetValue(key, out entry)) return true;
            _misses++;
            return false;
        }
    }

    /// <summary>
    /// Appends <paramref name="value"/> under <paramref name="key"/>. False when it could not be
    /// written (I/O error, disk full): the tier then simply does not have it.
    /// </summary>
    public bool Append(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, uint crc32c) => Write(key, value, crc32c, KindValue);

    /// <summary>Forgets <paramref name="key"/>, durably (a tombstone, so recovery does not bring it back).</summary>
    public void Remove(ReadOnlySpan<byte> key)
    {
        lock (_gate)
        {
            if (!_lookup.Remove(key, out _, out _)) return;
        }
        Write(key, default, 0, KindTombstone);
    }

    /// <summary>Reads a located value into <paramref name="destination"/> (exactly its length) and checks its CRC. False: a miss.</summary>
    public bool TryRead(ReadOnlySpan<byte> key, DiskEntry entry, Span<byte> destination)
    {
        IDevice? device;
        lock (_gate) _segments.TryGetValue(entry.Segment, out device);
        string? failure = null;
        if (device is null) failure = "segment deleted";
        else
        {
            try
            {
                long valueAt = entry.Offset + HeaderSize + key.Length;
                if (device.Read(valueAt, destination) != destination.Length) failure = "short read (torn record)";
                else if (Crc32C.Compute(destination) != entry.Crc32C) failure = "CRC-32C mismatch";
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or UnauthorizedAccessException)
            {
                failure = $"read error: {ex.Message}";
            }
        }
        lock (_gate)
        {
            if (failure is null) { _hits++; return true; }
            // Drop the entry so it is never tried again (unless a newer write replaced it meanwhile).
            if (_lookup.TryGetValue(key, out var current) && current == entry) _lookup.Remove(key, out _, out _);
            if (failure.StartsWith("CRC", StringComparison.Ordinal) || failure.StartsWith("short", StringComparison.Ordinal)) _corrupt++;
            else _readErrors++;
            Fail($"{device?.Name}: {failure}");
            return false;
        }
    }

    private bool Write(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, uint crc, ushort kind)
    {
        long recordBytes = Align8(HeaderSize + key.Length + value.Length);
        if (recordBytes > SegmentBytes) { lock (_gate) _writeErrors++; return false; }
        IDevice device;
        long offset, sequence;
        int segment;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            try
            {
                if (_tail + recordBytes > SegmentBytes || _segments.Count == 0) Rotate();
                while (_bytes + recordBytes > Capacity && _segments.Count > 1) DeleteOldest();
            }
            catch (IOException ex)
            {
                _writeErrors++;
                Fail($"cannot open a segment: {ex.Message}");
                if (kind == KindValue) _lookup.Remove(key, out _, out _);   // an older copy must not outlive this value
                return false;
            }
            segment = _current;
            device = _segments[segment];
            offset = _tail;
            _tail += recordBytes;
            _bytes += recordBytes;
            sequence = ++_sequence;
        }
        var header = ArrayPool<byte>.Shared.Rent(HeaderSize + key.Length);
        try
        {
            int headerLength = WriteHeader(header, key, value.Length, crc, kind);
            device.Write(offset, header.AsSpan(0, headerLength));
            if (!value.IsEmpty) device.Write(offset + headerLength, value);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or UnauthorizedAccessException)
        {
            lock (_gate)
            {
                _writeErrors++;
                _full = ex.Message.Contains("space", StringComparison.OrdinalIgnoreCase) || ex.HResult == 28 /* ENOSPC */;
                Fail($"{device.Name}: write error: {ex.Message}");
                // The range stays reserved (a hole the recovery scan steps over). An older copy of the key
                // must not stand in for the value that failed: forget it now, and (best effort) durably.
                if (kind == KindValue) _lookup.Remove(key, out _, out _);
            }
            if (kind == KindValue) Write(key, default, 0, KindTombstone);
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }
        lock (_gate)
        {
            _full = false;
            _writes++;
            if (kind == KindValue && _segments.ContainsKey(segment))
            {
                var entry = new DiskEntry(segment, offset, value.Length, crc, sequence);
                if (!_lookup.TryGetValue(key, out var existing) || existing.Sequence < sequence)
                    _lookup[key] = entry;
            }
        }
        return true;
    }

    internal static int WriteHeader(Span<byte> buffer, ReadOnlySpan<byte> key, long valueLength, uint crc, ushort kind)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[4..], 1);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[6..], kind);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[8..], (uint)key.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[12..], crc);
        BinaryPrimitives.WriteInt64LittleEndian(buffer[16..], valueLength);
        key.CopyTo(buffer[HeaderSize..]);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[24..], HeaderCrc(buffer, key));
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[28..], 0);
        return HeaderSize + key.Length;
    }

    private static uint HeaderCrc(ReadOnlySpan<byte> header, ReadOnlySpan<byte> key)
        => Crc32C.Complete(Crc32C.Append(Crc32C.Append(Crc32C.InitialState, header[..24]), key));

    private static long Align8(long n) => (n + 7) & ~7L;

    private static string SegmentName(int id) => $"{Prefix}{id.ToString("D8", CultureInfo.InvariantCulture)}{Suffix}";

    private void Rotate()
    {
        int next = _segments.Count == 0 ? _current + 1 : _segments.Keys.Max() + 1;
        _segments[next] = _factory.Open(SegmentName(next));
        _current = next;
        _tail = 0;
    }

    private void DeleteOldest()
    {
        int oldest = _segments.Keys.First();
        var device = _segments[oldest];
        _segments.Remove(oldest);
        _bytes -= Math.Max(device.Length, oldest == _current ? _tail : 0);
        var lost = _index.Where(p => p.Value.Segment == oldest).Select(p => p.Key).ToList();
        foreach (var k in lost) _index.Remove(k);
        _droppedKeys += lost.Count;
        _deletedSegments++;
        try { _factory.Delete(device.Name); }
        catch (IOException ex) { Fail($"cannot delete {device.Name}: {ex.Message}"); }
        // Readers may still hold the device: close it a few deletions later, not now.
        _retired.Enqueue(device);
        while (_retired.Count > 8) _retired.Dequeue().Dispose();
        if (_bytes < 0) _bytes = 0;
    }

    private void Fail(string reason)
    {
        _lastError = reason;
        _lastErrorTicks = Environment.TickCount64;
    }

    /// <summary>Rebuilds the index from every segment, in order; torn or damaged records are skipped.</summary>
    private void Recover()
    {
        foreach (var name in _factory.List())
        {
            if (!name.StartsWith(Prefix, StringComparison.Ordinal) || !name.EndsWith(Suffix, StringComparison.Ordinal)) continue;
            if (!int.TryParse(name.AsSpan(Prefix.Length, name.Length - Prefix.Length - Suffix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int id)) continue;
            _segments[id] = _factory.Open(name);
        }
        var header = new byte[HeaderSize + ProtocolKeyLimit];
        foreach (var (id, device) in _segments)
        {
            long length = device.Length, offset = 0;
            while (offset + HeaderSize <= length)
            {
                int got = device.Read(offset, header.AsSpan(0, HeaderSize));
                if (got < HeaderSize) break;
                if (!TryParseHeader(header, out int keyLength, out long valueLength, out uint crc, out ushort kind)
                    || offset + HeaderSize + keyLength > length
                    || device.Read(offset + HeaderSize, header.AsSpan(HeaderSize, keyLength)) != keyLength
                    || HeaderCrc(header, header.AsSpan(HeaderSize, keyLength)) != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(24)))
                {
                    // Not a record here: a torn or never-finished write. Step forward and look for the next one.
                    _tornRecords++;
                    offset += 8;
                    continue;
                }
                long end = offset + Align8(HeaderSize + keyLength + valueLength);
                if (offset + HeaderSize + keyLength + valueLength > length) { _tornRecords++; break; }   // torn tail
                var key = header.AsSpan(HeaderSize, keyLength);
                if (kind == KindTombstone) _lookup.Remove(key, out _, out _);
                else _lookup[key] = new DiskEntry(id, offset, valueLength, crc, ++_sequence);
                offset = end;
            }
            _bytes += length;
            _current = id;
            _tail = Align8(length);
        }
        _recovered = _index.Count;
    }

    private const int ProtocolKeyLimit = 512;

    private static bool TryParseHeader(ReadOnlySpan<byte> h, out int keyLength, out long valueLength, out uint crc, out ushort kind)
    {
        keyLength = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(h[8..]), int.MaxValue);
        valueLength = BinaryPrimitives.ReadInt64LittleEndian(h[16..]);
        crc = BinaryPrimitives.ReadUInt32LittleEndian(h[12..]);
        kind = BinaryPrimitives.ReadUInt16LittleEndian(h[6..]);
        return BinaryPrimitives.ReadUInt32LittleEndian(h) == Magic && BinaryPrimitives.ReadUInt16LittleEndian(h[4..]) == 1
            && kind is KindValue or KindTombstone && keyLength is >= 1 and <= ProtocolKeyLimit && valueLength >= 0
            && (kind == KindValue || valueLength == 0);
    }

    /// <summary>Counters, by STATS name (prefix "disk_").</summary>
    public IEnumerable<KeyValuePair<string, long>> Stats()
    {
        lock (_gate)
        {
            return
            [
                new("disk_capacity_bytes", Capacity), new("disk_bytes", _bytes), new("disk_keys", _index.Count),
                new("disk_hits", _hits), new("disk_misses", _misses), new("disk_writes", _writes),
                new("disk_write_errors", _writeErrors), new("disk_read_errors", _readErrors), new("disk_corrupt", _corrupt),
                new("disk_dropped_keys", _droppedKeys), new("disk_deleted_segments", _deletedSegments),
                new("disk_recovered_keys", _recovered), new("disk_torn_records", _tornRecords), new("disk_full", _full ? 1 : 0),
            ];
        }
    }

    public void Flush()
    {
        IDevice[] devices;
        lock (_gate) devices = [.. _segments.Values];
        foreach (var d in devices) d.Flush();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var d in _segments.Values) d.Dispose();
            while (_retired.Count > 0) _retired.Dequeue().Dispose();
        }
    }
}
