using Kvasir.Cli;
using Kvasir.Cli.Bench;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cli.Tests;

public class BenchCommandTests
{
    [Fact]
    public void Percentile_of_no_samples_is_zero()
        => Assert.Equal(0, LatencyStats.Percentile([], 0.5));

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    [InlineData(0.999)]
    [InlineData(1.0)]
    public void Percentile_of_a_single_sample_is_that_sample(double q)
        => Assert.Equal(42, LatencyStats.Percentile([42], q));

    [Theory]
    [InlineData(0.50, 50)]
    [InlineData(0.90, 90)]
    [InlineData(0.99, 99)]
    [InlineData(1.00, 100)]
    [InlineData(0.001, 1)]
    [InlineData(0.0, 1)]
    [InlineData(0.505, 51)]
    public void Percentile_uses_nearest_rank_on_1_to_100(double q, long expected)
    {
        long[] samples = Enumerable.Range(1, 100).Select(i => (long)i).ToArray();
        Assert.Equal(expected, LatencyStats.Percentile(samples, q));
    }

    [Fact]
    public void Percentile_999_of_1000_samples_is_the_999th()
    {
        long[] samples = Enumerable.Range(1, 1000).Select(i => (long)i * 10).ToArray();
        Assert.Equal(9990, LatencyStats.Percentile(samples, 0.999));
        Assert.Equal(5000, LatencyStats.Percentile(samples, 0.5));
    }

    [Fact]
    public void Percentile_of_two_samples_splits_at_the_half()
    {
        Assert.Equal(1, LatencyStats.Percentile([1, 2], 0.5));
        Assert.Equal(2, LatencyStats.Percentile([1, 2], 0.51));
    }

    [Theory]
    [InlineData(0, 1 << 20)]
    [InlineData(15, 4096)]
    [InlineData(3, 1000)]
    [InlineData(7, 130)]
    [InlineData(1, 64)]
    [InlineData(2, 13)]
    [InlineData(5, 0)]
    public void Check_passes_a_correct_pattern(int p, int size)
        => Assert.True(ValuePattern.CheckSampled(ValuePattern.Create(p, size), size, p, size));

    [Fact]
    public void Patterns_of_different_keys_differ_and_are_deterministic()
    {
        Assert.Equal(ValuePattern.Create(4, 1000), ValuePattern.Create(4, 1000));
        Assert.NotEqual(ValuePattern.Create(4, 1000), ValuePattern.Create(5, 1000));
        Assert.False(ValuePattern.CheckSampled(ValuePattern.Create(4, 1000), 1000, 5, 1000));
    }

    public static TheoryData<int> FlipOffsets()
    {
        const int size = 1 << 16;
        var data = new TheoryData<int>();
        foreach (int i in new[] { 0, 7, 8, 31, 63 }) data.Add(i);                 // first 64 bytes
        foreach (int i in new[] { 0, 3, 7 }) data.Add((size / 2 & ~7) + i);          // middle word
        foreach (int i in new[] { 0, 4, 7 }) data.Add((size & ~7) - 8 + i);          // last word
        return data;
    }

    [Theory]
    [MemberData(nameof(FlipOffsets))]
    public void Check_fails_a_value_with_one_flipped_byte_in_a_checked_word(int offset)
    {
        const int size = 1 << 16, p = 9;
        var value = ValuePattern.Create(p, size);
        value[offset] ^= 0x01;
        Assert.False(ValuePattern.CheckSampled(value, size, p, size));
    }

    [Fact]
    public void Check_fails_a_flipped_last_word_of_a_size_that_is_not_a_multiple_of_8()
    {
        const int size = 1003, p = 2;
        var value = ValuePattern.Create(p, size);
        value[(size & ~7) - 8 + 2] ^= 0x80;
        Assert.False(ValuePattern.CheckSampled(value, size, p, size));
    }

    [Theory]
    [InlineData(4095)]
    [InlineData(4097)]
    [InlineData(0)]
    public void Check_fails_a_value_of_the_wrong_length(long length)
    {
        const int size = 4096;
        var buffer = new byte[8192];
        ValuePattern.Create(1, size).CopyTo(buffer, 0);
        Assert.False(ValuePattern.CheckSampled(buffer, length, 1, size));
    }

    [Fact]
    public async Task A_short_get_run_over_TCP_reports_no_errors_no_verify_failures_and_positive_throughput()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}", ConnectionsPerNode = 2 });
        var r = await BenchCommand.RunAsync(store, "get", valueSize: 64 << 10, batch: 4, inflight: 2, connections: 2, keyCount: 32,
            duration: TimeSpan.FromSeconds(1), warmup: TimeSpan.FromMilliseconds(100), verify: true);
        Assert.Equal("get", r.Op);
        Assert.Equal(0, r.Errors);
        Assert.Equal(0, r.Misses);
        Assert.Equal(0, r.VerifyFailures);
        Assert.True(r.Requests > 0);
        Assert.Equal(r.Requests * 4, r.Values);
        Assert.True(r.Gbps > 0);
        Assert.True(r.OpsPerSecond > 0);
        Assert.True(r.P50Us > 0 && r.P50Us <= r.P90Us && r.P90Us <= r.P99Us && r.P99Us <= r.P999Us);
        // The pre-fill really stored the pattern the bench checks against.
        var stored = await store.GetAsync(KvStore.Keys("bench:65536:5")[0]);
        Assert.NotNull(stored);
        Assert.Equal(ValuePattern.Create(5, 64 << 10), stored);
    }

    [Fact]
    public async Task Bench_verify_crc_is_on_or_off_and_anything_else_is_a_one_line_error()
    {
        var ex = await Assert.ThrowsAsync<UsageException>(() => BenchCommand.RunAsync(["--verify-crc", "yes"]));
        Assert.Contains("--verify-crc", ex.Message);
    }

    [Fact]
    public async Task A_short_get_run_with_the_clients_crc_check_on_finds_every_value_intact()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}", VerifyValueCrc = true });
        var r = await BenchCommand.RunAsync(store, "get", valueSize: 300_000, batch: 4, inflight: 2, connections: 2, keyCount: 16,
            duration: TimeSpan.FromSeconds(1), warmup: TimeSpan.Zero, verify: true);
        Assert.True(r.Requests > 0);
        Assert.Equal(0, r.Errors);
        Assert.Equal(0, r.VerifyFailures);
        Assert.Equal(0L, store.ChecksumMismatches);
    }

    [Fact]
    public async Task A_short_put_run_over_TCP_stores_verifiable_patterns()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}" });
        var r = await BenchCommand.RunAsync(store, "put", 4096, 8, 2, 2, 64, TimeSpan.FromSeconds(1), TimeSpan.Zero, verify: true);
        Assert.Equal(0, r.Errors);
        Assert.True(r.Requests > 0);
        var stored = await store.GetAsync(KvStore.Keys("bench:4096:17")[0]);
        Assert.NotNull(stored);
        Assert.True(ValuePattern.CheckSampled(stored, stored.Length, 17, 4096));
    }

    [Fact]
    public async Task A_chained_put_run_is_striped_over_the_connections_and_leaves_no_block_waiting_for_its_parent()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 64L << 20 } });
        int exit = await BenchCommand.RunAsync(["--server", $"127.0.0.1:{node.Port}", "--transport", "tcp", "--op", "put", "--chain",
            "--value-size", "64KiB", "--batch", "16", "--inflight", "1", "--connections", "4", "--stripe", "64KiB", "--keys", "64",
            "--duration", "0.3", "--warmup", "0", "--no-progress", "--json"]);
        Assert.Equal(0, exit);
        long puts = node.Counters.Requests(Kvasir.Protocol.Opcode.Put);
        Assert.True(puts >= 4 && puts % 4 == 0, $"{puts} PUT requests: a 1 MiB chain at 64 KiB stripes goes as 4");
        Assert.Equal(0, node.Stats.LateParentWaits);
    }

    [Fact]
    public async Task Chain_on_a_peer_without_chains_is_a_one_line_error()
    {
        var ex = await Assert.ThrowsAsync<UsageException>(() => BenchCommand.RunAsync(["--target", "memcached", "--chain"]));
        Assert.Contains("--chain: memcached has no chains", ex.Message);
    }
}

/// <summary>
/// Tests that read the process's live managed bytes run alone: the GC's count is process-wide, so a test class allocating in
/// parallel (CI saw it) moves the figure out of any sane range.
/// </summary>
[CollectionDefinition(nameof(GcMeasuringTests), DisableParallelization = true)]
public sealed class GcMeasuringTests;

/// <summary><c>kvasir bench --scale</c>: a small ladder step, measured for real (no figures asserted beyond sanity).</summary>
[Collection(nameof(GcMeasuringTests))]
public class ScaleBenchTests
{
    [Fact]
    public async Task A_scale_step_fills_every_key_finds_every_key_and_counts_index_bytes_from_the_gc()
    {
        var row = await ScaleBenchCommand.MeasureAsync(count: 3000, valueSize: 256, keyBytes: 32, batch: 16, requests: 20);
        Assert.Equal(3000, row.Keys);
        Assert.Equal(256, row.Granule);
        // Every key costs managed memory (slot, version, key copy, table entry): at least its 32 key bytes.
        Assert.InRange(row.ManagedBytesPerKey, 32, 4096);
        Assert.True(row.ExistsP50Us > 0 && row.ExistsP99Us >= row.ExistsP50Us);
        Assert.True(row.GetP50Us > 0 && row.GetP99Us >= row.GetP50Us);
    }

    [Theory]
    [InlineData("--keys", "0")]
    [InlineData("--keys", "1G")]
    [InlineData("--value-size", "32MiB")]
    [InlineData("--key-bytes", "8")]
    public async Task Bad_scale_options_are_one_line_errors(string option, string value)
    {
        var ex = await Assert.ThrowsAsync<UsageException>(() => ScaleBenchCommand.RunAsync(["--scale", option, value]));
        Assert.Contains(option, ex.Message);
    }
}
