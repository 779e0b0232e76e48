using System.Text;
using Kvasir.Protocol.Stats;

namespace Kvasir.Prefix.Tests;

public sealed class AccessStatsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvasir-stats-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly DateTimeOffset T0 = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);

    [Fact]
    public void A_tier_outside_the_schema_is_refused_when_recorded_so_every_file_written_can_be_read_back()
    {
        var c = new AccessStatsCollector();
        Assert.Throws<ArgumentOutOfRangeException>(() => c.RecordAccess("b", true, tier: "gpu"));
        c.RecordAccess("b", true, tier: "engine");
        c.RecordAccess("b", false);
        Assert.Equal(2, c.GetStatsSummary().TotalAccesses);
    }

    [Fact]
    public void Summary_counts_hits_tiers_hottest_and_lru_stack_reuse_distances()
    {
        var c = new AccessStatsCollector();
        // a b c a b b: reuse distances a=2 (b, c), b=2 (c, a), b=0
        string[] seq = ["a", "b", "c", "a", "b", "b"];
        for (int i = 0; i < seq.Length; i++)
            c.RecordAccess(seq[i], isHit: i >= 3, time: T0.AddMilliseconds(i), tier: i >= 3 ? (i == 5 ? "dram" : "engine") : null, bytes: 100, tokens: 16);
        var s = c.GetStatsSummary();
        Assert.Equal((6L, 3L, 3L, 0.5, 3L), (s.TotalAccesses, s.Hits, s.Misses, s.HitRate, s.UniqueBlocks));
        Assert.Equal(new ReuseDistanceSummary(3, 2, 2, 2), s.ReuseDistance);
        Assert.Equal([new HotBlock("b", 3), new HotBlock("a", 2), new HotBlock("c", 1)], s.Hottest);
        Assert.Equal(2, s.HitsByTier["engine"]);
        Assert.Equal(1, s.HitsByTier["dram"]);
        Assert.Equal(2, s.HitsByTier.Count);
    }

    [Fact]
    public void Percentiles_are_nearest_rank_and_empty_summaries_have_nulls()
    {
        var empty = new AccessStatsCollector().GetStatsSummary();
        Assert.Equal(0, empty.HitRate);
        Assert.Equal(new ReuseDistanceSummary(0, null, null, null), empty.ReuseDistance);
        // Ten reuses with distances 0..9: block i is re-read after i distinct others.
        var records = new List<AccessRecord>();
        for (int d = 0; d < 10; d++)
        {
            records.Add(new AccessRecord(records.Count, $"x{d}", false, null, null, null));
            for (int k = 0; k < d; k++) records.Add(new AccessRecord(records.Count, $"f{d}-{k}", false, null, null, null));
            records.Add(new AccessRecord(records.Count, $"x{d}", true, "engine", null, null));
        }
        var s = AccessStatsSummary.Compute(records);
        Assert.Equal(10, s.ReuseDistance.Count);
        Assert.Equal((4.0, 8.0, 9.0), (s.ReuseDistance.P50!.Value, s.ReuseDistance.P90!.Value, s.ReuseDistance.P99!.Value));
        Assert.Equal(10, s.Hottest.Count);
        Assert.Equal("x0", s.Hottest[0].Block);   // ties (2 accesses) by id ascending
    }

    [Fact]
    public void Export_then_read_gives_the_same_accesses_and_summary()
    {
        var c = new AccessStatsCollector(source: "dotnet");
        c.RecordAccess("b1", false);
        c.RecordAccess("b1", true, tier: "disk", bytes: 4096, tokens: 16);
        string path = Path.Combine(_dir, "stats.json");
        c.ExportStats(path);
        var file = AccessStatsFile.Read(path);
        Assert.Equal("dotnet", file.Source);
        Assert.Equal(2, file.Accesses.Count);
        Assert.Equal(("disk", 4096L, 16L), (file.Accesses[1].Tier, file.Accesses[1].Bytes!.Value, file.Accesses[1].Tokens!.Value));
        Assert.True(file.Summary.SameAs(c.GetStatsSummary()));
        Assert.True(file.EndUnixMs >= file.StartUnixMs);
        Assert.True(file.Accesses.All(a => a.T >= 0));
        Assert.Contains("\"schema\":\"kvasir-access-stats\"", File.ReadAllText(path));
    }

    [Fact]
    public void Accesses_past_max_events_are_dropped_and_counted()
    {
        var c = new AccessStatsCollector(maxEvents: 2);
        for (int i = 0; i < 5; i++) c.RecordAccess("b", true);
        Assert.Equal((2, 3L), (c.Count, c.Dropped));
        Assert.Equal(3, c.Snapshot().Dropped);
        Assert.Throws<ConfigInvalidException>(() => new AccessStatsCollector(maxEvents: 0));
    }

    [Theory]
    [InlineData("{\"schema\":\"other\",\"version\":1}")]
    [InlineData("{\"schema\":\"kvasir-access-stats\",\"version\":2}")]
    [InlineData("{\"schema\":\"kvasir-access-stats\"}")]
    [InlineData("not json")]
    [InlineData("{\"schema\":\"kvasir-access-stats\",\"version\":1,\"source\":\"x\"}")]
    public void Another_schema_a_newer_version_or_a_broken_file_is_MetadataMismatch(string json)
    {
        var e = Assert.Throws<MetadataMismatchException>(() => AccessStatsFile.Read(new MemoryStream(Encoding.UTF8.GetBytes(json)), "t.json"));
        Assert.Contains("t.json", e.Message);
    }

    [Fact]
    public void A_summary_that_disagrees_with_the_accesses_is_ChecksumMismatch_and_unknown_fields_are_ignored()
    {
        var c = new AccessStatsCollector();
        c.RecordAccess("b", true, tier: "engine");
        var stream = new MemoryStream();
        c.Snapshot().Write(stream);
        string json = Encoding.UTF8.GetString(stream.ToArray());
        string extended = json.Replace("\"dropped\"", "\"future_field\":[1,2],\"dropped\"");
        Assert.Single(AccessStatsFile.Read(new MemoryStream(Encoding.UTF8.GetBytes(extended))).Accesses);
        string tampered = json.Replace("\"hits\":1", "\"hits\":2");
        Assert.NotEqual(json, tampered);
        Assert.Equal("KV_CHECKSUM_MISMATCH", Assert.Throws<ChecksumMismatchException>(() => AccessStatsFile.Read(new MemoryStream(Encoding.UTF8.GetBytes(tampered)))).Code);
    }

    [Fact]
    public void The_python_written_vector_file_recomputes_to_its_stored_summary()
    {
        string path = VectorFiles.Require("access_stats.json", "the Python access-stats generator (tests/vectors/)");
        var file = AccessStatsFile.Read(path);   // throws ChecksumMismatch when .NET's summary differs from Python's
        Assert.NotEmpty(file.Accesses);
        Assert.Equal(file.Accesses.Count, file.Summary.TotalAccesses);
        // And back: .NET writes the same content, and reads its own file to the same summary.
        string copy = Path.Combine(_dir, "copy.json");
        file.Write(copy);
        Assert.True(AccessStatsFile.Read(copy).Summary.SameAs(file.Summary));
    }
}
