using System.Text;
using Kvasir.Protocol;

namespace Kvasir.Storage.Tests;

/// <summary>Deterministic per-key payloads, so any value read back can be checked byte for byte.</summary>
internal static class TestPayload
{
    public static byte[] Key(string text) => Encoding.UTF8.GetBytes(text);

    public static void Fill(Span<byte> destination, ReadOnlySpan<byte> key, ulong nonce = 0)
    {
        ulong state = Seed(key, destination.Length, nonce);
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = Next(ref state);
        }
    }

    public static bool Matches(ReadOnlySpan<byte> actual, ReadOnlySpan<byte> key, ulong nonce = 0)
    {
        ulong state = Seed(key, actual.Length, nonce);
        for (int i = 0; i < actual.Length; i++)
        {
            if (actual[i] != Next(ref state))
            {
                return false;
            }
        }

        return true;
    }

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

    /// <summary>Polls <paramref name="condition"/> until it holds or the deadline passes; fails naming what was awaited.</summary>
    public static void WaitUntil(Func<bool> condition, string awaited, TimeSpan? timeout = null)
    {
        DateTime deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Timed out waiting until {awaited}.");
            }

            Thread.Yield();
        }
    }

    private static ulong Seed(ReadOnlySpan<byte> key, int length, ulong nonce)
    {
        ulong seed = ((ulong)Crc32C.Compute(key) << 32) ^ (ulong)length ^ (nonce * 0x9E3779B97F4A7C15UL);
        return seed == 0 ? 0x2545F4914F6CDD1DUL : seed;
    }

    private static byte Next(ref ulong state)
    {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return (byte)(state >> 24);
    }
}
