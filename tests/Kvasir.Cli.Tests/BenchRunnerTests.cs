using Kvasir.Cli.Bench;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cli.Tests;

/// <summary>The load generator against a real node on 127.0.0.1:0, reached over TCP.</summary>
public sealed class BenchRunnerTests : IAsyncLifetime
{
    private TestNode _node = null!;
    private KvStore _store = null!;

    public async Task InitializeAsync()
    {
        _node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 128L << 20 } });
        _store = await KvStore.ConnectAsync(new KvStoreOptions { Server = _node.Address });
    }

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        await _node.DisposeAsync();   // fails the test on leaked leases or reservations
    }

    private BenchRunner Runner(BenchSettings s) => new("kvasir", () => Task.FromResult<IBenchTarget>(new KvasirTarget(_store)), s);

    private static BenchSettings Shape(string op, int size = 8192, int keys = 32, long requests = 40) => new()
    {
        Op = op,
        ValueSize = size,
        Batch = 4,
        Inflight = 2,
        Keys = keys,
        Requests = requests,
        Warmup = TimeSpan.Zero,
        Duration = TimeSpan.FromSeconds(30),
    };

    [Theory]
    [InlineData(0)]        // inside the first 64 bytes
    [InlineData(4096)]     // the middle word
    [InlineData(8191)]     // the last byte of the last word
    public async Task A_corrupted_stored_value_is_counted_as_a_verify_failure_and_not_as_throughput(int corruptAt)
    {
        var s = Shape("get") with { Prefill = false };
        var keys = BenchRunner.KeysFor(s);
        var values = Enumerable.Range(0, s.Keys).Select(i =>
        {
            var v = ValuePattern.Create(i, s.ValueSize);
            v[corruptAt] ^= 0x01;
            return (ReadOnlyMemory<byte>)v;
        }).ToArray();
        Assert.All(await _store.PutAsync(keys, values), st => Assert.Equal(KvStatus.Ok, st));

        var r = await Runner(s).RunAsync();
        Assert.Equal(40, r.Requests);
        Assert.Equal(r.Values, r.VerifyFailures);
        Assert.Equal(0, r.Errors);
        Assert.Equal(0, r.Misses);
        Assert.Equal(0, r.Gbps);
    }

    [Fact]
    public async Task Full_verification_catches_one_flipped_byte_anywhere_and_only_in_the_corrupted_key()
    {
        var s = Shape("get", keys: 16, requests: 16) with { Prefill = false, Inflight = 1, Verify = VerifyMode.Full };
        var keys = BenchRunner.KeysFor(s);
        var values = Enumerable.Range(0, s.Keys).Select(i => ValuePattern.Create(i, s.ValueSize)).ToArray();
        values[3][100] ^= 0xFF;
        await _store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray());
        var r = await Runner(s).RunAsync();
        // 16 requests × 4 keys walk the 16 keys four times: key 3 is read 4 times.
        Assert.Equal(64, r.Values);
        Assert.Equal(4, r.VerifyFailures);
    }

    [Fact]
    public async Task The_sampled_check_catches_a_value_served_under_the_wrong_key()
    {
        var s = Shape("get", keys: 16, requests: 16) with { Prefill = false, Inflight = 1 };
        var keys = BenchRunner.KeysFor(s);
        // Keys 2 and 3 swapped: each holds a whole, well-formed value, just not its own.
        var values = Enumerable.Range(0, s.Keys).Select(i => (ReadOnlyMemory<byte>)ValuePattern.Create(i switch { 2 => 3, 3 => 2, _ => i }, s.ValueSize)).ToArray();
        await _store.PutAsync(keys, values);
        var r = await Runner(s).RunAsync();
        Assert.Equal(8, r.VerifyFailures);
    }

    [Fact]
    public async Task The_sampled_check_catches_a_torn_page_in_the_middle_of_a_value()
    {
        var s = Shape("get", size: 64 * 1024, keys: 4, requests: 4) with { Prefill = false, Inflight = 1 };
        var keys = BenchRunner.KeysFor(s);
        var values = Enumerable.Range(0, s.Keys).Select(i => ValuePattern.Create(i, s.ValueSize)).ToArray();
        Array.Clear(values[1], 5 * 4096, 4096);   // one 4 KiB page of key 1 never arrived
        await _store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray());
        var r = await Runner(s).RunAsync();
        Assert.Equal(4, r.VerifyFailures);
    }

    [Fact]
    public async Task Gets_without_a_prefill_on_an_empty_node_are_misses_not_errors()
    {
        var r = await Runner(Shape("get") with { Prefill = false }).RunAsync();
        Assert.Equal(r.Values, r.Misses);
        Assert.Equal(0, r.Errors);
        Assert.Equal(0, r.VerifyFailures);
    }

    [Fact]
    public async Task A_get_run_prefills_its_key_space_and_verifies_every_value()
    {
        var r = await Runner(Shape("get")).RunAsync();
        Assert.Equal(40, r.Requests);
        Assert.Equal(160, r.Values);
        Assert.Equal(0, r.Misses + r.Errors + r.VerifyFailures);
        Assert.Equal(32, (await _store.StatsAsync())["keys"]);
    }

    [Fact]
    public async Task A_mixed_run_issues_both_puts_and_gets()
    {
        var r = await Runner(Shape("mixed", requests: 200) with { ReadRatio = 0.5 }).RunAsync();
        var stats = await _store.StatsAsync();
        Assert.True(stats["requests_put"] > 20, $"puts: {stats["requests_put"]}");
        Assert.True(stats["requests_get"] > 50, $"gets: {stats["requests_get"]}");
        Assert.Equal(0, r.Errors + r.VerifyFailures + r.Misses);
    }

    [Fact]
    public async Task An_exists_run_after_prefill_finds_every_key()
    {
        var r = await Runner(Shape("exists")).RunAsync();
        Assert.Equal(0, r.Misses + r.Errors);
        Assert.True((await _store.StatsAsync())["requests_exists"] >= 40);
    }

    [Fact]
    public async Task The_memcpy_floor_target_round_trips_and_verifies_the_same_shapes()
    {
        var s = Shape("get");
        var table = new MemcpyTarget(s.Keys, s.ValueSize);
        var r = await new BenchRunner("memcpy", () => Task.FromResult<IBenchTarget>(table), s).RunAsync();
        Assert.Equal(0, r.Misses + r.Errors + r.VerifyFailures);
        Assert.True(r.Gbps > 0);
    }

    [Fact]
    public async Task A_latency_percentile_row_is_ordered_and_the_json_has_the_documented_fields()
    {
        var r = await Runner(Shape("put", requests: 100)).RunAsync();
        Assert.True(r.P50Us > 0 && r.P50Us <= r.P90Us && r.P90Us <= r.P99Us && r.P99Us <= r.P999Us);
        using var json = System.Text.Json.JsonDocument.Parse(r.ToJson());
        foreach (var field in new[] { "gbps", "ops_per_s", "p50_us", "p99_us", "errors", "misses", "verify_failures", "client_cpu_s_per_gb", "client_switches_per_request" })
            Assert.True(json.RootElement.TryGetProperty(field, out _), $"missing {field}");
        // The load generator's own CPU over the measured time: it moved bytes, so it spent some.
        Assert.True(json.RootElement.GetProperty("client_cpu_s_per_gb").GetDouble() > 0);
    }
}
