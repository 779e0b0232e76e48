using System.Collections.Concurrent;
using System.Text;
using Kvasir.Protocol;

namespace Kvasir.Client.Tests;

/// <summary>
/// <see cref="KvStore.Open"/> over an <see cref="IInProcessNode"/> that is not a cache node: the seam's
/// contract as the store uses it, with every call completing asynchronously (as a tiered store's will).
/// </summary>
public sealed class InProcessSeamTests
{
    private static ReadOnlyMemory<byte> Key(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public async Task A_store_over_an_asynchronous_node_answers_every_operation_per_key()
    {
        var node = new DictionaryNode();
        await using var store = KvStore.Open(node);
        Assert.Equal(KvTransportKind.InProcess, store.Transport);
        Assert.Equal("fake", store.NodeId);

        var keys = KvStore.Keys("a", "b", "c");
        Assert.Equal(new[] { KvStatus.Ok, KvStatus.Ok, KvStatus.Ok },
            await store.PutGatherAsync(keys, [["he"u8.ToArray(), "llo"u8.ToArray()], ["x"u8.ToArray()], []], new PutOptions { Chain = true, ChainParent = Key("root") }));
        Assert.Equal(["root", "a", "b"], keys.Select(k => node.Parents[Encoding.UTF8.GetString(k.Span)]));

        var one = new byte[3];
        var two = new byte[8];
        var results = await store.GetScatterAsync(KvStore.Keys("a", "missing"), [[one, two], [new byte[1]]]);
        Assert.Equal(new KvGetResult(KvStatus.Ok, 5), results[0]);
        Assert.Equal("hello", Encoding.UTF8.GetString(one) + Encoding.UTF8.GetString(two, 0, 2));
        Assert.Equal(KvStatus.NotFound, results[1].Status);
        Assert.Equal(KvStatus.BufferTooSmall, (await store.GetAsync(KvStore.Keys("a"), [new byte[4]]))[0].Status);
        Assert.Equal("hello"u8.ToArray(), await store.GetAsync(Key("a")));
        Assert.Null(await store.GetAsync(Key("missing")));

        Assert.Equal(new[] { 1, 0 }, await store.ExistsAsync(KvStore.Keys("b", "missing")));
        Assert.Equal(new[] { KvStatus.Ok, KvStatus.NotFound }, await store.PinAsync(KvStore.Keys("b", "missing")));
        Assert.Equal(new[] { KvStatus.Ok }, await store.UnpinAsync(KvStore.Keys("b")));
        Assert.Equal(new[] { KvStatus.Ok, KvStatus.NotFound }, await store.RemoveAsync(KvStore.Keys("b", "b")));
        Assert.Equal(42, (await store.StatsAsync())["answer"]);
    }

    [Fact]
    public async Task Keys_and_values_the_node_refuses_by_its_limits_never_reach_it()
    {
        var node = new DictionaryNode();
        await using var store = KvStore.Open(node);

        var tooLong = new byte[ProtocolLimits.MaxKeyBytes + 1];
        var statuses = await store.PutAsync([Key("ok"), ReadOnlyMemory<byte>.Empty, tooLong, Key("big")], [new byte[1], new byte[1], new byte[1], new byte[DictionaryNode.MaxValue + 1]]);

        Assert.Equal(new[] { KvStatus.Ok, KvStatus.InvalidKey, KvStatus.InvalidKey, KvStatus.ValueTooLarge }, statuses);
        Assert.Equal(["ok"], node.Values.Keys);
    }

    [Fact]
    public async Task A_batch_counts_as_one_request_split_by_the_node_batch_limit()
    {
        var node = new DictionaryNode();
        await using var store = KvStore.Open(node);

        var keys = Enumerable.Range(0, DictionaryNode.BatchKeys * 2 + 1).Select(i => Key($"k{i}")).ToArray();
        await store.ExistsAsync(keys);

        Assert.Equal([(Opcode.Exists, DictionaryNode.BatchKeys), (Opcode.Exists, DictionaryNode.BatchKeys), (Opcode.Exists, 1)], node.Requests.OrderByDescending(r => r.Keys));
    }

    [Fact]
    public async Task The_store_disposes_the_node_it_was_handed_exactly_once()
    {
        var node = new DictionaryNode();
        var store = KvStore.Open(node);

        await store.DisposeAsync();
        await store.DisposeAsync();

        Assert.Equal(1, node.Disposals);
    }

    /// <summary>A node made of dictionaries whose every call yields before answering.</summary>
    private sealed class DictionaryNode : IInProcessNode
    {
        public const int MaxValue = 1024, BatchKeys = 4;

        public ConcurrentDictionary<string, byte[]> Values { get; } = new();
        public ConcurrentDictionary<string, string> Parents { get; } = new();
        public ConcurrentBag<(Opcode Op, int Keys)> Requests { get; } = [];
        public int Disposals;
        private readonly ConcurrentDictionary<string, int> _pins = new();

        public InProcessNodeInfo Info { get; } = new() { NodeId = "fake", Address = "127.0.0.1:1", Capacity = 1 << 20, MaxValueBytes = MaxValue, MaxBatchKeys = BatchKeys };

        private static string Name(ReadOnlyMemory<byte> key) => Encoding.UTF8.GetString(key.Span);

        public async ValueTask<KvStatus> PutAsync(ReadOnlyMemory<byte> key, IReadOnlyList<ReadOnlyMemory<byte>> value, ReadOnlyMemory<byte> chainParent, CancellationToken ct)
        {
            var bytes = value.SelectMany(p => p.ToArray()).ToArray();   // copied before yielding: the caller's memory is ours only until we return
            await Task.Yield();
            Values[Name(key)] = bytes;
            if (!chainParent.IsEmpty) Parents[Name(key)] = Name(chainParent);
            return KvStatus.Ok;
        }

        public async ValueTask<KvGetResult> GetAsync(ReadOnlyMemory<byte> key, IReadOnlyList<Memory<byte>> destination, CancellationToken ct)
        {
            await Task.Yield();
            if (!Values.TryGetValue(Name(key), out var value)) return new KvGetResult(KvStatus.NotFound, 0);
            if (value.Length > destination.Sum(d => d.Length)) return new KvGetResult(KvStatus.BufferTooSmall, value.Length);
            int offset = 0;
            foreach (var piece in destination)
            {
                int n = Math.Min(piece.Length, value.Length - offset);
                value.AsSpan(offset, n).CopyTo(piece.Span);
                offset += n;
            }
            return new KvGetResult(KvStatus.Ok, value.Length);
        }

        public async ValueTask<byte[]?> GetAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
        {
            await Task.Yield();
            return Values.TryGetValue(Name(key), out var value) ? value.ToArray() : null;
        }

        public async ValueTask<KvStatus> ExistsAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
        {
            await Task.Yield();
            return Values.ContainsKey(Name(key)) ? KvStatus.Ok : KvStatus.NotFound;
        }

        public async ValueTask<KvStatus> RemoveAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
        {
            await Task.Yield();
            return Values.TryRemove(Name(key), out _) ? KvStatus.Ok : KvStatus.NotFound;
        }

        public async ValueTask<KvStatus> PinAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
        {
            await Task.Yield();
            if (!Values.ContainsKey(Name(key))) return KvStatus.NotFound;
            _pins.AddOrUpdate(Name(key), 1, (_, n) => n + 1);
            return KvStatus.Ok;
        }

        public async ValueTask<KvStatus> UnpinAsync(ReadOnlyMemory<byte> key, CancellationToken ct)
        {
            await Task.Yield();
            return _pins.TryGetValue(Name(key), out var n) && n > 0 && _pins.TryUpdate(Name(key), n - 1, n) ? KvStatus.Ok : KvStatus.NotFound;
        }

        public void CountRequest(Opcode op, int keys) => Requests.Add((op, keys));

        public ValueTask<IReadOnlyList<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct)
            => new([new KeyValuePair<string, long>("answer", 42)]);

        public ValueTask DisposeAsync()
        {
            Interlocked.Increment(ref Disposals);
            return default;
        }
    }
}
