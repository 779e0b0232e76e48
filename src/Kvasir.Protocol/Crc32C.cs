using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Kvasir.Protocol;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF, final xor 0xFFFFFFFF),
/// hardware-accelerated. "123456789" gives 0xE3069283.
/// </summary>
/// <remarks>
/// Incremental use, for a value arriving in chunks:
/// <code>
/// uint state = Crc32C.InitialState;
/// foreach (chunk) state = Crc32C.Append(state, chunk);
/// uint crc = Crc32C.Complete(state);   // equals Crc32C.Compute(all bytes)
/// </code>
/// The state is the raw register (not yet xor-ed), so it must not be compared with a finished CRC.
/// <para>
/// Paths, chosen per call by length and CPU (all give the same result; tests check each against a bitwise definition):
/// under 64 bytes, one chain of crc32 instructions (<see cref="AppendChain"/>); from 64 bytes, carry-less-multiply
/// folding (<see cref="Crc32CFold"/>), 512-bit VPCLMULQDQ from 256 bytes where the CPU has it, else 256-bit from
/// 128 bytes, else 128-bit PCLMULQDQ: on the development machine 50–80 GB/s against 12–15 GB/s for the stripes below
/// (docs/benchmarks.md, "Crc32C by carry-less multiplication").
/// </para>
/// <para>
/// Fallback without PCLMULQDQ (<see cref="AppendStriped"/>, e.g. on Arm): the crc32 instruction has a latency of about
/// three cycles but can start one per cycle, so one dependent chain uses a third of it. Inputs of at least
/// <see cref="InterleaveThreshold"/> bytes are cut into three equal stripes whose registers advance side by side, then
/// joined by the linearity of CRCs: reg(s, A‖B) = reg(s, A)·x^(8|B|) mod P ⊕ reg(0, B), where the product is a
/// carry-less multiplication modulo the polynomial (<see cref="MultiplyModP"/>).
/// </para>
/// </remarks>
public static class Crc32C
{
    /// <summary>Register value before any byte is appended.</summary>
    public const uint InitialState = 0xFFFFFFFFu;

    /// <summary>On the fallback path (no PCLMULQDQ), inputs at least this long are checksummed in three interleaved stripes.</summary>
    public const int InterleaveThreshold = 3 * 1024;

    private const uint Polynomial = 0x82F63B78u;

    /// <summary>x^(2^k) mod P, k = 0..63, in the reflected bit order the register uses.</summary>
    private static readonly uint[] PowersOfTwo = BuildPowersOfTwo();

    /// <summary>
    /// Which path <see cref="Append"/> takes for long inputs on this process: <c>fold512</c>, <c>fold256</c> or
    /// <c>fold128</c> (carry-less multiplies on 512-, 256- or 128-bit vectors), <c>crc32x3</c> (three crc32-instruction
    /// stripes) or <c>software</c>. A native AOT build decides this when it is compiled, for the instruction sets it
    /// targets, where the JIT asks the CPU it runs on; <c>kvasir --version</c> prints it.
    /// </summary>
    public static string Implementation =>
        Pclmulqdq.V512.IsSupported ? "fold512"
        : Pclmulqdq.V256.IsSupported ? "fold256"
        : Pclmulqdq.IsSupported ? "fold128"
        : System.Runtime.Intrinsics.X86.Sse42.X64.IsSupported || System.Runtime.Intrinsics.Arm.Crc32.Arm64.IsSupported ? "crc32x3"
        : "software";

    /// <summary>CRC-32C of <paramref name="data"/> in one call.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Complete(Append(InitialState, data));

    /// <summary>Feeds <paramref name="data"/> into a running <paramref name="state"/> and returns the new state. Split points do not matter.</summary>
    public static uint Append(uint state, ReadOnlySpan<byte> data)
    {
        if (data.Length < Crc32CFold.MinLength128) return AppendChain(state, data);
        if (data.Length >= Crc32CFold.MinLength512 && Pclmulqdq.V512.IsSupported) return Crc32CFold.Append512(state, data);
        if (data.Length >= Crc32CFold.MinLength256 && Pclmulqdq.V256.IsSupported) return Crc32CFold.Append256(state, data);
        if (data.Length >= Crc32CFold.MinLength128 && Pclmulqdq.IsSupported) return Crc32CFold.Append128(state, data);
        return AppendStriped(state, data);
    }

    /// <summary>The path without carry-less multiplies: three crc32 stripes for long inputs, one chain for the rest.</summary>
    internal static uint AppendStriped(uint state, ReadOnlySpan<byte> data)
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

        return AppendChain(state, data);
    }

    /// <summary>One dependent chain of crc32 instructions, eight bytes at a time.</summary>
    internal static uint AppendChain(uint state, ReadOnlySpan<byte> data)
    {
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
        // Branch-free: the bits of a are data, so a branch on each would be mispredicted half the time.
        uint product = 0;
        for (int i = 31; i >= 0; i--)
        {
            product ^= b & (0u - ((a >> i) & 1));       // a's coefficient of x^(31-i) times b·x^(31-i)
            b = (b >> 1) ^ (Polynomial & (0u - (b & 1))); // b·x mod P
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
    internal static uint ShiftFactor(long bytes) => PowerOfX(8 * bytes);

    /// <summary>x^<paramref name="exponent"/> mod P in the register's bit order (bit 31 = x^0); <paramref name="exponent"/> ≥ 0.</summary>
    internal static uint PowerOfX(long exponent)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(exponent);
        uint factor = 1u << 31; // x^0
        ulong bits = (ulong)exponent;
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
