using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kvasir.Protocol;

/// <summary>
/// CRC-32C by carry-less-multiply folding (PCLMULQDQ on 128-bit lanes; VPCLMULQDQ on 256- and 512-bit vectors), for
/// <see cref="Crc32C.Append"/> on long inputs. Each path folds four accumulators of one vector each over the input, then
/// folds them into one 128-bit remainder and finishes it and the last &lt;16 bytes with the crc32 instruction.
/// </summary>
/// <remarks>
/// <para>
/// Bit order: a little-endian load puts message bit j (bit 0 of byte 0 first) in bit j of a 128-bit lane, so the lane
/// is the polynomial Σ m_j·x^(127−j): qword 0 is its high half H, qword 1 its low half L. Appending d zero bits to the
/// lane multiplies it by x^d, and mod P the product is congruent to H·(x^(64+d) mod P) + L·(x^d mod P). A 32-bit
/// register constant c (bit 31 = x^0) zero-extended into a qword stands for c·x^32, and a carry-less multiply of two
/// reflected qwords yields their product times x in the 128-bit lane's order; so the fold constants are
/// x^(d+31) mod P for H and x^(d−33) mod P for L (<see cref="FoldConstants"/>). Both products fit in 128 bits.
/// </para>
/// <para>
/// Congruence mod P is all a CRC needs: the register after M‖rest depends on M only mod P. The running state enters
/// by xor into the first 32 message bits (the register is linear), and the folded 16 bytes are then fed to the crc32
/// instruction from a zero register.
/// </para>
/// </remarks>
internal static class Crc32CFold
{
    /// <summary>Shortest input for the 128-bit path: one block of its four accumulators.</summary>
    public const int MinLength128 = 4 * 16;

    /// <summary>Shortest input for the 256-bit path.</summary>
    public const int MinLength256 = 4 * 32;

    /// <summary>Shortest input for the 512-bit path.</summary>
    public const int MinLength512 = 4 * 64;

    private static readonly Vector128<ulong> s_fold16 = FoldConstants(16);
    private static readonly Vector128<ulong> s_fold64 = FoldConstants(64);
    private static readonly Vector256<ulong> s_fold32x2 = Twice(FoldConstants(32));
    private static readonly Vector256<ulong> s_fold128x2 = Twice(FoldConstants(128));
    private static readonly Vector512<ulong> s_fold64x4 = Vector512.Create(Twice(FoldConstants(64)), Twice(FoldConstants(64)));
    private static readonly Vector512<ulong> s_fold256x4 = Vector512.Create(Twice(FoldConstants(256)), Twice(FoldConstants(256)));

    /// <summary>
    /// The pair of constants that moves a 128-bit lane <paramref name="bytes"/> bytes further on: qword 0 multiplies
    /// the lane's high half, qword 1 its low half (class remarks).
    /// </summary>
    internal static Vector128<ulong> FoldConstants(int bytes)
    {
        long bits = 8L * bytes;
        return Vector128.Create((ulong)Crc32C.PowerOfX(bits + 31), (ulong)Crc32C.PowerOfX(bits - 33));
    }

    private static Vector256<ulong> Twice(Vector128<ulong> lane) => Vector256.Create(lane, lane);

    /// <summary>Appends <paramref name="data"/> (at least <see cref="MinLength128"/> bytes) with 128-bit PCLMULQDQ folding, 64 bytes per step.</summary>
    internal static uint Append128(uint state, ReadOnlySpan<byte> data)
    {
        if (!Pclmulqdq.IsSupported) throw new PlatformNotSupportedException("PCLMULQDQ is not available on this CPU.");
        if (data.Length < MinLength128) throw new ArgumentException($"the 128-bit fold needs at least {MinLength128} bytes", nameof(data));
        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length;
        var x0 = Load128(ref start, 0) ^ Vector128.CreateScalar((ulong)state);
        var x1 = Load128(ref start, 16);
        var x2 = Load128(ref start, 32);
        var x3 = Load128(ref start, 48);
        nuint offset = 64;
        var k = s_fold64;
        for (; length - offset >= 64; offset += 64)
        {
            x0 = Fold(x0, k) ^ Load128(ref start, offset);
            x1 = Fold(x1, k) ^ Load128(ref start, offset + 16);
            x2 = Fold(x2, k) ^ Load128(ref start, offset + 32);
            x3 = Fold(x3, k) ^ Load128(ref start, offset + 48);
        }

        var x = Fold(Fold(Fold(x0, s_fold16) ^ x1, s_fold16) ^ x2, s_fold16) ^ x3;
        return Finish(x, data, offset);
    }

    /// <summary>Appends <paramref name="data"/> (at least <see cref="MinLength256"/> bytes) with 256-bit VPCLMULQDQ folding, 128 bytes per step.</summary>
    internal static uint Append256(uint state, ReadOnlySpan<byte> data)
    {
        if (!Pclmulqdq.V256.IsSupported) throw new PlatformNotSupportedException("VPCLMULQDQ on 256-bit vectors is not available on this CPU.");
        if (data.Length < MinLength256) throw new ArgumentException($"the 256-bit fold needs at least {MinLength256} bytes", nameof(data));
        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length;
        var y0 = Load256(ref start, 0) ^ Vector256.CreateScalar((ulong)state);
        var y1 = Load256(ref start, 32);
        var y2 = Load256(ref start, 64);
        var y3 = Load256(ref start, 96);
        nuint offset = 128;
        var k = s_fold128x2;
        for (; length - offset >= 128; offset += 128)
        {
            y0 = Fold(y0, k) ^ Load256(ref start, offset);
            y1 = Fold(y1, k) ^ Load256(ref start, offset + 32);
            y2 = Fold(y2, k) ^ Load256(ref start, offset + 64);
            y3 = Fold(y3, k) ^ Load256(ref start, offset + 96);
        }

        var k32 = s_fold32x2;
        var y = Fold(Fold(Fold(y0, k32) ^ y1, k32) ^ y2, k32) ^ y3;
        for (; length - offset >= 32; offset += 32) y = Fold(y, k32) ^ Load256(ref start, offset);
        return Finish(Fold(y.GetLower(), s_fold16) ^ y.GetUpper(), data, offset);
    }

    /// <summary>Appends <paramref name="data"/> (at least <see cref="MinLength512"/> bytes) with 512-bit VPCLMULQDQ folding, 256 bytes per step.</summary>
    internal static uint Append512(uint state, ReadOnlySpan<byte> data)
    {
        if (!Pclmulqdq.V512.IsSupported) throw new PlatformNotSupportedException("VPCLMULQDQ on 512-bit vectors is not available on this CPU.");
        if (data.Length < MinLength512) throw new ArgumentException($"the 512-bit fold needs at least {MinLength512} bytes", nameof(data));
        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length;
        var z0 = Load512(ref start, 0) ^ Vector512.CreateScalar((ulong)state);
        var z1 = Load512(ref start, 64);
        var z2 = Load512(ref start, 128);
        var z3 = Load512(ref start, 192);
        nuint offset = 256;
        var k = s_fold256x4;
        for (; length - offset >= 256; offset += 256)
        {
            z0 = Fold(z0, k) ^ Load512(ref start, offset);
            z1 = Fold(z1, k) ^ Load512(ref start, offset + 64);
            z2 = Fold(z2, k) ^ Load512(ref start, offset + 128);
            z3 = Fold(z3, k) ^ Load512(ref start, offset + 192);
        }

        var k64 = s_fold64x4;
        var z = Fold(Fold(Fold(z0, k64) ^ z1, k64) ^ z2, k64) ^ z3;
        for (; length - offset >= 64; offset += 64) z = Fold(z, k64) ^ Load512(ref start, offset);
        var k16 = s_fold16;
        var low = z.GetLower();
        var high = z.GetUpper();
        var x = Fold(Fold(Fold(low.GetLower(), k16) ^ low.GetUpper(), k16) ^ high.GetLower(), k16) ^ high.GetUpper();
        return Finish(x, data, offset);
    }

    /// <summary>Folds the remaining whole 16-byte lanes into <paramref name="x"/>, then hands it and the tail to the crc32 instruction.</summary>
    private static uint Finish(Vector128<ulong> x, ReadOnlySpan<byte> data, nuint offset)
    {
        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length;
        for (; length - offset >= 16; offset += 16) x = Fold(x, s_fold16) ^ Load128(ref start, offset);
        uint state = BitOperations.Crc32C(0u, x.GetElement(0));
        state = BitOperations.Crc32C(state, x.GetElement(1));
        return Crc32C.AppendChain(state, data[(int)offset..]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Fold(Vector128<ulong> x, Vector128<ulong> k)
        => Pclmulqdq.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.CarrylessMultiply(x, k, 0x11);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Fold(Vector256<ulong> x, Vector256<ulong> k)
        => Pclmulqdq.V256.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.V256.CarrylessMultiply(x, k, 0x11);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Fold(Vector512<ulong> x, Vector512<ulong> k)
        => Pclmulqdq.V512.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.V512.CarrylessMultiply(x, k, 0x11);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Load128(ref byte start, nuint offset) => Vector128.LoadUnsafe(ref start, offset).AsUInt64();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Load256(ref byte start, nuint offset) => Vector256.LoadUnsafe(ref start, offset).AsUInt64();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Load512(ref byte start, nuint offset) => Vector512.LoadUnsafe(ref start, offset).AsUInt64();
}
