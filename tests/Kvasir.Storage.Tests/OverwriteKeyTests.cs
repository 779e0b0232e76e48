using Kvasir.Protocol;

namespace Kvasir.Storage.Tests;

/// <summary>
/// An overwrite's reservation names its key by the key's stored slot instead of a fresh copy (keys held inside their slots
/// have no array to share): what it allocates does not grow with the key, and the key it publishes under is right even when
/// the stored slot goes away before the commit.
/// </summary>
public sealed class OverwriteKeyTests
{
    [Fact]
    public void Reserving_an_overwrite_allocates_nothing_that_grows_with_the_key()
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 4 << 20, Granule = 64, MaxValueBytes = 64 });
        byte[] shortKey = Key(8, 1), longKey = Key(64, 2);
        Put(store, shortKey, 1);
        Put(store, longKey, 1);

        long shortBytes = ReserveAllocates(store, shortKey), longBytes = ReserveAllocates(store, longKey);
        Assert.Equal(shortBytes, longBytes);   // a copy of each key would differ by 56 bytes (an 8- against a 64-byte array)

        // A new key is copied (the caller's span is not the store's to keep): the control, so the measure can see a copy.
        Assert.NotEqual(ReserveAllocates(store, Key(8, 3)), ReserveAllocates(store, Key(64, 4)));
    }

    [Theory]
    [InlineData(32)]
    [InlineData(100)]   // past the inline limit: a key with its own array
    public void An_overwrite_publishes_under_its_key_after_the_stored_key_was_removed(int length)
    {
        using var store = new KvArenaStore(new StoreOptions { Capacity = 4 << 20, Granule = 64, MaxValueBytes = 64 });
        byte[] key = Key(length, 5);
        Put(store, key, 1);
        Assert.Equal(WireStatus.Ok, store.TryReserve(key, 4, out Reservation? reservation));
        Assert.True(reservation!.KeySpan.SequenceEqual(key));
        Assert.Equal(WireStatus.Ok, store.Remove(key));
        new byte[] { 9, 9, 9, 9 }.CopyTo(reservation.Span);
        store.Commit(reservation, Crc32C.Compute([9, 9, 9, 9]));

        Assert.True(store.Exists(key));
        Assert.Equal([key], store.Scan([], [], 10).Keys.Select(k => k.Key));
        Assert.Equal(WireStatus.Ok, store.TryLease(key, null, out ValueLease? lease));
        Assert.Equal([9, 9, 9, 9], lease!.Span.ToArray());
        store.Release(lease);
    }

    [Fact]
    public async Task An_overwrite_through_the_tiered_store_is_written_to_disk_under_its_key()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kvasir-overwrite-" + Guid.NewGuid().ToString("N"));
        var dram = new StoreOptions { Capacity = 4 << 20, Granule = 64, MaxValueBytes = 64 };
        byte[] key = Key(32, 6);
        try
        {
            using (var store = new TieredStore(dram, new Tiers.TierOptions { DiskPath = dir }))
            {
                for (byte round = 1; round <= 2; round++)
                {
                    Assert.Equal(WireStatus.Ok, store.TryReserve(key, 1, out Reservation? reservation));
                    reservation!.Span[0] = round;
                    Assert.Equal(WireStatus.Ok, await store.CommitAsync(reservation, Crc32C.Compute([round])));
                }
            }

            // A new store over the same disk recovers the key from the overwrite's record, with the second value.
            using var recovered = new TieredStore(dram, new Tiers.TierOptions { DiskPath = dir });
            var (status, lease) = await recovered.LeaseAsync(key, null);
            Assert.Equal(WireStatus.Ok, status);
            Assert.Equal([2], lease!.Span.ToArray());
            recovered.Release(lease);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static long ReserveAllocates(KvArenaStore store, byte[] key)
    {
        Assert.Equal(WireStatus.Ok, store.TryReserve(key, 1, out Reservation? warm));   // JIT and first-call work, not measured
        store.Abort(warm!);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(WireStatus.Ok, store.TryReserve(key, 1, out Reservation? reservation));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        store.Abort(reservation!);
        return allocated;
    }

    private static void Put(KvArenaStore store, byte[] key, byte value)
    {
        Assert.Equal(WireStatus.Ok, store.TryReserve(key, 1, out Reservation? reservation));
        reservation!.Span[0] = value;
        store.Commit(reservation, Crc32C.Compute([value]));
    }

    private static byte[] Key(int length, byte seed) => [.. Enumerable.Range(0, length).Select(i => (byte)(seed * 31 + i))];
}
