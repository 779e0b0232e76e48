using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Cli.Bench.Trace;

/// <summary>What a replay of a trace achieved: blocks and prefill tokens served from the cache.</summary>
public sealed record TraceHits(long Requests, long Blocks, long HitBlocks, long InputTokens, long TokensSaved, long Evictions)
{
    /// <summary>Share of the trace's prompt blocks that were served (each request hits the longest resident prefix of its chain).</summary>
    public double HitRate => Blocks == 0 ? 0 : (double)HitBlocks / Blocks;
}

/// <summary>
/// Replays a trace's block chains against a block cache of a given number of blocks, offline and in one thread. A
/// request hits the longest resident prefix of its chain: those blocks are read (in order), the rest are stored as a
/// chain whose parent is the preceding block. Every policy runs in a real <see cref="KvArenaStore"/> (the node's
/// code: its index, allocator and policy) with tiny values, one block per value and no watermark slack, so what the
/// simulator reports is what a node of that many blocks does under the same sequence of requests.
/// </summary>
public static class TraceSimulator
{
    /// <summary>Bytes per simulated value: the store's block, so its arena holds exactly the capacity in blocks.</summary>
    public const int ValueBytes = 64;

    /// <summary>Options of a store that holds exactly <paramref name="blocks"/> values of <paramref name="blockBytes"/> and evicts only when full.</summary>
    public static StoreOptions StoreFor(long blocks, int blockBytes, EvictionPolicyKind policy) => new()
    {
        Capacity = Math.Max(1, blocks) * blockBytes,
        BlockSize = blockBytes,
        MaxValueBytes = blockBytes,
        HighWatermark = 1.0,
        LowWatermark = 1.0,
        Eviction = policy,
    };

    /// <summary>Replays <paramref name="requests"/> against a store of <paramref name="capacityBlocks"/> blocks under <paramref name="policy"/>.</summary>
    public static TraceHits Run(IReadOnlyList<TraceRequest> requests, EvictionPolicyKind policy, long capacityBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBlocks, 1);
        var keys = new Dictionary<long, byte[]>();
        byte[] KeyOf(long block) => keys.TryGetValue(block, out var k) ? k : keys[block] = TraceFile.Key(block);
        using var store = new KvArenaStore(StoreFor(capacityBlocks, ValueBytes, policy));
        long blocks = 0, hits = 0, input = 0, saved = 0;
        foreach (var request in requests)
        {
            var chain = request.Blocks;
            int k = 0;
            while (k < chain.Length && store.Exists(KeyOf(chain[k]))) k++;
            for (int i = 0; i < k; i++)
            {
                if (store.TryLease(KeyOf(chain[i]), null, out var lease) == WireStatus.Ok) store.Release(lease!);
            }
            for (int i = k; i < chain.Length; i++)
            {
                if (store.TryReserve(KeyOf(chain[i]), ValueBytes, out var reservation) != WireStatus.Ok) continue;
                store.Commit(reservation!, 0, i > 0 ? KeyOf(chain[i - 1]) : default);
            }
            blocks += chain.Length;
            hits += k;
            input += request.InputTokens;
            saved += TraceFile.TokensSaved(request, k);
        }
        return new TraceHits(requests.Count, blocks, hits, input, saved, store.GetStats().Evictions);
    }

    /// <summary>
    /// The offline bound (Belady): on a miss with the cache full, evict the resident block whose next use is farthest
    /// in the future. Same request model as <see cref="Run"/>; it needs the whole future, so no node can run it.
    /// </summary>
    public static TraceHits Belady(IReadOnlyList<TraceRequest> requests, long capacityBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBlocks, 1);
        int total = requests.Sum(r => r.Blocks.Length);
        var nextUse = new long[total];
        var last = new Dictionary<long, long>();
        int pos = total;
        for (int r = requests.Count - 1; r >= 0; r--)
        {
            var chain = requests[r].Blocks;
            for (int i = chain.Length - 1; i >= 0; i--)
            {
                pos--;
                nextUse[pos] = last.TryGetValue(chain[i], out long n) ? n : long.MaxValue;
                last[chain[i]] = pos;
            }
        }

        var resident = new Dictionary<long, long>(); // block → its next use
        var farthest = new PriorityQueue<long, long>(Comparer<long>.Create((a, b) => b.CompareTo(a)));
        long blocks = 0, hits = 0, input = 0, saved = 0, evictions = 0;
        pos = 0;
        foreach (var request in requests)
        {
            var chain = request.Blocks;
            int k = 0;
            while (k < chain.Length && resident.ContainsKey(chain[k])) k++;
            foreach (long block in chain)
            {
                long next = nextUse[pos++];
                if (!resident.ContainsKey(block) && resident.Count >= capacityBlocks)
                {
                    while (farthest.TryDequeue(out long victim, out long when))
                    {
                        if (resident.TryGetValue(victim, out long current) && current == when)
                        {
                            resident.Remove(victim);
                            evictions++;
                            break;
                        }
                    }
                }
                resident[block] = next;
                farthest.Enqueue(block, next);
            }
            blocks += chain.Length;
            hits += k;
            input += request.InputTokens;
            saved += TraceFile.TokensSaved(request, k);
        }
        return new TraceHits(requests.Count, blocks, hits, input, saved, evictions);
    }
}
