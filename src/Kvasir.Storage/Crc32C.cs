using System.Buffers.Binary;
using System.Numerics;

namespace Kvasir.Storage;

/// <summary>
/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF, final xor 0xFFFFFFFF),
/// hardware-accelerated through <see cref="BitOperations.Crc32C(uint, ulong)"/>. "123456789" gives 0xE3069283.
/// </summary>
/// <remarks>
/// Incremental use, for a value arriving in chunks:
/// <code>
/// uint state = Crc32C.InitialState;
/// foreach (chunk) state = Crc32C.Append(state, chunk);
/// uint crc = Crc32C.Complete(state);   // equals Crc32C.Compute(all bytes)
/// </code>
/// The state is the raw register (not yet xor-ed), so it must not be compared with a finished CRC.
/// </remarks>
public static class Crc32C
{
    /// <summary>Register value before any byte is appended.</summary>
    public const uint InitialState = 0xFFFFFFFFu;

    /// <summary>CRC-32C of <paramref name="data"/> in one call.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Complete(Append(InitialState, data));

    /// <summary>Feeds <paramref name="data"/> into a running <paramref name="state"/> and returns the new state. Split points do not matter.</summary>
    public static uint Append(uint state, ReadOnlySpan<byte> data)
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
}
