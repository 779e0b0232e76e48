using System.Text.Json;
using System.Text.Json.Nodes;
using Kvasir.Cli.Stats;
using Kvasir.Client;
using Kvasir.Protocol.Stats;
using Kvasir.Server;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;
using SkiaSharp;

namespace Kvasir.Cli.Tests;

/// <summary>
/// <c>kvasir stats visualize</c> writes real PNGs (opened and checked here), and a node records its GET accesses and
/// serves them as the access statistics file that <c>kvasir stats export</c> writes.
/// </summary>
public sealed class StatsPlotTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvasir-stats-plots-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>Opens each PNG: at least 600×400, not blank (many colours, none covering nearly all of it), all four different.</summary>
    private static void AssertFourDistinctPlots(string stem)
    {
        var pixels = new List<uint[]>();
        foreach (var type in new[] { "heatmap", "hitrate", "reuse", "timeline" })
        {
            var path = $"{stem}-{type}.png";
            Assert.True(File.Exists(path), $"{path} written");
            using var bitmap = SKBitmap.Decode(path);
            Assert.True(bitmap is not null, $"{path} is a PNG SkiaSharp can decode");
            Assert.True(bitmap.Width >= 600 && bitmap.Height >= 400, $"{path} is {bitmap.Width}x{bitmap.Height}");
            var all = bitmap.Pixels.Select(c => (uint)c).ToArray();
            var histogram = all.GroupBy(c => c).Select(g => g.Count()).OrderDescending().ToArray();
            Assert.True(histogram.Length >= 20, $"{path} has {histogram.Length} distinct colours: blank or nearly so");
            Assert.True(histogram[0] < 0.97 * all.Length, $"{path}: one colour covers {100.0 * histogram[0] / all.Length:F1} % of it");
            pixels.Add(all);
        }
        for (int i = 0; i < pixels.Count; i++)
            for (int j = i + 1; j < pixels.Count; j++)
            {
                int differ = pixels[i].Length != pixels[j].Length ? int.MaxValue : pixels[i].Zip(pixels[j]).Count(p => p.First != p.Second);
                Assert.True(differ > pixels[i].Length / 50, $"plots {i} and {j} differ in only {differ} pixels");
            }
    }

    [Fact]
    public async Task Visualize_all_on_the_demo_output_writes_four_distinct_non_blank_pngs()
    {
        var demo = await Cli.RunAsync("stats", "demo", "--num-accesses", "3000", "--output", PathOf("demo.json"));
        Assert.True(demo.ExitCode == 0, demo.ToString());
        var r = await Cli.RunAsync("stats", "visualize", "--input", PathOf("demo.json"), "--output", PathOf("demo.png"), "--type", "all", "--summary");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("hit rate", r.Out);
        AssertFourDistinctPlots(PathOf("demo"));
    }

    [Fact]
    public async Task Visualize_of_one_type_writes_the_named_file()
    {
        var file = StatsDemo.Generate(new DemoSettings { Accesses = 500 }, 0);
        file.Write(PathOf("small.json"));
        var r = await Cli.RunAsync("stats", "visualize", "--input", PathOf("small.json"), "--output", PathOf("reuse.png"), "--type", "reuse");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var bitmap = SKBitmap.Decode(PathOf("reuse.png"));
        Assert.Equal((StatsPlots.Width, StatsPlots.Height), (bitmap.Width, bitmap.Height));
    }

    [Fact]
    public async Task An_empty_file_still_draws_every_plot()
    {
        new AccessStatsFile { Source = "dotnet", StartUnixMs = 0, EndUnixMs = 0, Accesses = [] }.Write(PathOf("empty.json"));
        var r = await Cli.RunAsync("stats", "visualize", "--input", PathOf("empty.json"), "--output", PathOf("empty.png"), "--type", "all");
        Assert.True(r.ExitCode == 0, r.ToString());
        foreach (var t in StatsPlots.Types) Assert.True(File.Exists(PathOf($"empty-{t}.png")), t);
    }

    private static TestNode StartNode(string? diskPath = null, bool sharedMemory = false) => TestNode.Start(new NodeOptions
    {
        Port = 0,
        AdminPort = 0,
        NodeId = "stats-test-node",
        Store = new StoreOptions { Capacity = 128 * 1024, MaxValueBytes = 4096 },
        Tiers = diskPath is null ? null : new TierOptions { DiskPath = diskPath, DiskCapacity = 64L << 20 },
        SharedMemory = sharedMemory,
    });

    private static async Task<JsonNode> AccessStatsAsync(TestNode node, string query = "")
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var body = await http.GetStringAsync($"http://127.0.0.1:{node.Node.AdminPort}/v1/access-stats{query}");
        return JsonNode.Parse(body)!;
    }

    [Fact]
    public async Task The_node_records_gets_with_hit_miss_tier_and_bytes_at_v1_access_stats()
    {
        var disk = PathOf("disk");
        Directory.CreateDirectory(disk);
        await using var node = StartNode(disk);
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp }))
        {
            // 64 values of 4 KiB through a 128 KiB arena: the first ones are evicted and stay on disk.
            for (int i = 0; i < 64; i++)
                Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key($"k{i}")], [TestValues.For($"k{i}", 4096)]))[0]);
            Assert.NotNull(await store.GetAsync(TestValues.Key("k63")));     // DRAM
            Assert.NotNull(await store.GetAsync(TestValues.Key("k0")));      // disk
            Assert.Null(await store.GetAsync(TestValues.Key("absent")));    // miss
            Assert.Null(await store.GetAsync(new byte[] { 0, 1, 2 }));        // a binary key: its id is hex
        }
        var json = await AccessStatsAsync(node);
        Assert.Equal("kvasir-access-stats", (string?)json["schema"]);
        Assert.Equal(1, (int)json["version"]!);
        Assert.Equal("node:stats-test-node", (string?)json["source"]);
        var accesses = json["accesses"]!.AsArray();
        Assert.Equal(4, accesses.Count);
        Assert.Equal(("k63", true, "dram", 4096L), Row(accesses[0]!));
        Assert.Equal(("k0", true, "disk", 4096L), Row(accesses[1]!));
        Assert.Equal(("absent", false, (string?)null, (long?)null), Row(accesses[2]!));
        Assert.Equal("000102", (string?)accesses[3]!["block"]);
        var summary = json["summary"]!;
        Assert.Equal((4, 2), ((int)summary["total_accesses"]!, (int)summary["misses"]!));
        Assert.Equal((1, 1), ((int)summary["hits_by_tier"]!["dram"]!, (int)summary["hits_by_tier"]!["disk"]!));

        // The node's summary is the file format's: the CLI's reader recomputes it and gets the same.
        var file = AccessStatsFile.Parse(JsonSerializer.SerializeToUtf8Bytes(json));
        Assert.True(JsonNode.DeepEquals(summary, JsonNode.Parse(AccessStatsJson.SummaryToUtf8Bytes(file.Summary()))), $"node summary {summary.ToJsonString()}");
        var last = await AccessStatsAsync(node, "?last=1");
        Assert.Equal("000102", (string?)Assert.Single(last["accesses"]!.AsArray())!["block"]);
        Assert.Equal(3, (long)last["dropped"]!);

        static (string?, bool, string?, long?) Row(JsonNode a) => ((string?)a["block"], (bool)a["hit"]!, (string?)a["tier"], (long?)a["bytes"]);
    }

    [Fact]
    public async Task The_node_records_shared_memory_leases_like_gets()
    {
        // A same-host client reads through LEASE (shared memory), not GET: those reads are accesses too,
        // with the tier the lease came from, so a node serving local engines has a heatmap.
        var disk = PathOf("disk-shm");
        Directory.CreateDirectory(disk);
        await using var node = StartNode(disk, sharedMemory: true);
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Shm }))
        {
            Assert.Equal(KvTransportKind.Shm, store.Transport);
            for (int i = 0; i < 64; i++)
                Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key($"s{i}")], [TestValues.For($"s{i}", 4096)]))[0]);
            var buffers = new[] { new byte[4096], new byte[4096], new byte[4096] };
            var results = await store.GetAsync([TestValues.KeyMemory("s63"), TestValues.KeyMemory("s0"), TestValues.KeyMemory("gone")], buffers.Select(b => (Memory<byte>)b).ToArray());
            Assert.Equal([KvStatus.Ok, KvStatus.Ok, KvStatus.NotFound], results.Select(r => r.Status).ToArray());
            Assert.True(TestValues.Matches(buffers[0], TestValues.Key("s63")) && TestValues.Matches(buffers[1], TestValues.Key("s0")), "leased bytes match what was put");
        }
        var accesses = (await AccessStatsAsync(node))["accesses"]!.AsArray();
        Assert.Equal(3, accesses.Count);
        Assert.Equal(("s63", true, "dram", 4096L), Row(accesses[0]!));
        Assert.Equal(("s0", true, "disk", 4096L), Row(accesses[1]!));
        Assert.Equal(("gone", false, (string?)null, (long?)null), Row(accesses[2]!));

        static (string?, bool, string?, long?) Row(JsonNode a) => ((string?)a["block"], (bool)a["hit"]!, (string?)a["tier"], (long?)a["bytes"]);
    }

    [Fact]
    public async Task Visualize_all_on_a_real_nodes_export_writes_four_distinct_non_blank_pngs()
    {
        await using var node = StartNode();
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp }))
        {
            for (int i = 0; i < 16; i++) await store.PutAsync([TestValues.Key($"hot{i}")], [TestValues.For($"hot{i}", 1024)]);
            var rng = new Random(3);
            for (int n = 0; n < 600; n++)
            {
                int k = (int)Math.Floor(Math.Pow(rng.NextDouble(), 2) * 24);   // skewed: low keys hot, 16..23 never stored
                await store.GetAsync(TestValues.Key($"hot{k}"));
            }
        }
        var export = await Cli.RunAsync("stats", "export", "--server", node.Address, "--admin", $"127.0.0.1:{node.Node.AdminPort}", "--output", PathOf("node.json"));
        Assert.True(export.ExitCode == 0, export.ToString());
        var file = AccessStatsFile.Read(PathOf("node.json"));
        Assert.Equal("node:stats-test-node", file.Source);
        Assert.Equal(600, file.Accesses.Count);
        Assert.InRange(file.Summary().HitRate, 0.5, 0.95);
        var r = await Cli.RunAsync("stats", "visualize", "--input", PathOf("node.json"), "--output", PathOf("node.png"), "--type", "all");
        Assert.True(r.ExitCode == 0, r.ToString());
        AssertFourDistinctPlots(PathOf("node"));
    }

    [Fact]
    public async Task Export_from_an_unreachable_admin_port_fails_with_one_line()
    {
        var r = await Cli.RunAsync("stats", "export", "--server", "127.0.0.1:1", "--admin", "127.0.0.1:1", "--output", PathOf("none.json"), "--timeout", "5");
        Assert.True(r.ExitCode == 3, r.ToString());
        Assert.StartsWith("kvasir stats: cannot fetch http://127.0.0.1:1/v1/access-stats", Assert.Single(r.ErrLines));
        Assert.False(File.Exists(PathOf("none.json")));
    }

    [Fact]
    public async Task A_node_with_access_stats_off_serves_an_empty_file()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, AdminPort = 0, AccessStatsCapacity = 0 });
        await using (var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp }))
            await store.GetAsync(TestValues.Key("x"));
        var json = await AccessStatsAsync(node);
        Assert.Empty(json["accesses"]!.AsArray());
        Assert.Equal(0, (int)json["summary"]!["total_accesses"]!);
    }
}
