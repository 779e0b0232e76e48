using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Kvasir.Protocol;

/// <summary>
/// Rendezvous (highest-random-weight) placement of keys over nodes, as specified in
/// docs/protocol.md ("Placement"). Every client must compute exactly this so that all of them
/// place a key on the same nodes; tests/vectors/rendezvous.json pins it byte for byte.
/// <para>
/// hash(bytes) = the first 8 bytes of SHA-256(bytes) read as a little-endian u64;
/// weight(key, node) = mix64(hash(key) XOR hash(UTF-8 node id)), mix64 being the SplitMix64
/// finalizer; nodes rank by weight descending, equal weights by node id bytes ascending.
/// Removing a node moves only the keys that ranked it first; adding one takes about 1/N of them.
/// </para>
/// </summary>
public static class Rendezvous
{
    /// <summary>First 8 bytes of SHA-256 of <paramref name="data"/>, little-endian.</summary>
    public static ulong Hash(ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(data, digest);
        return BinaryPrimitives.ReadUInt64LittleEndian(digest);
    }

    /// <summary>Hash of a node id (its UTF-8 bytes).</summary>
    public static ulong NodeHash(string nodeId) => Hash(Encoding.UTF8.GetBytes(nodeId));

    /// <summary>The SplitMix64 finalizer: a bijection on u64 with full avalanche.</summary>
    public static ulong Mix64(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public static ulong Weight(ulong keyHash, ulong nodeHash) => Mix64(keyHash ^ nodeHash);

    /// <summary>
    /// Chain placement (docs/protocol.md § Placement): the key whose nodes hold every block of a chained put —
    /// <paramref name="root"/> when given, else the put's first key. A put that continues a parent chain must name
    /// its root: its first key is not the chain's, and placing by it would scatter the chain.
    /// </summary>
    /// <exception cref="ArgumentException">The put continues a parent without naming a root, or the key is not 1..512 bytes.</exception>
    public static ReadOnlyMemory<byte> ChainPlacementKey(ReadOnlyMemory<byte> firstKey, ReadOnlyMemory<byte> root, bool continuesParent)
    {
        if (root.IsEmpty && continuesParent)
            throw new ArgumentException("chain placement: a put that continues a parent chain must name the chain's first key (its root)");
        var key = root.IsEmpty ? firstKey : root;
        return key.Length is >= 1 and <= ProtocolLimits.MaxKeyBytes
            ? key
            : throw new ArgumentException($"chain placement: the chain root must be 1..{ProtocolLimits.MaxKeyBytes} bytes (got {key.Length})");
    }

    /// <summary>
    /// Writes into <paramref name="ranks"/> the indexes of the <paramref name="ranks"/>.Length
    /// highest-ranked nodes for a key, best first. <paramref name="nodeIds"/> breaks ties and must
    /// be parallel to <paramref name="nodeHashes"/>.
    /// </summary>
    public static void Rank(ulong keyHash, ReadOnlySpan<ulong> nodeHashes, IReadOnlyList<string> nodeIds, Span<int> ranks)
    {
        if (ranks.Length > nodeHashes.Length) throw new ArgumentException($"asked for {ranks.Length} nodes of {nodeHashes.Length}", nameof(ranks));
        Span<ulong> best = stackalloc ulong[ranks.Length];
        int filled = 0;
        for (int n = 0; n < nodeHashes.Length; n++)
        {
            ulong w = Weight(keyHash, nodeHashes[n]);
            // Insertion into the short sorted prefix: R is small (1..3 in practice).
            int at = filled;
            while (at > 0 && Better(w, nodeIds[n], best[at - 1], nodeIds[ranks[at - 1]])) at--;
            if (at >= ranks.Length) continue;
            int last = Math.Min(filled, ranks.Length - 1);
            for (int j = last; j > at; j--) { best[j] = best[j - 1]; ranks[j] = ranks[j - 1]; }
            best[at] = w;
            ranks[at] = n;
            if (filled < ranks.Length) filled++;
        }
    }

    private static bool Better(ulong w, string id, ulong otherW, string otherId)
        => w != otherW ? w > otherW : string.CompareOrdinal(id, otherId) < 0;
}
