using System.Text;
using System.Text.Json.Nodes;
using Kvasir.Cli.Stats;
using Kvasir.Protocol.Stats;

namespace Kvasir.Cli.Tests;

/// <summary>The access statistics file (schema v1): summary numbers, the demo workload, and refusals of bad input.</summary>
public sealed class StatsFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvasir-stats-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string PathOf(string name) => Path.Combine(_dir, name);

    // A B A C B A: A@2 saw {B} since A@0 (1), B@4 saw {A, C} since B@1 (2), A@5 saw {C, B} since A@2 (2).
    private const string HandFile = """
        {"schema": "kvasir-access-stats", "version": 1, "source": "python", "start_unix_ms": 1700000000000,
         "end_unix_ms": 1700000001000, "dropped": 0, "future_field": {"ignored": true},
         "accesses": [
           {"t": 0.0,   "block": "A", "hit": false, "tier": null,   "bytes": 2048, "tokens": 16},
           {"t": 100.5, "block": "B", "hit": false, "tier": null,   "bytes": null, "tokens": null},
           {"t": 200,   "block": "A", "hit": true,  "tier": "dram", "bytes": 2048, "tokens": 16, "extra": 1},
           {"t": 300,   "block": "C", "hit": false},
           {"t": 400,   "block": "B", "hit": true,  "tier": "disk"},
           {"t": 999.9, "block": "A", "hit": true,  "tier": "dram"}
         ]}
        """;

    [Fact]
    public void Summary_of_a_hand_computed_file_has_the_schemas_numbers()
    {
        var s = AccessStatsFile.Parse(Encoding.UTF8.GetBytes(HandFile)).Summary();
        Assert.Equal((6, 3, 3, 0.5, 3), (s.TotalAccesses, s.Hits, s.Misses, s.HitRate, s.UniqueBlocks));
        Assert.Equal(new ReuseDistanceSummary(3, 2, 2, 2), s.ReuseDistance);   // [1, 2, 2] by nearest rank
        Assert.Equal([new HotBlock("A", 3), new HotBlock("B", 2), new HotBlock("C", 1)], s.Hottest);
        Assert.Equal([("dram", 2), ("disk", 1)], s.HitsByTier.Select(t => (t.Key, t.Value)));
    }

    [Fact]
    public void Reuse_distance_counts_distinct_blocks_not_accesses_and_first_accesses_have_none()
    {
        var accesses = "A B B B A C A".Split(' ').Select((b, i) => new AccessRecord(i, b, false)).ToList();
        Assert.Equal([-1, -1, 0, 0, 1, -1, 1], AccessStatsSummary.ReuseDistances(accesses));
        var s = AccessStatsSummary.Compute([]);
        Assert.Equal((0, 0.0, new ReuseDistanceSummary(0, null, null, null)), (s.TotalAccesses, s.HitRate, s.ReuseDistance));
    }

    [Fact]
    public void Ties_among_the_hottest_blocks_go_by_block_id_and_only_ten_are_kept()
    {
        var accesses = Enumerable.Range(0, 12).Select(i => new AccessRecord(i, $"b{11 - i:D2}", true, "engine")).ToList();
        var s = AccessStatsSummary.Compute(accesses);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"b{i:D2}"), s.Hottest.Select(h => h.Block));
        Assert.Equal(12, s.HitsByTier["engine"]);
    }

    [Fact]
    public async Task Stats_summary_prints_the_hand_computed_numbers()
    {
        File.WriteAllText(PathOf("hand.json"), HandFile);
        var r = await Cli.RunAsync("stats", "summary", "--input", PathOf("hand.json"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("hit rate        50.0 %", r.Out);
        Assert.Contains("unique blocks   3", r.Out);
        Assert.Contains("reuse distance  3 reuses; p50 2, p90 2, p99 2 distinct blocks", r.Out);
        Assert.Contains("hits by tier    dram 2, disk 1", r.Out);
    }

    [Fact]
    public async Task A_written_file_stores_the_summary_a_reader_recomputes_and_reads_back_equal()
    {
        var file = StatsDemo.Generate(new DemoSettings { Accesses = 3000 }, 1_700_000_000_000);
        file.Write(PathOf("demo.json"));
        var back = AccessStatsFile.Read(PathOf("demo.json"));
        Assert.Equal(file.Accesses, back.Accesses);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(AccessStatsJson.SummaryToUtf8Bytes(back.StoredSummary!)), JsonNode.Parse(AccessStatsJson.SummaryToUtf8Bytes(back.Summary()))));
    }

    [Fact]
    public void Demo_is_a_multi_turn_workload_with_reuse_across_tiers_and_is_deterministic()
    {
        var a = StatsDemo.Generate(new DemoSettings { Accesses = 4000, Seed = 7 }, 0);
        var b = StatsDemo.Generate(new DemoSettings { Accesses = 4000, Seed = 7 }, 0);
        Assert.Equal(a.Accesses, b.Accesses);
        var s = a.Summary();
        Assert.Equal(4000, s.TotalAccesses);
        Assert.InRange(s.HitRate, 0.3, 0.95);                            // shared prefixes and earlier turns are hit
        Assert.True(s.HitsByTier.GetValueOrDefault("dram") > 0 && s.HitsByTier.GetValueOrDefault("disk") > 0, "hits in both tiers");
        Assert.True(s.Hottest[0].Accesses > 10 * a.Accesses.Count / s.UniqueBlocks / 4, "a Zipf-popular prefix is far hotter than the mean block");
        Assert.All(a.Accesses, x => Assert.Equal((16L * 128 * 1024, 16L), (x.Bytes!.Value, x.Tokens!.Value)));
        Assert.True(a.Accesses.Zip(a.Accesses.Skip(1)).All(p => p.First.T <= p.Second.T), "accesses in time order");
        Assert.All(a.Accesses, x => Assert.Equal(64, x.Block.Length));  // block hash v1 ids: 64 hex chars
    }

    public static TheoryData<string, string, string> BadFiles => new()
    {
        { "missing", "", "cannot read" },
        { "not-json.json", "{ nope", "not JSON" },
        { "other-schema.json", """{"schema": "something-else", "version": 1, "accesses": []}""", "schema is 'something-else', not 'kvasir-access-stats'" },
        { "newer.json", """{"schema": "kvasir-access-stats", "version": 2, "start_unix_ms": 0, "end_unix_ms": 0, "accesses": []}""", "version 2 is newer than this reader" },
        { "no-accesses.json", """{"schema": "kvasir-access-stats", "version": 1, "start_unix_ms": 0, "end_unix_ms": 0}""", "\"accesses\" is missing" },
        { "bad-tier.json", """{"schema": "kvasir-access-stats", "version": 1, "start_unix_ms": 0, "end_unix_ms": 0, "accesses": [{"t": 0, "block": "a", "hit": true, "tier": "gpu"}]}""", "accesses[0]: tier 'gpu'" },
        { "unordered.json", """{"schema": "kvasir-access-stats", "version": 1, "start_unix_ms": 0, "end_unix_ms": 0, "accesses": [{"t": 5, "block": "a", "hit": true}, {"t": 1, "block": "b", "hit": false}]}""", "accesses[1]: t 1 is earlier" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public async Task Bad_input_is_one_clear_line_and_exit_code_2(string name, string content, string expected)
    {
        var path = PathOf(name);
        if (name != "missing") File.WriteAllText(path, content);
        foreach (var args in new[] { new[] { "stats", "summary", "--input", path }, ["stats", "visualize", "--input", path, "--output", PathOf("x.png")] })
        {
            var r = await Cli.RunAsync(args);
            Assert.True(r.ExitCode == 2, r.ToString());
            var line = Assert.Single(r.ErrLines);
            Assert.StartsWith("kvasir stats: ", line);
            Assert.Contains(expected, line);
            Assert.False(File.Exists(PathOf("x.png")));
        }
    }

    [Theory]
    [InlineData("demo", "--output is required")]
    [InlineData("visualize --input a.json", "--output is required")]
    [InlineData("visualize --input a.json --output b.png --type pie", "--type must be heatmap, timeline, reuse, hitrate or all (got 'pie')")]
    [InlineData("summary", "--input is required")]
    [InlineData("export", "--output is required")]
    public async Task Usage_errors_exit_2(string args, string expected)
    {
        var r = await Cli.RunAsync(["stats", .. args.Split(' ')]);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Equal($"kvasir stats: {expected}", Assert.Single(r.ErrLines));
    }

    [Fact]
    public async Task Stats_help_documents_the_subcommands_and_the_all_file_names()
    {
        var r = await Cli.RunAsync("stats", "--help");
        Assert.Equal(0, r.ExitCode);
        foreach (var word in new[] { "stats demo", "stats summary", "stats visualize", "stats export", "X-heatmap.png, X-hitrate.png, X-reuse.png and X-timeline.png", "print the node's counters" })
            Assert.Contains(word, r.Out);
    }
}
