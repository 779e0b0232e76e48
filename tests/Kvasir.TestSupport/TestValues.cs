using System.Text;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.TestSupport;

/// <summary>
/// Keys and values for tests. Values are deterministic, so anything read back can be checked byte for
/// byte: either from a seed (<see cref="Value"/>) or from the key and a version (<see cref="For"/>),
/// where a value stored under another key or by another write never matches.
/// </summary>
public static class TestValues
{
    public static byte[] Key(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>The same key typed as the client API's key lists take it.</summary>
    public static ReadOnlyMemory<byte> KeyMemory(string text) => Key(text);

    /// <summary>Pseudo-random bytes for (seed, length); different seeds differ at nearly every position.</summary>
    public static byte[] Value(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Bytes derived from the key, the length and a version: a stale, foreign or truncated value never matches.</summary>
    public static byte[] For(string key, int length, int version = 0)
    {
        var bytes = new byte[length];
        Fill(bytes, Key(key), (ulong)version);
        return bytes;
    }

    /// <summary>Writes the pattern of (key, length of <paramref name="destination"/>, version) into <paramref name="destination"/>.</summary>
    public static void Fill(Span<byte> destination, ReadOnlySpan<byte> key, ulong version = 0)
    {
        ulong state = Seed(key, destination.Length, version);
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = Next(ref state);
        }
    }

    /// <summary>Whether <paramref name="actual"/> is exactly the pattern <see cref="Fill"/> writes for (key, its length, version).</summary>
    public static bool Matches(ReadOnlySpan<byte> actual, ReadOnlySpan<byte> key, ulong version = 0)
    {
        ulong state = Seed(key, actual.Length, version);
        for (int i = 0; i < actual.Length; i++)
        {
            if (actual[i] != Next(ref state))
            {
                return false;
            }
        }

        return true;
    }

    private static ulong Seed(ReadOnlySpan<byte> key, int length, ulong version)
    {
        ulong seed = ((ulong)Crc32C.Compute(key) << 32) ^ (ulong)length ^ (version * 0x9E3779B97F4A7C15UL);
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
