using System.Numerics;

namespace Kvasir.Storage.Internal;

/// <summary>
/// Two-level segregated-fit allocator (TLSF style) over fixed-size units (granules).
/// </summary>
/// <remarks>
/// Free extents sit in size-class lists: the first level is the power of two of the size, the second splits each
/// power of two into <see cref="SubBins"/> linear bins; two bitmaps find the first non-empty class at or above a
/// request in O(1). Allocation rounds the request up to the next class boundary ("good fit"), so any extent taken
/// from the found list is large enough; the remainder of a split goes back to the lists. Free merges with both
/// neighbours, so two adjacent free extents never coexist.
///
/// Boundary tags live outside the arena, in managed arrays indexed by unit (16 bytes per unit): the arena holds
/// payload only, because clients will map it directly. Uniform value sizes, the common case for KV blocks,
/// always hit an exact class and never split leftovers they cannot reuse.
/// </remarks>
internal sealed class TlsfAllocator : IAllocator
{
    /// <summary>log2 of the number of linear sub-bins per power of two.</summary>
    private const int SubBinLog2 = 3;

    /// <summary>Linear sub-bins per power of two: the worst-case internal rounding of a class is 1/8.</summary>
    private const int SubBins = 1 << SubBinLog2;

    /// <summary>How many extents of the request's own class are checked when the good-fit search finds nothing.</summary>
    private const int FallbackScanLimit = 256;

    private const int None = -1;

    private readonly int _unitShift;
    private readonly int _units;

    // Per unit: at the start of an extent, +size if allocated, -size if free, 0 when not an extent start.
    private readonly int[] _size;

    // At the last unit of a free extent: the extent's start. May be stale; validated against _size before use.
    private readonly int[] _startOfLast;

    // Free-list links, meaningful at the start unit of a free extent.
    private readonly int[] _next;
    private readonly int[] _prev;

    private readonly int[] _heads;
    private readonly uint[] _subMaps;
    private ulong _firstMap;
    private long _freeUnits;

    public TlsfAllocator(long arenaBytes, int unitBytes)
    {
        if (unitBytes <= 0 || !BitOperations.IsPow2(unitBytes))
        {
            throw new ArgumentOutOfRangeException(nameof(unitBytes), unitBytes, "Unit must be a positive power of two.");
        }

        long units = arenaBytes / unitBytes;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(units, int.MaxValue, nameof(arenaBytes));
        ArgumentOutOfRangeException.ThrowIfZero(units, nameof(arenaBytes));

        _unitShift = BitOperations.Log2((uint)unitBytes);
        _units = (int)units;
        _size = new int[_units];
        _startOfLast = new int[_units];
        _next = new int[_units];
        _prev = new int[_units];
        Array.Fill(_startOfLast, None);

        int firstLevels = FirstLevel(int.MaxValue) + 1;
        _heads = new int[firstLevels * SubBins];
        Array.Fill(_heads, None);
        _subMaps = new uint[firstLevels];

        InsertFree(0, _units);
    }

    public long CapacityBytes => (long)_units << _unitShift;

    public long FreeBytes => _freeUnits << _unitShift;

    public long LargestFreeExtentBytes
    {
        get
        {
            if (_firstMap == 0)
            {
                return 0;
            }

            int fl = 63 - BitOperations.LeadingZeroCount(_firstMap);
            int sl = 31 - BitOperations.LeadingZeroCount(_subMaps[fl]);
            int largest = 0;
            for (int e = _heads[fl * SubBins + sl]; e != None; e = _next[e])
            {
                largest = Math.Max(largest, -_size[e]);
            }

            return (long)largest << _unitShift;
        }
    }

    public long UnitBytes => 1L << _unitShift;

    public long SizeFor(long length)
    {
        long units = UnitsFor(length);
        return units < 0 ? -1 : units << _unitShift;
    }

    public bool TryAllocate(long length, out long offset)
    {
        long wanted = UnitsFor(length);
        offset = -1;
        if (wanted < 0)
        {
            return false;
        }

        int n = (int)wanted;
        int extent = FindGoodFit(n);
        if (extent == None)
        {
            extent = ScanOwnClass(n);
            if (extent == None)
            {
                return false;
            }
        }

        int have = -_size[extent];
        RemoveFree(extent, have);
        if (have > n)
        {
            InsertFree(extent + n, have - n);
        }

        _size[extent] = n;
        offset = (long)extent << _unitShift;
        return true;
    }

    public void Free(long offset)
    {
        long unit = offset >> _unitShift;
        if (offset < 0 || (unit << _unitShift) != offset || unit >= _units || _size[unit] <= 0)
        {
            throw new InvalidOperationException($"Offset {offset} is not an allocated extent.");
        }

        int start = (int)unit;
        int length = _size[start];
        _size[start] = 0;

        int after = start + length;
        if (after < _units && _size[after] < 0)
        {
            int afterLength = -_size[after];
            RemoveFree(after, afterLength);
            _size[after] = 0;
            length += afterLength;
        }

        if (start > 0)
        {
            int before = _startOfLast[start - 1];
            if (before != None && _size[before] < 0 && before - _size[before] == start)
            {
                int beforeLength = -_size[before];
                RemoveFree(before, beforeLength);
                start = before;
                length += beforeLength;
            }
        }

        InsertFree(start, length);
    }

    private long UnitsFor(long length)
    {
        if (length < 0)
        {
            return -1;
        }

        long units = Math.Max(1, (length + (1L << _unitShift) - 1) >> _unitShift);
        return units <= _units ? units : -1;
    }

    private static int FirstLevel(int size) =>
        size < SubBins ? 0 : BitOperations.Log2((uint)size) - SubBinLog2 + 1;

    private static void Map(int size, out int fl, out int sl)
    {
        if (size < SubBins)
        {
            fl = 0;
            sl = size;
            return;
        }

        int log = BitOperations.Log2((uint)size);
        fl = log - SubBinLog2 + 1;
        sl = (size >> (log - SubBinLog2)) - SubBins;
    }

    /// <summary>First extent in the lowest class whose every member is at least <paramref name="n"/> units.</summary>
    private int FindGoodFit(int n)
    {
        long rounded = n;
        if (n >= SubBins)
        {
            rounded += (1L << (BitOperations.Log2((uint)n) - SubBinLog2)) - 1;
        }

        if (rounded > int.MaxValue)
        {
            return None;
        }

        Map((int)rounded, out int fl, out int sl);
        uint subMap = _subMaps[fl] & (uint.MaxValue << sl);
        if (subMap == 0)
        {
            ulong firstMap = fl + 1 < 64 ? _firstMap & (ulong.MaxValue << (fl + 1)) : 0;
            if (firstMap == 0)
            {
                return None;
            }

            fl = BitOperations.TrailingZeroCount(firstMap);
            subMap = _subMaps[fl];
        }

        sl = BitOperations.TrailingZeroCount(subMap);
        return _heads[fl * SubBins + sl];
    }

    /// <summary>
    /// The good-fit search skips the request's own class because that class may hold smaller extents; this bounded
    /// scan recovers the case where it holds one that is large enough (otherwise a put would evict needlessly).
    /// </summary>
    private int ScanOwnClass(int n)
    {
        Map(n, out int fl, out int sl);
        int scanned = 0;
        for (int e = _heads[fl * SubBins + sl]; e != None && scanned < FallbackScanLimit; e = _next[e], scanned++)
        {
            if (-_size[e] >= n)
            {
                return e;
            }
        }

        return None;
    }

    private void InsertFree(int start, int length)
    {
        Map(length, out int fl, out int sl);
        int bin = fl * SubBins + sl;
        int head = _heads[bin];
        _size[start] = -length;
        _startOfLast[start + length - 1] = start;
        _prev[start] = None;
        _next[start] = head;
        if (head != None)
        {
            _prev[head] = start;
        }

        _heads[bin] = start;
        _subMaps[fl] |= 1u << sl;
        _firstMap |= 1UL << fl;
        _freeUnits += length;
    }

    private void RemoveFree(int start, int length)
    {
        Map(length, out int fl, out int sl);
        int bin = fl * SubBins + sl;
        int prev = _prev[start];
        int next = _next[start];
        if (prev != None)
        {
            _next[prev] = next;
        }
        else
        {
            _heads[bin] = next;
        }

        if (next != None)
        {
            _prev[next] = prev;
        }

        if (_heads[bin] == None)
        {
            _subMaps[fl] &= ~(1u << sl);
            if (_subMaps[fl] == 0)
            {
                _firstMap &= ~(1UL << fl);
            }
        }

        _startOfLast[start + length - 1] = None;
        _freeUnits -= length;
    }
}
