using System.Buffers.Binary;
using System.Security.Cryptography;
using Kvasir.Protocol.Stats;

namespace Kvasir.Cli.Stats;

/// <summary>Settings of the synthetic workload of <c>kvasir stats demo</c>; every default is what the verb uses.</summary>
public sealed record DemoSettings
{
    /// <summary>Block lookups to generate.</summary>
    public int Accesses { get; init; } = 1000;

    /// <summary>Seed of the generator: the same seed and settings give the same file.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Shared prefixes (system prompts, documents), picked by a Zipf law of exponent <see cref="ZipfExponent"/>.</summary>
    public int Prefixes { get; init; } = 40;

    public double ZipfExponent { get; init; } = 1.1;

    /// <summary>Tokens per block (the engine's block size).</summary>
    public int BlockTokens { get; init; } = 16;

    /// <summary>KV bytes per token: 128 KiB is an 8B model in fp16 (32 layers × 8 KV heads × 128 dims × K and V × 2 bytes).</summary>
    public long BytesPerToken { get; init; } = 128 * 1024;

    /// <summary>Blocks the DRAM tier holds (LRU); blocks it evicts go to the disk tier.</summary>
    public int DramBlocks { get; init; } = 256;

    /// <summary>Blocks the disk tier holds (LRU); beyond it a block is gone and a miss.</summary>
    public int DiskBlocks { get; init; } = 1024;

    /// <summary>Requests per second arriving (Poisson).</summary>
    public double RequestsPerSecond { get; init; } = 8;
}

/// <summary>
/// A synthetic engine workload for the access statistics file: requests arrive as a Poisson process; each is a turn
/// of a conversation whose prompt is a Zipf-popular shared prefix, then every earlier turn (user message and answer),
/// then the new user message. The prompt's full blocks are looked up in order in a two-tier cache of limited size
/// (DRAM LRU over disk LRU): a hit says where, a miss computes the block and caches it. Block ids are chained
/// block hashes of the token ids (block hash v1 without extra keys), so a prefix shared by two prompts has one id.
/// </summary>
public static class StatsDemo
{
    public static AccessStatsFile Generate(DemoSettings s, long startUnixMs)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(s.Accesses);
        var rng = new Random(s.Seed);
        var zipf = ZipfTable(s.Prefixes, s.ZipfExponent);
        var prefixes = Enumerable.Range(0, s.Prefixes).Select(_ => RandomTokens(rng, s.BlockTokens * rng.Next(2, 17))).ToArray();
        var active = new List<Conversation>();
        var dram = new Lru(s.DramBlocks);
        var disk = new Lru(s.DiskBlocks);
        var accesses = new List<AccessRecord>(s.Accesses);
        long blockBytes = s.BlockTokens * s.BytesPerToken;
        double now = 0;
        while (accesses.Count < s.Accesses)
        {
            now += -Math.Log(1 - rng.NextDouble()) / s.RequestsPerSecond * 1000;
            Conversation conv;
            if (active.Count < 4 || (active.Count < 24 && rng.NextDouble() < 0.35))
            {
                int prefix = Array.BinarySearch(zipf, rng.NextDouble());
                prefix = prefix >= 0 ? prefix : Math.Min(~prefix, zipf.Length - 1);
                conv = new Conversation(new List<uint>(prefixes[prefix]), rng.Next(1, 9));
                active.Add(conv);
            }
            else conv = active[rng.Next(active.Count)];
            conv.Tokens.AddRange(RandomTokens(rng, rng.Next(8, 80)));   // the new user message
            var hashes = BlockHashes(conv.Tokens, s.BlockTokens);
            double t = now;
            foreach (var hash in hashes)
            {
                if (accesses.Count == s.Accesses) break;
                string id = Convert.ToHexStringLower(hash);
                string? tier = dram.Touch(id) ? "dram" : disk.Remove(id) ? "disk" : null;
                if (tier != "dram" && dram.Add(id) is { } evicted) disk.Add(evicted);
                // A hit costs a copy (~40 µs per 2 MiB block from DRAM, ~400 µs from disk); a miss its share of prefill.
                t += tier == "dram" ? 0.04 : tier == "disk" ? 0.4 : 2.5;
                accesses.Add(new AccessRecord(Math.Round(t, 3), id, tier is not null, tier, blockBytes, s.BlockTokens));
            }
            now = Math.Max(now, t);
            conv.Tokens.AddRange(RandomTokens(rng, rng.Next(16, 200)));   // the answer, reused by the next turn
            if (--conv.TurnsLeft == 0) active.Remove(conv);
        }
        long durationMs = accesses.Count == 0 ? 0 : (long)Math.Ceiling(accesses[^1].T);
        return new AccessStatsFile { Source = "dotnet", StartUnixMs = startUnixMs, EndUnixMs = startUnixMs + durationMs, Accesses = accesses };
    }

    private sealed class Conversation(List<uint> tokens, int turns)
    {
        public List<uint> Tokens { get; } = tokens;
        public int TurnsLeft { get; set; } = turns;
    }

    /// <summary>Cumulative Zipf probabilities of ranks 1..n.</summary>
    private static double[] ZipfTable(int n, double exponent)
    {
        var cdf = new double[n];
        double sum = 0;
        for (int k = 0; k < n; k++) cdf[k] = sum += 1 / Math.Pow(k + 1, exponent);
        for (int k = 0; k < n; k++) cdf[k] /= sum;
        return cdf;
    }

    private static uint[] RandomTokens(Random rng, int count)
    {
        var tokens = new uint[count];
        for (int i = 0; i < count; i++) tokens[i] = (uint)rng.Next(0, 128_000);
        return tokens;
    }

    /// <summary>
    /// Block hash v1 (docs/engine-side.md) with no extra keys: SHA-256 of "KVASIR-BLOCK-V1\0", the parent's hash,
    /// the token count and tokens as u32 LE, and a zero extra-key count; one per full block, chained.
    /// </summary>
    public static List<byte[]> BlockHashes(IReadOnlyList<uint> tokens, int blockSize)
    {
        var hashes = new List<byte[]>();
        var parent = new byte[32];
        var buffer = new byte[16 + 32 + 4 + 4 * blockSize + 4];
        "KVASIR-BLOCK-V1\0"u8.CopyTo(buffer);
        for (int b = 0; b + blockSize <= tokens.Count; b += blockSize)
        {
            parent.CopyTo(buffer, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(48), (uint)blockSize);
            for (int i = 0; i < blockSize; i++) BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(52 + 4 * i), tokens[b + i]);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(52 + 4 * blockSize), 0);
            parent = SHA256.HashData(buffer);
            hashes.Add(parent);
        }
        return hashes;
    }

    /// <summary>A bounded LRU set of block ids.</summary>
    private sealed class Lru(int capacity)
    {
        private readonly LinkedList<string> _order = new();
        private readonly Dictionary<string, LinkedListNode<string>> _nodes = new(StringComparer.Ordinal);

        /// <summary>True (and now most recent) when present.</summary>
        public bool Touch(string id)
        {
            if (!_nodes.TryGetValue(id, out var node)) return false;
            _order.Remove(node);
            _order.AddFirst(node);
            return true;
        }

        public bool Remove(string id)
        {
            if (!_nodes.Remove(id, out var node)) return false;
            _order.Remove(node);
            return true;
        }

        /// <summary>Adds an id; returns the one evicted to make room, if any.</summary>
        public string? Add(string id)
        {
            if (capacity <= 0) return id;
            _nodes[id] = _order.AddFirst(id);
            if (_order.Count <= capacity) return null;
            var victim = _order.Last!.Value;
            _order.RemoveLast();
            _nodes.Remove(victim);
            return victim;
        }
    }
}
