namespace Kvasir.Protocol.Tests;

/// <summary>CRC-32C by its definition, one bit at a time: what every path of Kvasir.Protocol.Crc32C is checked against.</summary>
internal static class Crc32CReference
{
    /// <summary>The register after <paramref name="data"/>, starting from <paramref name="state"/> (reflected polynomial 0x82F63B78).</summary>
    public static uint Register(uint state, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
        {
            state ^= b;
            for (int i = 0; i < 8; i++) state = (state & 1) != 0 ? (state >> 1) ^ 0x82F63B78u : state >> 1;
        }

        return state;
    }
}
