using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace Kvasir.Bench.Micro;

/// <summary>
/// Crc32C as it was before the carry-less-multiply folding (issue 21, commit 564dd81), kept verbatim so that before and
/// after are measured back to back in one run (<see cref="Crc32CThroughput"/>). Not used by any shipped code.
/// </summary>
public static class Crc32CBefore
{
    /// <summary>Register value before any byte is appended.</summary>
    public const uint InitialState = 0xFFFFFFFFu;

    /// <summary>Inputs at least this long are checksummed in three interleaved stripes.</summary>
    public const int InterleaveThreshold = 3 * 1024;

    private const uint Polynomial = 0x82F63B78u;

    /// <summary>x^(2^k) mod P, k = 0..31, in the reflected bit order the register uses.</summary>
    private static readonly uint[] PowersOfTwo = BuildPowersOfTwo();

    /// <summary>CRC-32C of <paramref name="data"/> in one call.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Complete(Append(InitialState, data));

    /// <summary>Feeds <paramref name="data"/> into a running <paramref name="state"/> and returns the new state. Split points do not matter.</summary>
    public static uint Append(uint state, ReadOnlySpan<byte> data)
    {
        if (data.Length >= InterleaveThreshold && BitConverter.IsLittleEndian)
        {
            int stripe = data.Length / 3 & ~7;
            var words = MemoryMarshal.Cast<byte, ulong>(data[..(3 * stripe)]);
            int n = stripe / sizeof(ulong);
            var a = words[..n];
            var b = words.Slice(n, n);
            var c = words.Slice(2 * n, n);
            uint s0 = state, s1 = 0, s2 = 0;
            for (int i = 0; i < a.Length; i++)
            {
                s0 = BitOperations.Crc32C(s0, a[i]);
                s1 = BitOperations.Crc32C(s1, b[i]);
                s2 = BitOperations.Crc32C(s2, c[i]);
            }
            uint shift = CachedShiftFactor(stripe);
            state = MultiplyModP(shift, MultiplyModP(shift, s0) ^ s1) ^ s2;
            data = data[(3 * stripe)..];
        }

        while (data.Length >= sizeof(ulong))
        {
            state = BitOperations.Crc32C(state, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[sizeof(ulong)..];
        }

        foreach (byte b in data)
        {
            state = BitOperations.Crc32C(state, b);
        }

        return state;
    }

    /// <summary>Turns a running state into the finished CRC value.</summary>
    public static uint Complete(uint state) => ~state;

    /// <summary>a·b mod P for reflected polynomials (bit 31 is the coefficient of x^0).</summary>
    internal static uint MultiplyModP(uint a, uint b)
    {
        uint product = 0;
        for (uint bit = 1u << 31; bit != 0; bit >>= 1)
        {
            if ((a & bit) != 0) product ^= b;
            b = (b & 1) != 0 ? (b >> 1) ^ Polynomial : b >> 1;
        }
        return product;
    }

    /// <summary>The last stripe length and its factor: callers checksum values of few distinct sizes.</summary>
    private sealed record ShiftEntry(int Stripe, uint Factor);

    private static ShiftEntry? s_lastShift;

    /// <summary><see cref="ShiftFactor"/> with a one-entry cache (a reference swap, so readers never see a torn pair).</summary>
    private static uint CachedShiftFactor(int stripe)
    {
        var last = Volatile.Read(ref s_lastShift);
        if (last is not null && last.Stripe == stripe) return last.Factor;
        uint factor = ShiftFactor(stripe);
        Volatile.Write(ref s_lastShift, new ShiftEntry(stripe, factor));
        return factor;
    }

    /// <summary>x^(8·bytes) mod P: multiplying a register by it appends that many zero bytes.</summary>
    internal static uint ShiftFactor(long bytes)
    {
        uint factor = 1u << 31; // x^0
        ulong bits = (ulong)bytes * 8;
        for (int k = 0; bits != 0; k++, bits >>= 1)
            if ((bits & 1) != 0) factor = MultiplyModP(PowersOfTwo[k], factor);
        return factor;
    }

    private static uint[] BuildPowersOfTwo()
    {
        var table = new uint[64];
        table[0] = 1u << 30; // x^1
        for (int k = 1; k < table.Length; k++) table[k] = MultiplyModP(table[k - 1], table[k - 1]);
        return table;
    }
}
