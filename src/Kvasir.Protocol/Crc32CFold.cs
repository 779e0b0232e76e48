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
    public const int MinLength128 = 4 * Lanes128.Width;

    /// <summary>Shortest input for the 256-bit path.</summary>
    public const int MinLength256 = 4 * Lanes256.Width;

    /// <summary>Shortest input for the 512-bit path.</summary>
    public const int MinLength512 = 4 * Lanes512.Width;

    /// <summary>
    /// The pair of constants that moves a 128-bit lane <paramref name="bytes"/> bytes further on: qword 0 multiplies
    /// the lane's high half, qword 1 its low half (class remarks).
    /// </summary>
    internal static Vector128<ulong> FoldConstants(int bytes)
    {
        long bits = 8L * bytes;
        return Vector128.Create((ulong)Crc32C.PowerOfX(bits + 31), (ulong)Crc32C.PowerOfX(bits - 33));
    }

    /// <summary>Appends <paramref name="data"/> (at least <see cref="MinLength128"/> bytes) with 128-bit PCLMULQDQ folding, 64 bytes per step.</summary>
    internal static uint Append128(uint state, ReadOnlySpan<byte> data)
    {
        if (!Pclmulqdq.IsSupported) throw new PlatformNotSupportedException("PCLMULQDQ is not available on this CPU.");
        return Append<Lanes128, Vector128<ulong>>(state, data);
    }

    /// <summary>Appends <paramref name="data"/> (at least <see cref="MinLength256"/> bytes) with 256-bit VPCLMULQDQ folding, 128 bytes per step.</summary>
    internal static uint Append256(uint state, ReadOnlySpan<byte> data)
    {
        if (!Pclmulqdq.V256.IsSupported) throw new PlatformNotSupportedException("VPCLMULQDQ on 256-bit vectors is not available on this CPU.");
        return Append<Lanes256, Vector256<ulong>>(state, data);
    }

    /// <summary>Appends <paramref name="data"/> (at least <see cref="MinLength512"/> bytes) with 512-bit VPCLMULQDQ folding, 256 bytes per step.</summary>
    internal static uint Append512(uint state, ReadOnlySpan<byte> data)
    {
        if (!Pclmulqdq.V512.IsSupported) throw new PlatformNotSupportedException("VPCLMULQDQ on 512-bit vectors is not available on this CPU.");
        return Append<Lanes512, Vector512<ulong>>(state, data);
    }

    /// <summary>
    /// The fold for one vector width (the JIT compiles one copy per <typeparamref name="TLanes"/>): four accumulators
    /// over whole blocks of four vectors, folded into one, then whole vectors, then 128-bit lanes, then the tail.
    /// </summary>
    private static uint Append<TLanes, TVector>(uint state, ReadOnlySpan<byte> data)
        where TLanes : struct, ILanes<TVector>
        where TVector : struct
    {
        const int Accumulators = 4;
        if (data.Length < Accumulators * TLanes.Width)
        {
            throw new ArgumentException($"the {8 * TLanes.Width}-bit fold needs at least {Accumulators * TLanes.Width} bytes", nameof(data));
        }

        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length;
        nuint width = (nuint)TLanes.Width;
        var v0 = TLanes.Seeded(TLanes.Load(ref start, 0), state);
        var v1 = TLanes.Load(ref start, width);
        var v2 = TLanes.Load(ref start, 2 * width);
        var v3 = TLanes.Load(ref start, 3 * width);
        nuint offset = Accumulators * width;
        var k = TLanes.BlockConstants;
        for (; length - offset >= Accumulators * width; offset += Accumulators * width)
        {
            v0 = TLanes.FoldInto(v0, k, TLanes.Load(ref start, offset));
            v1 = TLanes.FoldInto(v1, k, TLanes.Load(ref start, offset + width));
            v2 = TLanes.FoldInto(v2, k, TLanes.Load(ref start, offset + 2 * width));
            v3 = TLanes.FoldInto(v3, k, TLanes.Load(ref start, offset + 3 * width));
        }

        k = TLanes.VectorConstants;
        var v = TLanes.FoldInto(TLanes.FoldInto(TLanes.FoldInto(v0, k, v1), k, v2), k, v3);
        for (; length - offset >= width; offset += width) v = TLanes.FoldInto(v, k, TLanes.Load(ref start, offset));
        var x = TLanes.Narrow(v);
        for (; length - offset >= 16; offset += 16) x = Lanes128.FoldInto(x, Lanes128.VectorConstants, Lanes128.Load(ref start, offset));
        state = BitOperations.Crc32C(0u, x.GetElement(0));
        state = BitOperations.Crc32C(state, x.GetElement(1));
        return Crc32C.AppendChain(state, data[(int)offset..]);
    }

    /// <summary>One vector width's operations; every 128-bit lane folds independently with the same constants.</summary>
    private interface ILanes<TVector>
        where TVector : struct
    {
        /// <summary>Bytes per vector.</summary>
        static abstract int Width { get; }

        /// <summary>Constants that move each lane by four vectors (one block of the accumulators).</summary>
        static abstract TVector BlockConstants { get; }

        /// <summary>Constants that move each lane by one vector.</summary>
        static abstract TVector VectorConstants { get; }

        static abstract TVector Load(ref byte start, nuint offset);

        /// <summary>The first vector of the input with the running state xor-ed into its first 32 bits.</summary>
        static abstract TVector Seeded(TVector first, uint state);

        /// <summary>Each lane of <paramref name="x"/> moved on by the constants' distance, xor <paramref name="next"/>.</summary>
        static abstract TVector FoldInto(TVector x, TVector k, TVector next);

        /// <summary>The vector's lanes folded into one 128-bit lane, in message order.</summary>
        static abstract Vector128<ulong> Narrow(TVector v);
    }

    private readonly struct Lanes128 : ILanes<Vector128<ulong>>
    {
        public const int Width = 16;
        private static readonly Vector128<ulong> s_block = FoldConstants(4 * Width);
        private static readonly Vector128<ulong> s_vector = FoldConstants(Width);

        static int ILanes<Vector128<ulong>>.Width => Width;
        public static Vector128<ulong> BlockConstants => s_block;
        public static Vector128<ulong> VectorConstants => s_vector;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<ulong> Load(ref byte start, nuint offset) => Vector128.LoadUnsafe(ref start, offset).AsUInt64();

        public static Vector128<ulong> Seeded(Vector128<ulong> first, uint state) => first ^ Vector128.CreateScalar((ulong)state);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<ulong> FoldInto(Vector128<ulong> x, Vector128<ulong> k, Vector128<ulong> next)
            => Pclmulqdq.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.CarrylessMultiply(x, k, 0x11) ^ next;

        public static Vector128<ulong> Narrow(Vector128<ulong> v) => v;
    }

    private readonly struct Lanes256 : ILanes<Vector256<ulong>>
    {
        public const int Width = 32;
        private static readonly Vector256<ulong> s_block = Vector256.Create(FoldConstants(4 * Width), FoldConstants(4 * Width));
        private static readonly Vector256<ulong> s_vector = Vector256.Create(FoldConstants(Width), FoldConstants(Width));

        static int ILanes<Vector256<ulong>>.Width => Width;
        public static Vector256<ulong> BlockConstants => s_block;
        public static Vector256<ulong> VectorConstants => s_vector;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<ulong> Load(ref byte start, nuint offset) => Vector256.LoadUnsafe(ref start, offset).AsUInt64();

        public static Vector256<ulong> Seeded(Vector256<ulong> first, uint state) => first ^ Vector256.CreateScalar((ulong)state);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<ulong> FoldInto(Vector256<ulong> x, Vector256<ulong> k, Vector256<ulong> next)
            => Pclmulqdq.V256.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.V256.CarrylessMultiply(x, k, 0x11) ^ next;

        public static Vector128<ulong> Narrow(Vector256<ulong> v) => Lanes128.FoldInto(v.GetLower(), Lanes128.VectorConstants, v.GetUpper());
    }

    private readonly struct Lanes512 : ILanes<Vector512<ulong>>
    {
        public const int Width = 64;
        private static readonly Vector512<ulong> s_block = Quad(FoldConstants(4 * Width));
        private static readonly Vector512<ulong> s_vector = Quad(FoldConstants(Width));

        static int ILanes<Vector512<ulong>>.Width => Width;
        public static Vector512<ulong> BlockConstants => s_block;
        public static Vector512<ulong> VectorConstants => s_vector;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<ulong> Load(ref byte start, nuint offset) => Vector512.LoadUnsafe(ref start, offset).AsUInt64();

        public static Vector512<ulong> Seeded(Vector512<ulong> first, uint state) => first ^ Vector512.CreateScalar((ulong)state);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<ulong> FoldInto(Vector512<ulong> x, Vector512<ulong> k, Vector512<ulong> next)
            => Pclmulqdq.V512.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.V512.CarrylessMultiply(x, k, 0x11) ^ next;

        public static Vector128<ulong> Narrow(Vector512<ulong> v)
        {
            var k = Lanes128.VectorConstants;
            var (low, high) = (v.GetLower(), v.GetUpper());
            return Lanes128.FoldInto(Lanes128.FoldInto(Lanes128.FoldInto(low.GetLower(), k, low.GetUpper()), k, high.GetLower()), k, high.GetUpper());
        }

        private static Vector512<ulong> Quad(Vector128<ulong> lane)
        {
            var two = Vector256.Create(lane, lane);
            return Vector512.Create(two, two);
        }
    }
}
