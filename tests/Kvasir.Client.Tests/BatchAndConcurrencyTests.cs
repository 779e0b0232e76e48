using System.Buffers.Binary;
using Kvasir.Client;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

public sealed class BatchAndConcurrencyTests
{
    public static TheoryData<string, int> BatchSizes()
    {
        var data = new TheoryData<string, int>();
        foreach (var t in TransportNames)
            foreach (var n in new[] { 1, 128, 1024 })
                data.Add(t, n);
        return data;
    }

    [Theory]
    [MemberData(nameof(BatchSizes))]
    public async Task Batch_with_mixed_hits_and_misses_returns_the_right_status_for_every_key(string transport, int n)
    {
        await using var h = await StartAsync(transport);
        // Every third key is stored; the batch asks for all of them, in an interleaved order.
        var stored = Enumerable.Range(0, n).Where(i => i % 3 == 0).ToArray();
        await h.Store.PutAsync(stored.Select(i => Key($"b{i}")).ToArray(), stored.Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, 100 + i % 700)).ToArray());
        var order = Enumerable.Range(0, n).Reverse().ToArray();
        var dests = order.Select(_ => (Memory<byte>)new byte[800]).ToArray();
        var results = await h.Store.GetAsync(order.Select(i => Key($"b{i}")).ToArray(), dests);
        var exists = await h.Store.ExistsAsync(order.Select(i => Key($"b{i}")).ToArray());
        for (int j = 0; j < n; j++)
        {
            int i = order[j];
            if (i % 3 == 0)
            {
                Assert.Equal(new KvGetResult(KvStatus.Ok, 100 + i % 700), results[j]);
                Assert.True(dests[j].Span[..(100 + i % 700)].SequenceEqual(TestValues.Value(i, 100 + i % 700)), $"key b{i} has wrong bytes");
                Assert.Equal(1, exists[j]);
            }
            else
            {
                Assert.Equal(KvStatus.NotFound, results[j].Status);
                Assert.Equal(0, exists[j]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task A_batch_larger_than_the_node_limit_is_split_and_answered_in_caller_order(string transport)
    {
        await using var h = await StartAsync(transport);
        const int n = 10_000; // above the default 8192 keys per request
        var keys = Enumerable.Range(0, n).Select(i => Key($"split{i}")).ToArray();
        var values = Enumerable.Range(0, n).Select(i => (ReadOnlyMemory<byte>)BitConverter.GetBytes(i)).ToArray();
        Assert.All(await h.Store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        var dests = Enumerable.Range(0, n).Select(_ => (Memory<byte>)new byte[4]).ToArray();
        var results = await h.Store.GetAsync(keys, dests);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(KvStatus.Ok, results[i].Status);
            Assert.Equal(i, BitConverter.ToInt32(dests[i].Span));
        }
    }

    /// <summary>
    /// A value that describes itself: key id, version and length up front, then bytes derived from
    /// all three, so any reader can tell a wrong, torn or mixed-up value from a right one.
    /// </summary>
    private static byte[] SelfDescribing(int keyId, int version, int length)
    {
        var bytes = new byte[length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, keyId);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), length);
        uint x = (uint)(keyId * 7919 + version * 104729 + length);
        for (int i = 12; i < length; i++) { x = x * 1664525 + 1013904223; bytes[i] = (byte)(x >> 24); }
        return bytes;
    }

    private static bool IsIntact(ReadOnlySpan<byte> value, int keyId)
    {
        if (value.Length < 12) return false;
        int id = BinaryPrimitives.ReadInt32LittleEndian(value);
        int version = BinaryPrimitives.ReadInt32LittleEndian(value[4..]);
        int length = BinaryPrimitives.ReadInt32LittleEndian(value[8..]);
        return id == keyId && length == value.Length && value.SequenceEqual(SelfDescribing(keyId, version, length));
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Eight_concurrent_clients_with_pipelined_batches_never_see_a_wrong_byte(string transport)
    {
        await using var h = await StartAsync(transport);
        const int clients = 8, keysPerClient = 64, rounds = 60, batch = 16, inflight = 4;
        long operations = 0, wrong = 0, hits = 0;
        var stores = new List<KvStore>();
        for (int c = 0; c < clients; c++) stores.Add(await h.NewClientAsync(connections: 2));
        var tasks = Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            var store = stores[c];
            var rng = new Random(c);
            // Each client writes its own keys and reads everyone's; several batches in flight at once.
            var lanes = Enumerable.Range(0, inflight).Select(lane => Task.Run(async () =>
            {
                var lrng = new Random(c * 100 + lane);
                for (int r = 0; r < rounds; r++)
                {
                    var ids = Enumerable.Range(0, batch).Select(_ => c * keysPerClient + lrng.Next(keysPerClient)).Distinct().ToArray();
                    var values = ids.Select(id => (ReadOnlyMemory<byte>)SelfDescribing(id, r * 10 + lane, 12 + lrng.Next(20_000))).ToArray();
                    var put = await store.PutAsync(ids.Select(id => Key($"c{id}")).ToArray(), values);
                    Assert.All(put, s => Assert.Equal(KvStatus.Ok, s));
                    var readIds = Enumerable.Range(0, batch).Select(_ => lrng.Next(clients * keysPerClient)).ToArray();
                    var dests = readIds.Select(_ => (Memory<byte>)new byte[20_100]).ToArray();
                    var got = await store.GetAsync(readIds.Select(id => Key($"c{id}")).ToArray(), dests);
                    for (int j = 0; j < readIds.Length; j++)
                    {
                        if (got[j].Status == KvStatus.NotFound) continue;
                        Assert.Equal(KvStatus.Ok, got[j].Status);
                        Interlocked.Increment(ref hits);
                        if (!IsIntact(dests[j].Span[..(int)got[j].Length], readIds[j])) Interlocked.Increment(ref wrong);
                    }
                    Interlocked.Add(ref operations, ids.Length + readIds.Length);
                }
            })).ToArray();
            await Task.WhenAll(lanes);
        })).ToArray();
        await Task.WhenAll(tasks);
        Assert.True(operations >= 30_000, $"only {operations} operations");
        Assert.True(hits > 10_000, $"only {hits} hits: the test did not exercise reads");
        Assert.Equal(0, wrong);
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Filling_to_three_times_capacity_evicts_stays_within_capacity_and_never_returns_a_wrong_value(string transport)
    {
        const long capacity = 32L << 20;
        // LRU by name: the test checks that the oldest write is gone, which a frequency policy (the default) need not do.
        await using var h = await StartAsync(transport, new StoreOptions { Capacity = capacity, MaxValueBytes = 4 << 20, Eviction = EvictionPolicyKind.Lru });
        var reader = await h.NewClientAsync();
        const int n = 400; // 400 × ~240 KiB ≈ 3 × capacity
        int Size(int i) => 64 * 1024 + i * 977 % (350 * 1024);
        long wrong = 0, partial = 0, reads = 0, written = 0;
        using var done = new CancellationTokenSource();
        // A reader keeps fetching keys that are being evicted under it: each answer is whole or a miss.
        var reading = Task.Run(async () =>
        {
            var rng = new Random(5);
            var dests = Enumerable.Range(0, 8).Select(_ => (Memory<byte>)new byte[512 * 1024]).ToArray();
            while (!done.IsCancellationRequested)
            {
                int top = (int)Interlocked.Read(ref written);
                if (top == 0) { await Task.Yield(); continue; }
                var ids = Enumerable.Range(0, 8).Select(_ => rng.Next(top)).ToArray();
                var got = await reader.GetAsync(ids.Select(i => Key($"e{i}")).ToArray(), dests);
                for (int j = 0; j < ids.Length; j++)
                {
                    if (got[j].Status != KvStatus.Ok) continue;
                    Interlocked.Increment(ref reads);
                    if (got[j].Length != Size(ids[j])) Interlocked.Increment(ref partial);
                    else if (!dests[j].Span[..(int)got[j].Length].SequenceEqual(TestValues.Value(ids[j], Size(ids[j])))) Interlocked.Increment(ref wrong);
                }
            }
        });
        for (int i = 0; i < n; i += 4)
        {
            var ids = Enumerable.Range(i, 4).ToArray();
            var statuses = await h.Store.PutAsync(ids.Select(k => Key($"e{k}")).ToArray(), ids.Select(k => (ReadOnlyMemory<byte>)TestValues.Value(k, Size(k))).ToArray());
            Assert.All(statuses, s => Assert.Equal(KvStatus.Ok, s));
            Interlocked.Exchange(ref written, i + 4);
            var stats = h.Node.Store.GetStats();
            Assert.True(stats.AllocatedBytes <= capacity, $"allocated {stats.AllocatedBytes} > capacity {capacity}");
        }
        done.Cancel();
        await reading;
        var final = await h.Store.StatsAsync();
        Assert.True(final["evictions"] > 0, "nothing was evicted");
        Assert.True(final["allocated_bytes"] <= capacity);
        // LRU: the most recent writes survive, the oldest are gone.
        Assert.Equal(new[] { 0, 1 }, await h.Store.ExistsAsync([Key("e0"), Key($"e{n - 1}")]));
        var all = Enumerable.Range(0, n).ToArray();
        var dests = all.Select(_ => (Memory<byte>)new byte[512 * 1024]).ToArray();
        var results = await h.Store.GetAsync(all.Select(i => Key($"e{i}")).ToArray(), dests);
        for (int i = 0; i < n; i++)
            if (results[i].Status == KvStatus.Ok)
                Assert.True(dests[i].Span[..(int)results[i].Length].SequenceEqual(TestValues.Value(i, Size(i))), $"e{i} has wrong bytes after eviction");
        Assert.True(reads > 0, "the concurrent reader never hit");
        Assert.Equal(0, partial);
        Assert.Equal(0, wrong);
    }

    [Theory]
    [MemberData(nameof(Transports), MemberType = typeof(NodeHarness))]
    public async Task Pinned_values_survive_a_fill_to_three_times_capacity_and_unpinned_ones_can_go(string transport)
    {
        const long capacity = 16L << 20;
        await using var h = await StartAsync(transport, new StoreOptions { Capacity = capacity, MaxValueBytes = 1 << 20 });
        await h.Store.PutAsync([Key("pinned"), Key("loose")], [TestValues.Value(1, 1 << 20), TestValues.Value(2, 1 << 20)]);
        Assert.Equal(new[] { KvStatus.Ok, KvStatus.NotFound }, await h.Store.PinAsync([Key("pinned"), Key("absent")]));
        for (int i = 0; i < 48; i++) await h.Store.PutAsync([Key($"f{i}")], [TestValues.Value(i + 10, 1 << 20)]);
        Assert.Equal(new[] { 1, 0 }, await h.Store.ExistsAsync([Key("pinned"), Key("loose")]));
        Assert.Equal(TestValues.Value(1, 1 << 20), await h.Store.GetAsync(Key("pinned")));
        Assert.Equal(new[] { KvStatus.Ok }, await h.Store.UnpinAsync([Key("pinned")]));
        for (int i = 0; i < 48; i++) await h.Store.PutAsync([Key($"g{i}")], [TestValues.Value(i + 100, 1 << 20)]);
        Assert.Equal(new[] { 0 }, await h.Store.ExistsAsync([Key("pinned")]));
    }
}
