using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;
using Microsoft.Extensions.Logging;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>The admin HTTP port of an embedded node: health of the arena, readiness while draining, bytes by op, the access log and connection-error log lines.</summary>
public sealed class AdminTests
{
    private static CacheNode StartNode(long capacity = 64L << 20, string? accessLog = null, ILoggerFactory? loggers = null, TimeSpan? drain = null)
    {
        var node = new CacheNode(new NodeOptions
        {
            Port = 0,
            AdminPort = 0,
            Store = new StoreOptions { Capacity = capacity, MaxValueBytes = 1L << 20 },
            AccessLog = accessLog,
            DrainTimeout = drain ?? TimeSpan.FromSeconds(10),
        }, loggers);
        node.Start();
        return node;
    }

    private static HttpClient Http(CacheNode node) => new() { BaseAddress = new Uri($"http://127.0.0.1:{node.AdminPort}"), Timeout = TimeSpan.FromSeconds(10) };

    private static async Task<(HttpStatusCode Status, JsonElement Body)> GetJsonAsync(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    private static byte StatusOf(ReceivedFrame reply) => reply.Meta[4];   // u32 count, then one status byte per key

    [Fact]
    public async Task The_arena_is_degraded_with_its_reason_while_writes_are_refused_for_lack_of_memory()
    {
        var node = StartNode(capacity: 4L << 20);
        try
        {
            using var http = Http(node);
            var (status, body) = await GetJsonAsync(http, "/v1/health");
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal("ok", body.GetProperty("components").GetProperty("arena").GetProperty("status").GetString());

            // Pinned values cannot be evicted: fill the arena with them until a PUT is refused.
            var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
            using var _c = c;
            bool refused = false;
            for (int i = 0; i < 12 && !refused; i++)
            {
                var put = await c.RequestAsync(Put((ulong)(10 + 2 * i), (Key($"pinned/{i}"), Value(i, 1 << 20))));
                if (StatusOf(put) == (byte)WireStatus.OutOfMemory) { refused = true; break; }
                Assert.Equal((byte)WireStatus.Ok, StatusOf(put));
                Assert.Equal((byte)WireStatus.Ok, StatusOf(await c.RequestAsync(KeyOp(Opcode.Pin, (ulong)(11 + 2 * i), Key($"pinned/{i}")))));
            }
            Assert.True(refused, "a 4 MiB arena full of pinned 1 MiB values must refuse a PUT");

            (status, body) = await GetJsonAsync(http, "/v1/health");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.Equal("degraded", body.GetProperty("status").GetString());
            var arena = body.GetProperty("components").GetProperty("arena");
            Assert.Equal("degraded", arena.GetProperty("status").GetString());
            Assert.Contains("lack of memory", arena.GetProperty("reason").GetString());
            Assert.Contains(node.Problems(), p => p.Component == "arena");
        }
        finally
        {
            await node.StopAsync();
        }
    }

    [Fact]
    public async Task Ready_answers_503_while_the_node_drains_and_the_admin_port_closes_after_the_drain()
    {
        var node = StartNode(drain: TimeSpan.FromSeconds(30));
        using var http = Http(node);
        Assert.Equal(HttpStatusCode.OK, (await GetJsonAsync(http, "/v1/ready")).Status);
        var (busy, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _b = busy;
        var value = Value(3, 256 * 1024);
        var frame = Put(7, (Key("in-flight"), value));
        int half = frame.Length - value.Length / 2;
        await busy.SendAsync(frame[..half]);
        await Poll.UntilAsync(() => node.Store.GetStats().Reservations == 1, "the node to start receiving the PUT's value");

        var stopping = node.StopAsync();
        var (status, body) = await GetJsonAsync(http, "/v1/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.False(body.GetProperty("ready").GetBoolean());
        Assert.Contains("draining", body.GetProperty("reason").GetString());
        Assert.Equal(HttpStatusCode.OK, (await GetJsonAsync(http, "/v1/status")).Status);   // still observable while draining
        Assert.False(stopping.IsCompleted, "StopAsync must wait for the PUT in flight");

        await busy.SendAsync(frame[half..]);
        Assert.Equal((byte)WireStatus.Ok, StatusOf((await busy.ReadFrameAsync())!));
        await stopping.WaitAsync(TimeSpan.FromSeconds(20));
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => http.GetAsync("/v1/ready"));
    }

    [Fact]
    public async Task Status_counts_requests_keys_and_bytes_by_op_and_metrics_label_latency_by_op_and_status()
    {
        var node = StartNode();
        try
        {
            var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
            using var _c = c;
            var value = Value(5, 100_000);
            await c.RequestAsync(Put(2, (Key("a"), value), (Key("b"), value)));
            var got = await c.RequestAsync(Get(3, Key("a"), Key("missing")));
            Assert.Equal(value, got.Payload);

            using var http = Http(node);
            var (_, s) = await GetJsonAsync(http, "/v1/status");
            var put = s.GetProperty("ops").GetProperty("put");
            var get = s.GetProperty("ops").GetProperty("get");
            Assert.Equal(1, put.GetProperty("requests").GetInt64());
            Assert.Equal(2, put.GetProperty("keys").GetInt64());
            Assert.InRange(put.GetProperty("bytes_in").GetInt64(), 200_000, 201_000);
            Assert.Equal(2, get.GetProperty("keys").GetInt64());
            Assert.InRange(get.GetProperty("bytes_out").GetInt64(), 100_000, 100_200);
            Assert.InRange(get.GetProperty("bytes_in").GetInt64(), 1, 200);
            Assert.Equal(0.5, s.GetProperty("hit_ratio").GetDouble());

            var metrics = await http.GetStringAsync("/metrics");
            Assert.Matches(new Regex("""^kvasir_request_duration_seconds_count\{op="get",status="ok"\} 1$""", RegexOptions.Multiline), metrics);
            Assert.Matches(new Regex("""^kvasir_op_sent_bytes_total\{op="get"\} 1\d{5}$""", RegexOptions.Multiline), metrics);
        }
        finally
        {
            await node.StopAsync();
        }
    }

    [Fact]
    public async Task The_access_log_has_one_line_per_request_with_client_op_keys_status_and_microseconds()
    {
        var path = Path.Combine(Path.GetTempPath(), $"kvasir-access-{Guid.NewGuid():n}.log");
        try
        {
            var node = StartNode(accessLog: path);
            int localPort;
            try
            {
                var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
                using var _c = c;
                localPort = ((IPEndPoint)c.Socket.LocalEndPoint!).Port;
                await c.RequestAsync(Put(2, (Key("x"), Value(1, 10)), (Key("y"), Value(2, 10))));
                await c.RequestAsync(Get(3, Key("x")));
                using var rude = await RawConnection.ConnectAsync(node.Port);   // GET before HELLO: a frame error
                await rude.SendAsync(Get(1, Key("x")));
                await rude.AssertErrorThenClosedAsync(WireStatus.HelloRequired);
            }
            finally
            {
                await node.StopAsync();   // flushes the log
            }
            var lines = File.ReadAllLines(path);
            Assert.Equal(4, lines.Length);   // hello, put, get; the refused get
            var line = new Regex(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z 127\.0\.0\.1:(\d+) (\w+) keys=(\d+) status=(\w+) us=\d+$");
            Assert.All(lines, l => Assert.Matches(line, l));
            Assert.Matches(@" get keys=0 status=hello_required us=", lines[3]);
            var parsed = lines[..3].Select(l => line.Match(l)).ToArray();
            Assert.All(parsed, m => Assert.Equal(localPort.ToString(), m.Groups[1].Value));
            Assert.Equal(["hello", "put", "get"], parsed.Select(m => m.Groups[2].Value));
            Assert.Equal(["0", "2", "1"], parsed.Select(m => m.Groups[3].Value));
            Assert.All(parsed, m => Assert.Equal("ok", m.Groups[4].Value));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Each_connection_error_is_one_log_line_with_the_client_and_the_reason()
    {
        var sink = new CapturingLogs();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(sink).SetMinimumLevel(LogLevel.Information));
        var node = StartNode(loggers: loggers);
        try
        {
            // A frame with a bad magic: a protocol error.
            var bad = await RawConnection.ConnectAsync(node.Port);
            var local1 = ((IPEndPoint)bad.Socket.LocalEndPoint!).ToString();
            var frame = Hello(1);
            frame[0] = (byte)'X';
            await bad.SendAsync(frame);
            await bad.DrainUntilClosedAsync(TimeSpan.FromSeconds(10), "the node closes a connection after a bad frame");
            bad.Dispose();

            // A client that dies half-way through a PUT: a reset mid-frame.
            var (dying, _) = await RawConnection.ConnectHelloAsync(node.Port);
            var local2 = ((IPEndPoint)dying.Socket.LocalEndPoint!).ToString();
            await dying.SendAsync(Put(2, (Key("k"), Value(1, 64 * 1024)))[..1000]);
            dying.Socket.LingerState = new LingerOption(true, 0);   // close with RST
            dying.Dispose();

            await Poll.UntilAsync(() => sink.Lines.Count(l => l.Contains(local2)) >= 1, () => $"a log line about {local2}; have: {string.Join(" | ", sink.Lines)}");
            var first = Assert.Single(sink.Lines, l => l.Contains(local1));
            Assert.StartsWith("Warning ", first);
            Assert.Contains("BadFrame", first);
            var second = Assert.Single(sink.Lines, l => l.Contains(local2));
            Assert.Contains("closed by an error", second);
            Assert.All(sink.Lines, l => Assert.DoesNotContain('\n', l));
        }
        finally
        {
            await node.StopAsync();
        }
    }

    /// <summary>Collects formatted log lines ("Level message") from every logger of a factory.</summary>
    private sealed class CapturingLogs : ILoggerProvider
    {
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _lines = new();

        public IReadOnlyCollection<string> Lines => _lines.ToArray();

        public ILogger CreateLogger(string categoryName) => new Logger(_lines);

        public void Dispose() { }

        private sealed class Logger(System.Collections.Concurrent.ConcurrentQueue<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;
            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var line = formatter(state, exception);
                if (line.StartsWith("connection ", StringComparison.Ordinal)) lines.Enqueue($"{logLevel} {line}");
            }
        }
    }
}

public sealed class KeyHeatmapTests
{
    [Fact]
    public void Similar_keys_spread_over_every_bucket_and_the_counts_add_up()
    {
        var heatmap = new Kvasir.Server.Admin.KeyHeatmap();
        const int keys = 32 * 200;
        for (int i = 0; i < keys; i++) heatmap.Record(System.Text.Encoding.ASCII.GetBytes($"layer{i % 32}/block-{i:D6}"));
        var rows = heatmap.Snapshot();
        Assert.Equal(Kvasir.Server.Admin.KeyHeatmap.Seconds, rows.Length);
        var perBucket = Enumerable.Range(0, Kvasir.Server.Admin.KeyHeatmap.Buckets).Select(b => rows.Sum(r => r[b])).ToArray();
        Assert.Equal(keys, perBucket.Sum());
        Assert.All(perBucket, n => Assert.InRange(n, 100, 300));   // 200 expected per bucket
    }
}

public sealed class PrometheusExporterTests
{
    [Fact]
    public async Task Histograms_scraped_while_requests_are_recorded_stay_cumulative_with_inf_equal_to_count()
    {
        await using var node = new CacheNode(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 8L << 20, MaxValueBytes = 1L << 20 } });
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        long recorded = 0;
        // A thread of its own: the scrape loop below never yields, and the pool may have no thread to spare.
        var recorder = new Thread(() =>
        {
            long i = 0;
            while (!stop.IsCancellationRequested)
            {
                node.Metrics.Request(Opcode.Get, WireStatus.Ok, 1, (i++ % 64) * System.Diagnostics.Stopwatch.Frequency / 10_000);
                Interlocked.Increment(ref recorded);
            }
        })
        { IsBackground = true };
        recorder.Start();
        await Poll.UntilAsync(() => Interlocked.Read(ref recorded) > 0, () => "the recorder thread to record a request");
        var bucket = new Regex("""^kvasir_request_duration_seconds_bucket\{op="get",status="ok",le="([^"]+)"\} (\d+)$""", RegexOptions.Multiline);
        var count = new Regex("""^kvasir_request_duration_seconds_count\{op="get",status="ok"\} (\d+)$""", RegexOptions.Multiline);
        int checkedScrapes = 0;
        long firstCount = -1, lastCount = -1;
        try
        {
            for (int scrape = 0; scrape < 2000 && !stop.IsCancellationRequested; scrape++)
            {
                var text = node.Exporter.Render();
                var buckets = bucket.Matches(text).Select(m => long.Parse(m.Groups[2].Value)).ToArray();
                Assert.NotEmpty(buckets);
                checkedScrapes++;
                lastCount = buckets[^1];
                if (firstCount < 0) firstCount = lastCount;
                for (int i = 1; i < buckets.Length; i++)
                    Assert.True(buckets[i] >= buckets[i - 1], $"scrape {scrape}: bucket {i} = {buckets[i]} < bucket {i - 1} = {buckets[i - 1]}");
                Assert.Equal(long.Parse(count.Match(text).Groups[1].Value), buckets[^1]);
            }
        }
        finally
        {
            await stop.CancelAsync();
            Assert.True(recorder.Join(TimeSpan.FromSeconds(10)), "the recorder thread did not stop");
        }
        Assert.True(checkedScrapes >= 1000, $"only {checkedScrapes} scrapes saw the histogram");
        Assert.True(lastCount > firstCount, "the recorder never moved the histogram between scrapes");
    }
}
