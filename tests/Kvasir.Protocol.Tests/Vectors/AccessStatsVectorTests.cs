using System.Text;
using System.Text.Json.Nodes;
using Kvasir.Protocol.Stats;

namespace Kvasir.Protocol.Tests.Vectors;

/// <summary>The access-statistics file (schema v1) against its golden vector, tests/vectors/access_stats.json.</summary>
public sealed class AccessStatsVectorTests
{
    private static byte[] VectorBytes() => File.ReadAllBytes(Path.Combine(VectorFile.RepoRoot(), "tests", "vectors", "access_stats.json"));

    [Fact]
    public void The_vector_parses_and_recomputes_to_its_stored_summary()
    {
        var doc = AccessStatsJson.Parse(VectorBytes());
        Assert.Equal("python", doc.Source);
        Assert.Equal(400, doc.Accesses.Count);
        var stored = Assert.IsType<AccessStatsSummary>(doc.StoredSummary);
        var computed = AccessStatsSummary.Compute(doc.Accesses);
        Assert.Null(computed.Difference(stored));
        Assert.Equal((400L, 297L, 103L, 30L), (computed.TotalAccesses, computed.Hits, computed.Misses, computed.UniqueBlocks));
        Assert.Equal(["engine", "dram", "disk", "shared"], computed.HitsByTier.Keys);
    }

    [Fact]
    public void Writing_the_vector_back_gives_the_same_content_and_summary_json()
    {
        var doc = AccessStatsJson.Parse(VectorBytes());
        var written = JsonNode.Parse(AccessStatsJson.ToUtf8Bytes(doc))!.AsObject();
        var original = JsonNode.Parse(VectorBytes())!.AsObject();
        original.Remove("x-note");   // unknown fields are read past, not kept
        Assert.True(JsonNode.DeepEquals(original, written), written.ToJsonString());
        var again = AccessStatsJson.Parse(AccessStatsJson.ToUtf8Bytes(doc));
        Assert.Equal(doc.Accesses, again.Accesses);
    }

    [Fact]
    public void Parsing_a_stream_equals_parsing_bytes()
    {
        var fromStream = AccessStatsJson.Parse(new MemoryStream(VectorBytes()));
        Assert.Equal(AccessStatsJson.Parse(VectorBytes()).Accesses, fromStream.Accesses);
    }

    [Theory]
    [InlineData("not json", "not JSON")]
    [InlineData("[]", "the top level is not an object")]
    [InlineData("""{"schema":"other","version":1}""", "schema is 'other', not 'kvasir-access-stats'")]
    [InlineData("""{"schema":"kvasir-access-stats"}""", "\"version\" is missing")]
    [InlineData("""{"schema":"kvasir-access-stats","version":2,"accesses":[]}""", "version 2 is newer than this reader")]
    [InlineData("""{"schema":"kvasir-access-stats","version":1,"start_unix_ms":0,"end_unix_ms":0}""", "\"accesses\" is missing")]
    [InlineData("""{"schema":"kvasir-access-stats","version":1,"end_unix_ms":0,"accesses":[]}""", "\"start_unix_ms\" is missing")]
    [InlineData("""{"schema":"kvasir-access-stats","version":1,"start_unix_ms":0,"end_unix_ms":0,"accesses":[{"t":0,"hit":true}]}""", "accesses[0]: \"block\" is missing")]
    [InlineData("""{"schema":"kvasir-access-stats","version":1,"start_unix_ms":0,"end_unix_ms":0,"accesses":[{"t":0,"block":"a","hit":true,"tier":"gpu"}]}""", "accesses[0]: tier 'gpu'")]
    [InlineData("""{"schema":"kvasir-access-stats","version":1,"start_unix_ms":0,"end_unix_ms":0,"accesses":[{"t":5,"block":"a","hit":true},{"t":1,"block":"b","hit":false}]}""", "accesses[1]: t 1 is earlier")]
    [InlineData("""{"schema":"kvasir-access-stats","version":1,"start_unix_ms":0,"end_unix_ms":0,"accesses":[],"summary":{"hits":1}}""", "summary: \"reuse_distance\" is missing")]
    public void A_bad_file_is_one_AccessStatsFormatException_with_a_one_line_reason(string json, string expected)
    {
        var e = Assert.Throws<AccessStatsFormatException>(() => AccessStatsJson.Parse(Encoding.UTF8.GetBytes(json)));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Hits_by_tier_count_hits_only_in_schema_order_and_percentiles_are_nearest_rank()
    {
        AccessRecord[] accesses =
        [
            new(0, "a", false, "disk"), new(1, "b", true, "shared"), new(2, "a", true, "dram"), new(3, "b", true, "engine"),
        ];
        var s = AccessStatsSummary.Compute(accesses);
        Assert.Equal([("engine", 1L), ("dram", 1L), ("shared", 1L)], s.HitsByTier.Select(p => (p.Key, p.Value)));
        Assert.Equal([-1, -1, 1, 1], AccessStatsSummary.ReuseDistances(accesses));
        Assert.Equal(new ReuseDistanceSummary(2, 1, 1, 1), s.ReuseDistance);
        Assert.Equal(new ReuseDistanceSummary(0, null, null, null), AccessStatsSummary.Compute([]).ReuseDistance);
    }
}
