using System.Globalization;

namespace Kvasir.Storage.Tiers;

/// <summary>
/// One segment of the disk tier: a data file of records and an index file naming each record (docs/tiers.md
/// § Disk layout), plus the keys whose records it holds, so dropping it visits only those keys.
/// </summary>
/// <remarks>
/// Lifetime: the tier holds one reference; each reader takes one for the length of its pread. The files are
/// unlinked when the segment is dropped and the handles closed when the last reference goes, so a read in
/// progress never sees its file descriptor closed or reused under it. <see cref="Keys"/> and the tails are
/// guarded by the tier's lock.
/// </remarks>
internal sealed class DiskSegment(int id, IDevice data, IDevice index)
{
    private const string Prefix = "seg-", DataSuffix = ".dat", IndexSuffix = ".idx";
    private int _refs = 1;

    public int Id { get; } = id;
    public IDevice Data { get; } = data;
    public IDevice Index { get; } = index;

    /// <summary>Bytes of the data file used by records (the next record starts here).</summary>
    public long DataTail { get; set; }

    /// <summary>Bytes of the index file used by entries.</summary>
    public long IndexTail { get; set; }

    /// <summary>Keys of the records this segment holds (with repeats for overwrites): what a drop must visit.</summary>
    public List<byte[]> Keys { get; } = [];

    public bool Dropped { get; set; }

    public long Bytes => DataTail + IndexTail;

    public static string DataName(int id) => $"{Prefix}{id.ToString("D8", CultureInfo.InvariantCulture)}{DataSuffix}";

    public static string IndexName(int id) => $"{Prefix}{id.ToString("D8", CultureInfo.InvariantCulture)}{IndexSuffix}";

    /// <summary>The id of a data file's name, or -1 when the name is not one.</summary>
    public static int ParseDataName(string name)
    {
        if (!name.StartsWith(Prefix, StringComparison.Ordinal) || !name.EndsWith(DataSuffix, StringComparison.Ordinal)) return -1;
        return int.TryParse(name.AsSpan(Prefix.Length, name.Length - Prefix.Length - DataSuffix.Length), NumberStyles.None,
            CultureInfo.InvariantCulture, out int id) ? id : -1;
    }

    /// <summary>Takes a reference; false once the segment is dropped and unreferenced.</summary>
    public bool TryAcquire()
    {
        int refs;
        do
        {
            refs = Volatile.Read(ref _refs);
            if (refs == 0) return false;
        }
        while (Interlocked.CompareExchange(ref _refs, refs + 1, refs) != refs);
        return true;
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
        {
            Data.Dispose();
            Index.Dispose();
        }
    }
}

/// <summary>Where the newest record of a key is (a value, or a tombstone that hides older values).</summary>
internal sealed class DiskEntry(int segment, long offset, long length, uint crc32c, long version, bool tombstone, long expiresAt = 0)
{
    public int Segment { get; } = segment;
    public long Offset { get; } = offset;
    public long Length { get; } = length;
    public uint Crc32C { get; } = crc32c;
    public long Version { get; } = version;
    public bool Tombstone { get; } = tombstone;

    /// <summary>When the value expires (Unix ms, from the index entry); 0: never. A value past it is a miss.</summary>
    public long ExpiresAt { get; } = expiresAt;

    /// <summary>Whether the value's expiry has passed.</summary>
    public bool Expired => Expiry.Passed(ExpiresAt);
}

/// <summary>The outcome of a disk write: the version it took, or why it failed.</summary>
internal readonly record struct DiskWrite(bool Ok, long Version, string? Error);
