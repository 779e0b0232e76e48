using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// Recovery never trusts bytes it was not told to read: a damaged newest record makes its key a miss (not the
/// older acknowledged value), and a record embedded inside a stored value can never be indexed.
/// </summary>
public sealed class RecoveryTrustTests
{
    private static TierOptions Disk(TempDir dir) => new() { DiskPath = dir.Path, DiskCapacity = 64L << 20 };

    private static StoreOptions Dram => new() { Capacity = 16L << 20, MaxValueBytes = 4L << 20 };

    /// <summary>(data file, offset) of every record of <paramref name="key"/>, oldest first, as the index files name them.</summary>
    private static List<(string File, long Offset)> RecordsOf(TempDir dir, string key)
    {
        var found = new List<(string, long, long)>();
        foreach (var index in Directory.GetFiles(dir.Path, "seg-*.idx").Order(StringComparer.Ordinal))
        {
            var data = Path.ChangeExtension(index, ".dat");
            int segment = int.Parse(Path.GetFileNameWithoutExtension(index)["seg-".Length..], System.Globalization.CultureInfo.InvariantCulture);
            var entries = File.ReadAllBytes(index);
            var bytes = File.ReadAllBytes(data);
            for (int e = 0; e + DiskRecord.IndexEntrySize <= entries.Length; e += DiskRecord.IndexEntrySize)
            {
                if (!DiskRecord.TryParseIndexEntry(entries.AsSpan(e, DiskRecord.IndexEntrySize), segment, out var r, out int keyLength, out _)) continue;
                if (bytes.AsSpan((int)r.Offset + DiskRecord.HeaderSize, keyLength).SequenceEqual(TestValues.Key(key))) found.Add((data, r.Offset, r.Sequence));
            }
        }
        return found.OrderBy(f => f.Item3).Select(f => (f.Item1, f.Item2)).ToList();
    }

    private static void Flip(string file, long at)
    {
        using var f = File.Open(file, FileMode.Open, FileAccess.ReadWrite);
        f.Position = at;
        int b = f.ReadByte();
        f.Position = at;
        f.WriteByte((byte)(b ^ 0x5A));
    }

    [Fact]
    public async Task A_damaged_header_of_the_newest_record_makes_the_key_a_miss_after_restart_never_the_older_value()
    {
        using var dir = new TempDir();
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            Assert.Equal(WireStatus.Ok, await store.PutAsync("k", TestValues.For("k", 5000, 1)));
            Assert.Equal(WireStatus.Ok, await store.PutAsync("k", TestValues.For("k", 5000, 2)));
            Assert.Equal(WireStatus.Ok, await store.PutAsync("other", TestValues.For("other", 300)));
        }
        var records = RecordsOf(dir, "k");
        Assert.Equal(2, records.Count);
        Flip(records[1].File, records[1].Offset + 17);   // the newest record's value-length field

        using var again = new TieredStore(Dram, Disk(dir));
        Assert.Null(await again.GetAsync("k"));   // the older acknowledged value does not stand in for the newer one
        Assert.Equal(TestValues.For("other", 300), await again.GetAsync("other"));
        Assert.Equal(1, again.Stat("disk_damaged_records"));
        Assert.Equal(WireStatus.NotFound, await again.ExistsAsync(TestValues.Key("k")));
    }

    [Fact]
    public async Task A_value_embedding_a_valid_record_cannot_make_that_record_readable_after_its_carriers_header_is_damaged()
    {
        using var dir = new TempDir();
        byte[] forgedKey = TestValues.Key("forged"), forgedValue = TestValues.For("forged", 1000);
        byte[] carrierKey = TestValues.Key("carrier");
        // The first record of segment 1 starts at offset 0; its value at 48 + key length. The forged record sits inside
        // the value at an 8-aligned file offset and names that very offset, segment 1 and a high version: everything a
        // scanning recovery would check.
        long valueAt = DiskRecord.HeaderSize + carrierKey.Length;
        long forgedAt = DiskRecord.Align8(valueAt + 4096);
        var carrier = TestValues.For("carrier", 16_384);
        var forged = new RecordInfo(DiskRecord.KindValue, Crc32C.Compute(forgedValue), forgedValue.Length, 1_000_000, forgedAt, 1);
        int headerLength = DiskRecord.WriteHeader(carrier.AsSpan((int)(forgedAt - valueAt)), forged, forgedKey);
        forgedValue.CopyTo(carrier.AsSpan((int)(forgedAt - valueAt) + headerLength));
        // Control: the embedded bytes are a sound record by every check of the header format.
        var embedded = carrier.AsSpan((int)(forgedAt - valueAt));
        Assert.True(DiskRecord.TryParseHeader(embedded, out var parsed, out int keyLength));
        Assert.True(DiskRecord.HeaderCrcMatches(embedded, embedded.Slice(DiskRecord.HeaderSize, keyLength)));
        Assert.Equal(forged, parsed);

        using (var store = new TieredStore(Dram, Disk(dir)))
            Assert.Equal(WireStatus.Ok, await store.PutAsync("carrier", carrier));
        var records = RecordsOf(dir, "carrier");
        Assert.Equal(0L, records.Single().Offset);
        Flip(records[0].File, 2);   // the carrier's magic

        using var again = new TieredStore(Dram, Disk(dir));
        Assert.Null(await again.GetAsync("forged"));
        Assert.Null(await again.GetAsync("carrier"));
        Assert.Equal(WireStatus.NotFound, await again.ExistsAsync(forgedKey));
        Assert.Equal(0, again.Stat("disk_keys"));
    }

    [Fact]
    public async Task Removing_then_reopening_keeps_the_key_gone_and_overwrites_keep_the_newest()
    {
        using var dir = new TempDir();
        using (var store = new TieredStore(Dram, Disk(dir)))
        {
            for (int v = 1; v <= 5; v++) Assert.Equal(WireStatus.Ok, await store.PutAsync("over", TestValues.For("over", 700, v)));
            Assert.Equal(WireStatus.Ok, await store.PutAsync("gone", TestValues.For("gone", 70)));
            Assert.Equal(WireStatus.Ok, await store.RemoveAsync("gone"));
            Assert.Null(await store.GetAsync("gone"));
        }
        using var again = new TieredStore(Dram, Disk(dir));
        Assert.Equal(TestValues.For("over", 700, 5), await again.GetAsync("over"));
        Assert.Null(await again.GetAsync("gone"));
    }
}
