using Kvasir.Protocol;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

/// <summary>Store-level helpers over the shared <see cref="TestValues"/> pattern: put a patterned value, read one back checked.</summary>
internal static class TestPayload
{
    /// <summary>Reserves, fills with the key's pattern, commits with the right CRC. Returns the reserve status.</summary>
    public static WireStatus Put(KvArenaStore store, string key, long length, string? parent = null, ulong nonce = 0)
    {
        byte[] keyBytes = Key(key);
        WireStatus status = store.TryReserve(keyBytes, length, out Reservation? reservation);
        if (status != WireStatus.Ok)
        {
            return status;
        }

        Fill(reservation!.Span, keyBytes, nonce);
        uint crc = Crc32C.Compute(reservation.Span);
        return store.Commit(reservation, crc, parent is null ? default : Key(parent));
    }

    /// <summary>Leases the key and checks its bytes against the pattern and its CRC; false when absent.</summary>
    public static bool ReadsBackExactly(KvArenaStore store, string key, long expectedLength, ulong nonce = 0)
    {
        byte[] keyBytes = Key(key);
        if (store.TryLease(keyBytes, null, out ValueLease? lease) != WireStatus.Ok)
        {
            return false;
        }

        try
        {
            Assert.Equal(expectedLength, lease!.Length);
            Assert.True(Matches(lease.Span, keyBytes, nonce), $"bytes of '{key}' differ from the pattern written");
            Assert.Equal(lease.Crc32C, Crc32C.Compute(lease.Span));
            return true;
        }
        finally
        {
            store.Release(lease!);
        }
    }
}
