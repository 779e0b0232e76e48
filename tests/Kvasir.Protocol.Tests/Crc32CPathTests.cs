using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Kvasir.Protocol;

namespace Kvasir.Protocol.Tests;

/// <summary>
/// Every internal CRC-32C path (the crc32 chain, the three-stripe fallback, each carry-less fold width, and the public
/// dispatcher) against a bitwise definition of the register: random lengths up to ~1 MiB, random running states,
/// misaligned starts and random split points. Fold widths the CPU lacks are not listed (this development machine has
/// all of them: sse4_2, pclmulqdq, avx512f, vpclmulqdq).
/// </summary>
public sealed class Crc32CPathTests
{
    private delegate uint AppendPath(uint state, ReadOnlySpan<byte> data);

    private static readonly Dictionary<string, (AppendPath Append, int MinLength, bool Supported)> s_paths = new()
    {
        ["chain"] = (Crc32C.AppendChain, 0, true),
        ["striped"] = (Crc32C.AppendStriped, 0, true),
        ["fold128"] = (Crc32CFold.Append128, Crc32CFold.MinLength128, Pclmulqdq.IsSupported),
        ["fold256"] = (Crc32CFold.Append256, Crc32CFold.MinLength256, Pclmulqdq.V256.IsSupported),
        ["fold512"] = (Crc32CFold.Append512, Crc32CFold.MinLength512, Pclmulqdq.V512.IsSupported),
        ["dispatch"] = (Crc32C.Append, 0, true),
    };

    public static TheoryData<string> Paths()
    {
        var data = new TheoryData<string>();
        foreach (var (name, path) in s_paths)
        {
            if (path.Supported) data.Add(name);
        }

        return data;
    }

    [Fact]
    public void Powers_of_x_match_repeated_multiplication_by_x()
    {
        uint power = 1u << 31; // x^0
        for (int exponent = 0; exponent <= 5000; exponent++)
        {
            Assert.Equal(power, Crc32C.PowerOfX(exponent));
            power = (power & 1) != 0 ? (power >> 1) ^ 0x82F63B78u : power >> 1; // times x, mod P
        }
    }

    [Fact]
    public void Fold_constants_move_a_lane_by_their_distance()
    {
        // The register of (16 bytes ‖ d zero bytes) must equal the register of the 16 bytes folded by d: checked with a
        // carry-less multiply done here, for random lanes and every distance the fold paths use.
        if (!Pclmulqdq.IsSupported) return;
        var random = new Random(17);
        var lane = new byte[16];
        foreach (int distance in new[] { 16, 32, 64, 128, 256, 1000 })
        {
            var k = Crc32CFold.FoldConstants(distance);
            for (int round = 0; round < 50; round++)
            {
                random.NextBytes(lane);
                var x = Vector128.Create(lane).AsUInt64();
                var folded = Pclmulqdq.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.CarrylessMultiply(x, k, 0x11);
                var foldedBytes = new byte[16];
                folded.AsByte().CopyTo(foldedBytes);
                var shifted = lane.Concat(new byte[distance]).ToArray();
                Assert.True(Crc32CReference.Register(0, shifted) == Crc32CReference.Register(0, foldedBytes), $"distance {distance}, lane {Convert.ToHexString(lane)}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Path_equals_the_bitwise_definition_at_boundary_lengths(string name)
    {
        var (append, minLength, _) = s_paths[name];
        var random = new Random(21);
        var buffer = new byte[8192 + 64];
        random.NextBytes(buffer);
        var lengths = new SortedSet<int>();
        foreach (int edge in new[] { 0, 16, 64, 128, 256, 512, 1024, Crc32C.InterleaveThreshold, 4096, 8192 })
        {
            for (int d = -17; d <= 17; d++) lengths.Add(edge + d);
        }

        foreach (int length in lengths.Where(l => l >= minLength && l <= 8192))
        {
            foreach (int start in new[] { 0, 1, 7, 13, 63 })
            {
                var data = buffer.AsSpan(start, length);
                uint state = (uint)random.Next() ^ ((uint)random.Next() << 16);
                Assert.True(Crc32CReference.Register(state, data) == append(state, data), $"{name}: length {length} at offset {start}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Path_equals_the_bitwise_definition_for_random_lengths_states_and_misaligned_starts(string name)
    {
        var (append, minLength, _) = s_paths[name];
        var random = new Random(name.Length * 1_000_003 + name[^1]);
        var buffer = new byte[(1 << 20) + 4096];
        random.NextBytes(buffer);
        for (int round = 0; round < 40; round++)
        {
            int limit = (round % 3) switch { 0 => 1_000, 1 => 70_000, _ => (1 << 20) + 1_000 };
            int length = random.Next(minLength, limit + 1);
            int start = random.Next(0, 64);
            var data = buffer.AsSpan(start, length);
            uint state = round == 0 ? Crc32C.InitialState : (uint)random.NextInt64(0, 1L << 32);
            Assert.True(Crc32CReference.Register(state, data) == append(state, data), $"{name}: length {length} at offset {start}, state {state:X8}");
        }
    }

    [Fact]
    public void Append_at_random_split_points_equals_one_shot_for_random_lengths()
    {
        var random = new Random(5);
        var buffer = new byte[(1 << 20) + 64];
        random.NextBytes(buffer);
        for (int round = 0; round < 60; round++)
        {
            int length = random.Next(0, (round % 2 == 0 ? 20_000 : 1 << 20) + 1);
            var data = buffer.AsSpan(random.Next(0, 64), length);
            uint expected = ~Crc32CReference.Register(Crc32C.InitialState, data);
            Assert.Equal(expected, Crc32C.Compute(data));
            var cuts = Enumerable.Range(0, random.Next(1, 6)).Select(_ => random.Next(0, length + 1)).Append(0).Append(length).Order().ToArray();
            uint state = Crc32C.InitialState;
            for (int i = 1; i < cuts.Length; i++) state = Crc32C.Append(state, data[cuts[i - 1]..cuts[i]]);
            Assert.True(expected == Crc32C.Complete(state), $"length {length}, cuts {string.Join(',', cuts)}");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_single_flipped_bit_anywhere_changes_the_result(string name)
    {
        // Control: the property tests above could fail; a path that ignored part of its input would fail here too.
        var (append, minLength, _) = s_paths[name];
        var data = new byte[Math.Max(minLength, 1) + 777];
        new Random(3).NextBytes(data);
        uint clean = append(Crc32C.InitialState, data);
        for (int i = 0; i < data.Length; i += 37)
        {
            data[i] ^= 0x10;
            Assert.True(clean != append(Crc32C.InitialState, data), $"{name}: flip at byte {i} went unnoticed");
            data[i] ^= 0x10;
        }
    }

    [Fact]
    public void Fold_paths_refuse_inputs_shorter_than_their_block_with_a_message_naming_the_minimum()
    {
        if (Pclmulqdq.IsSupported)
        {
            var e = Assert.Throws<ArgumentException>(() => Crc32CFold.Append128(0, new byte[Crc32CFold.MinLength128 - 1]));
            Assert.Contains($"{Crc32CFold.MinLength128} bytes", e.Message);
        }
    }
}
