using System.Buffers.Binary;

namespace Kvasir.Cli.Bench;

/// <summary>How thoroughly the bench checks each GET result.</summary>
public enum VerifyMode
{
    /// <summary>No check (throughput of the transfer alone).</summary>
    Off,
    /// <summary>Length, the first 64 bytes (which carry the key's number), one word per 4 KiB, the middle and the last word: catches a value of another key, a shift, a short or torn value, for a few cache lines per MiB.</summary>
    Sample,
    /// <summary>Every byte against the expected value (a vectorised compare).</summary>
    Full,
}

/// <summary>
/// The bench's values: key k's value is 8-byte words where word 0 is k and word i is a mix of k and
/// i, so every key's bytes differ from every other key's and every position differs from its
/// neighbours. A value of the wrong key, shifted or cut short fails even the sampled check.
/// </summary>
public static class ValuePattern
{
    /// <summary>One sampled word per this many bytes in <see cref="VerifyMode.Sample"/>.</summary>
    public const int SampleStride = 4096;

    private static ulong Seed(int key) => 0x9E3779B97F4A7C15UL * (ulong)(key + 1);

    private static ulong Word(int key, int offset) => offset == 0 ? (ulong)key : Seed(key) ^ (ulong)offset;

    private static byte TailByte(int key, int offset) => (byte)(key + offset);

    /// <summary>The value of key number <paramref name="key"/> for values of <paramref name="size"/> bytes.</summary>
    public static byte[] Create(int key, int size)
    {
        var bytes = new byte[size];
        int words = size & ~7;
        for (int i = 0; i < words; i += 8) BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i), Word(key, i));
        for (int i = words; i < size; i++) bytes[i] = TailByte(key, i);
        return bytes;
    }

    /// <summary>Every byte against the expected value.</summary>
    public static bool CheckFull(ReadOnlySpan<byte> value, long length, ReadOnlySpan<byte> expected)
        => length == expected.Length && value.Length >= expected.Length && value[..expected.Length].SequenceEqual(expected);

    /// <summary>The sampled check (see <see cref="VerifyMode.Sample"/>) of a value that should be key <paramref name="key"/>'s.</summary>
    public static bool CheckSampled(ReadOnlySpan<byte> value, long length, int key, int size)
    {
        if (length != size || value.Length < size) return false;
        int words = size & ~7;
        for (int i = 0; i < Math.Min(words, 64); i += 8)
            if (!WordAt(value, key, i)) return false;
        for (int i = SampleStride; i < words; i += SampleStride)
            if (!WordAt(value, key, i)) return false;
        if (words >= 8 && (!WordAt(value, key, (words / 2) & ~7) || !WordAt(value, key, words - 8))) return false;
        for (int i = words; i < size; i++)
            if (value[i] != TailByte(key, i)) return false;
        return true;
    }

    /// <summary>Checks a value with the given mode; <paramref name="expected"/> is used by <see cref="VerifyMode.Full"/>.</summary>
    public static bool Check(VerifyMode mode, ReadOnlySpan<byte> value, long length, int key, ReadOnlySpan<byte> expected) => mode switch
    {
        VerifyMode.Off => true,
        VerifyMode.Full => CheckFull(value, length, expected),
        _ => CheckSampled(value, length, key, expected.Length),
    };

    private static bool WordAt(ReadOnlySpan<byte> value, int key, int offset)
        => BinaryPrimitives.ReadUInt64LittleEndian(value[offset..]) == Word(key, offset);
}
