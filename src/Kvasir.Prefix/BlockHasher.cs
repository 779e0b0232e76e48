using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Kvasir.Prefix;

/// <summary>
/// Chained block hashing, spec v1 (docs/engine-side.md, golden vectors in tests/vectors/block_hashes.json).
/// A block's hash is SHA-256 over "KVASIR-BLOCK-V1\0", the parent's 32 bytes, the token count and tokens
/// (u32 little-endian each), and the extra keys (count, then byte length and UTF-8 per key). Only full
/// blocks are hashed: N tokens give floor(N / <see cref="BlockSize"/>) hashes. A .NET and a Python engine
/// hashing the same tokens with the same extra keys name the same blocks. Immutable and thread-safe.
/// </summary>
public sealed class BlockHasher
{
    private static readonly byte[] Domain = "KVASIR-BLOCK-V1\0"u8.ToArray();

    private readonly byte[] _extra;

    /// <summary>
    /// A hasher for blocks of <paramref name="blockSize"/> tokens (default 16; at least 1, else
    /// <see cref="ConfigInvalidException"/>) with <paramref name="extraKeys"/> (model id, LoRA id, cache salt;
    /// default none) mixed into every block: different extra keys never share a block.
    /// </summary>
    public BlockHasher(int blockSize = 16, IReadOnlyList<string>? extraKeys = null)
    {
        if (blockSize < 1)
            throw new ConfigInvalidException($"block size must be at least 1 token, not {blockSize}",
                new Dictionary<string, object?> { ["block_size"] = blockSize });
        BlockSize = blockSize;
        ExtraKeys = extraKeys?.ToArray() ?? [];
        _extra = EncodeExtraKeys(ExtraKeys);
    }

    /// <summary>Tokens per block.</summary>
    public int BlockSize { get; }

    /// <summary>The extra keys mixed into every block, in order.</summary>
    public IReadOnlyList<string> ExtraKeys { get; }

    /// <summary>
    /// The hashes of the full blocks of <paramref name="tokens"/>, each chained on the previous; the first on
    /// <paramref name="parent"/> (default <see cref="BlockHash.Zero"/>, a prefix's start). A token outside
    /// 0 .. 2^32−1 throws <see cref="ArgumentOutOfRangeException"/>; a partial tail is not hashed.
    /// </summary>
    public BlockHash[] ComputeBlockHashes(ReadOnlySpan<long> tokens, BlockHash parent = default)
    {
        var hashes = new BlockHash[tokens.Length / BlockSize];
        byte[] buffer = new byte[Domain.Length + BlockHash.Size + 4 + 4 * BlockSize + _extra.Length];
        for (int i = 0; i < hashes.Length; i++)
        {
            parent = HashBlock(buffer, parent, tokens.Slice(i * BlockSize, BlockSize));
            hashes[i] = parent;
        }
        return hashes;
    }

    /// <summary>As <see cref="ComputeBlockHashes(ReadOnlySpan{long}, BlockHash)"/> for 32-bit token ids; a negative one throws.</summary>
    public BlockHash[] ComputeBlockHashes(ReadOnlySpan<int> tokens, BlockHash parent = default)
    {
        var wide = new long[tokens.Length];
        for (int i = 0; i < wide.Length; i++) wide[i] = tokens[i];
        return ComputeBlockHashes(wide, parent);
    }

    /// <summary>The hash of one block of any length (not only <see cref="BlockSize"/>) on <paramref name="parent"/>.</summary>
    public BlockHash HashBlock(BlockHash parent, ReadOnlySpan<long> tokens)
        => HashBlock(new byte[Domain.Length + BlockHash.Size + 4 + 4 * tokens.Length + _extra.Length], parent, tokens);

    private BlockHash HashBlock(byte[] buffer, BlockHash parent, ReadOnlySpan<long> tokens)
    {
        Span<byte> span = buffer;
        Domain.CopyTo(span);
        int at = Domain.Length;
        parent.CopyTo(span[at..]);
        at += BlockHash.Size;
        BinaryPrimitives.WriteUInt32LittleEndian(span[at..], (uint)tokens.Length);
        at += 4;
        foreach (long token in tokens)
        {
            if (token is < 0 or > uint.MaxValue)
                throw new ArgumentOutOfRangeException(nameof(tokens), token, "a token id must be in 0 .. 2^32-1");
            BinaryPrimitives.WriteUInt32LittleEndian(span[at..], (uint)token);
            at += 4;
        }
        _extra.CopyTo(span[at..]);
        at += _extra.Length;
        Span<byte> digest = stackalloc byte[BlockHash.Size];
        SHA256.HashData(span[..at], digest);
        return BlockHash.FromBytes(digest);
    }

    private static byte[] EncodeExtraKeys(IReadOnlyList<string> keys)
    {
        using var stream = new MemoryStream();
        Span<byte> u32 = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)keys.Count);
        stream.Write(u32);
        foreach (string key in keys)
        {
            ArgumentNullException.ThrowIfNull(key, nameof(keys));
            byte[] utf8 = Encoding.UTF8.GetBytes(key);
            BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)utf8.Length);
            stream.Write(u32);
            stream.Write(utf8);
        }
        return stream.ToArray();
    }
}
