using Kvasir.Cli.Bench;
using Kvasir.Cli.Bench.Trace;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cli.Tests;

/// <summary>The trace simulator and the trace replay against a real node on 127.0.0.1:0, over TCP.</summary>
public sealed class TraceBenchTests
{
    private static readonly string Slice = Path.Combine(AppContext.BaseDirectory, "TraceData", "mooncake-conversation-head400.jsonl");

    /// <summary>Four requests over blocks 1-4 (3, 3, 2 and 3 blocks of 512 tokens; the last block of each is partial).</summary>
    private static List<TraceRequest> TinyTrace() =>
    [
        new(0, 1200, 10, [1, 2, 3]),
        new(10, 1300, 10, [1, 2, 4]),
        new(20, 700, 10, [1, 3]),
        new(30, 1100, 10, [1, 2, 4]),
    ];

    [Fact]
    public void Lru_on_the_tiny_trace_hits_what_was_worked_out_by_hand()
    {
        // Capacity 3, LRU order oldest first. r1 stores 1,2,3. r2 hits 1,2 (order 3,1,2) and stores 4 evicting 3.
        // r3 hits 1 (3 is gone; order 2,4,1) and stores 3 evicting 2. r4 hits 1 (2 is gone; order 4,3,1), stores 2
        // evicting 4 and 4 evicting 3. Hits: 0 + 2 + 1 + 1 = 4 of 11 blocks; tokens: 1024 + 512 + 512.
        var hits = TraceSimulator.Run(TinyTrace(), EvictionPolicyKind.Lru, 3);
        Assert.Equal(11, hits.Blocks);
        Assert.Equal(4, hits.HitBlocks);
        Assert.Equal(2048, hits.TokensSaved);
        Assert.Equal(4300, hits.InputTokens);
        Assert.Equal(4, hits.Evictions);
    }

    [Fact]
    public void Belady_on_the_tiny_trace_hits_what_was_worked_out_by_hand()
    {
        // After r2 the next uses are 1 → r3, 3 → r3, 2 → r4; storing 4 evicts 2 (farthest). r3 hits 1,3; r4 hits 1 only.
        var hits = TraceSimulator.Belady(TinyTrace(), 3);
        Assert.Equal(5, hits.HitBlocks);
        Assert.Equal(1024 + 700 + 512, hits.TokensSaved);
    }

    [Fact]
    public void Simulated_lru_equals_an_independent_tiny_lru_on_a_slice_of_the_production_trace()
    {
        var requests = TraceFile.Read(Slice);
        Assert.Equal(400, requests.Count);
        foreach (long capacity in new long[] { 1, 7, 64, 300, 2000 })
        {
            Assert.Equal(TinyLru(requests, capacity), TraceSimulator.Run(requests, EvictionPolicyKind.Lru, capacity).HitBlocks);
        }
    }

    [Fact]
    public void Every_policy_stays_between_nothing_and_the_belady_bound_on_the_slice()
    {
        var requests = TraceFile.Read(Slice);
        foreach (long capacity in new long[] { 50, 400 })
        {
            long bound = TraceSimulator.Belady(requests, capacity).HitBlocks;
            long unlimited = TraceSimulator.Run(requests, EvictionPolicyKind.Lru, 1_000_000).HitBlocks;
            Assert.True(bound <= unlimited, $"Belady {bound} above an unlimited cache {unlimited}");
            foreach (var kind in Enum.GetValues<EvictionPolicyKind>())
            {
                long hits = TraceSimulator.Run(requests, kind, capacity).HitBlocks;
                Assert.True(hits > 0 && hits <= bound, $"{kind} at {capacity} blocks: {hits} hits, Belady {bound}");
            }
        }
    }

    [Fact]
    public async Task Replay_against_a_node_of_three_blocks_gives_the_hand_computed_hits()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = TraceSimulator.StoreFor(3, 4096, EvictionPolicyKind.Lru) });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address });
        var result = await new TraceReplay(TinyTrace(), 4096, speed: 0).RunAsync(new KvasirTarget(store));
        Assert.Equal(0, result.Errors);
        Assert.Equal(4, result.Hits.HitBlocks);
        Assert.Equal(2048, result.Hits.TokensSaved);
        Assert.Equal(4L * 4096, result.BytesRead);
        Assert.Equal(7L * 4096, result.BytesWritten);
        Assert.Equal(4, (await store.StatsAsync())["evictions"]);
    }

    [Theory]
    [InlineData(EvictionPolicyKind.Lru)]
    [InlineData(EvictionPolicyKind.ChainLfu)]
    [InlineData(EvictionPolicyKind.ChainSketch)]
    [InlineData(EvictionPolicyKind.S3Fifo)]
    public async Task Replay_of_the_slice_against_a_node_agrees_with_the_simulator_within_one_point(EvictionPolicyKind policy)
    {
        var requests = TraceFile.Read(Slice);
        const long capacity = 300;
        var simulated = TraceSimulator.Run(requests, policy, capacity);
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = TraceSimulator.StoreFor(capacity, 1024, policy) });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address });
        var replayed = await new TraceReplay(requests, 1024, speed: 0).RunAsync(new KvasirTarget(store));
        Assert.Equal(0, replayed.Errors);
        Assert.Equal(simulated.Blocks, replayed.Hits.Blocks);
        Assert.True(simulated.HitBlocks > 0);
        Assert.True(Math.Abs(simulated.HitRate - replayed.Hits.HitRate) <= 0.01,
            $"{policy}: simulator {simulated.HitRate:P2}, node {replayed.Hits.HitRate:P2}");
    }

    [Fact]
    public void Capacities_parse_as_shares_of_the_unique_blocks_or_block_counts_and_bad_ones_name_the_option()
    {
        Assert.Equal([("5%", 50L), ("120", 120L), ("0.1%", 1L)], TraceBenchCommand.ParseCapacities("5%, 120,0.1%", 1000));
        foreach (var bad in new[] { "0%", "101%", "-3", "x", "" })
        {
            var ex = Assert.Throws<UsageException>(() => TraceBenchCommand.ParseCapacities(bad, 1000));
            Assert.StartsWith("--capacity", ex.Message);
        }
    }

    [Fact]
    public void A_malformed_trace_line_is_a_format_error_naming_the_file_and_line()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}\n{\"timestamp\": 1, \"hash_ids\": \"x\"}\n");
            var ex = Assert.Throws<FormatException>(() => TraceFile.Read(path));
            Assert.Contains($"{path}:2:", ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// The request model written out independently: hit the longest present prefix and make those blocks most recent
    /// in order; then store every later block in order, each first making room (an overwrite too needs a free block
    /// before the old one is freed) by dropping the least recent, then becoming most recent.
    /// </summary>
    private static long TinyLru(IReadOnlyList<TraceRequest> requests, long capacity)
    {
        var order = new LinkedList<long>();
        var nodes = new Dictionary<long, LinkedListNode<long>>();
        void MakeRecent(long block)
        {
            if (nodes.Remove(block, out var old)) order.Remove(old);
            nodes[block] = order.AddLast(block);
        }

        long hits = 0;
        foreach (var request in requests)
        {
            int k = 0;
            while (k < request.Blocks.Length && nodes.ContainsKey(request.Blocks[k])) k++;
            hits += k;
            for (int i = 0; i < k; i++) MakeRecent(request.Blocks[i]);
            for (int i = k; i < request.Blocks.Length; i++)
            {
                if (nodes.Count >= capacity)
                {
                    nodes.Remove(order.First!.Value);
                    order.RemoveFirst();
                }
                MakeRecent(request.Blocks[i]);
            }
        }
        return hits;
    }
}
