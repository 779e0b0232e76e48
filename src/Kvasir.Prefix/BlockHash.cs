using System.Buffers.Binary;
using System.Text;

namespace Kvasir.Prefix;

/// <summary>
/// The 32-byte SHA-256 of one full block of tokens, chained on its parent (spec v1, docs/engine-side.md).
/// Its lowercase hex (64 characters) is the block id; its key in a Kvasir store is the UTF-8 of
/// <c>"kvb1:" + hex</c> (69 bytes). Equality and hashing compare all 32 bytes; <c>default</c> is
/// <see cref="Zero"/>, the parent of the first block of a prefix.
/// </summary>
public readonly struct BlockHash : IEquatable<BlockHash>
{
    /// <summary>Bytes in a hash.</summary>
    public const int Size = 32;

    /// <summary>Prefix of a block's key in a Kvasir store.</summary>
    public const string KeyPrefix = "kvb1:";

    private readonly ulong _a, _b, _c, _d;

    private BlockHash(ulong a, ulong b, ulong c, ulong d) => (_a, _b, _c, _d) = (a, b, c, d);

    /// <summary>32 zero bytes: the parent of a prefix's first block.</summary>
    public static BlockHash Zero => default;

    /// <summary>A hash from its 32 bytes; throws <see cref="ArgumentException"/> for any other length.</summary>
    public static BlockHash FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException($"a block hash is {Size} bytes, not {bytes.Length}", nameof(bytes));
        return new BlockHash(
            BinaryPrimitives.ReadUInt64BigEndian(bytes),
            BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(bytes[16..]),
            BinaryPrimitives.ReadUInt64BigEndian(bytes[24..]));
    }

    /// <summary>A hash from its 64 hex characters (either case); throws <see cref="FormatException"/> otherwise.</summary>
    public static BlockHash Parse(string hex)
    {
        ArgumentNullException.ThrowIfNull(hex);
        if (hex.Length != Size * 2) throw new FormatException($"a block id is {Size * 2} hex characters, not {hex.Length}");
        return FromBytes(Convert.FromHexString(hex));
    }

    /// <summary>Writes the 32 bytes into <paramref name="destination"/> (at least 32 bytes long).</summary>
    public void CopyTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, _a);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _b);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], _c);
        BinaryPrimitives.WriteUInt64BigEndian(destination[24..], _d);
    }

    /// <summary>The 32 bytes in a new array.</summary>
    public byte[] ToBytes()
    {
        var bytes = new byte[Size];
        CopyTo(bytes);
        return bytes;
    }

    /// <summary>The block id: 64 lowercase hex characters.</summary>
    public string Hex
    {
        get
        {
            Span<byte> bytes = stackalloc byte[Size];
            CopyTo(bytes);
            return Convert.ToHexStringLower(bytes);
        }
    }

    /// <summary>The block's key in a Kvasir store: UTF-8 of "kvb1:" + <see cref="Hex"/>, 69 bytes.</summary>
    public byte[] StoreKey() => Encoding.ASCII.GetBytes(KeyPrefix + Hex);

    /// <summary>The block's key as a string, "kvb1:" + <see cref="Hex"/>.</summary>
    public string StoreKeyString => KeyPrefix + Hex;

    /// <inheritdoc/>
    public bool Equals(BlockHash other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BlockHash other && Equals(other);

    /// <summary>The first eight bytes, big-endian (a cache's index takes its tag from them and compares the rest on a match).</summary>
    internal ulong Prefix => _a;

    /// <summary>All 32 bytes folded into 64 bits (hashes that share their first eight bytes still differ here).</summary>
    internal ulong Fingerprint => _a ^ System.Numerics.BitOperations.RotateLeft(_b, 16) ^ System.Numerics.BitOperations.RotateLeft(_c, 32) ^ System.Numerics.BitOperations.RotateLeft(_d, 48);

    /// <summary>The hash is already uniform: its first eight bytes serve.</summary>
    public override int GetHashCode() => (int)_a ^ (int)(_a >> 32);

    /// <summary>The block id (<see cref="Hex"/>).</summary>
    public override string ToString() => Hex;

    /// <summary>Byte-wise equality.</summary>
    public static bool operator ==(BlockHash left, BlockHash right) => left.Equals(right);

    /// <summary>Byte-wise inequality.</summary>
    public static bool operator !=(BlockHash left, BlockHash right) => !left.Equals(right);
}
