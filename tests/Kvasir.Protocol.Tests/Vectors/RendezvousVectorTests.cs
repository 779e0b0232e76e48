using System.Text.Json.Nodes;
using Kvasir.Protocol;

namespace Kvasir.Protocol.Tests.Vectors;

/// <summary>tests/vectors/rendezvous.json (written by an independent generator) against <see cref="Rendezvous"/>.</summary>
public sealed class RendezvousVectorTests
{
    private static readonly JsonObject File = JsonNode.Parse(System.IO.File.ReadAllText(
        Path.Combine(VectorFile.RepoRoot(), "tests", "vectors", "rendezvous.json")))!.AsObject();

    [Fact]
    public void Hash_is_the_first_eight_bytes_of_sha256_little_endian()
    {
        var cases = File["hashes"]!.AsArray();
        Assert.NotEmpty(cases);
        foreach (var c in cases)
            Assert.Equal(ulong.Parse((string)c!["hash"]!), Rendezvous.Hash(Convert.FromHexString((string)c["data"]!)));
    }

    [Fact]
    public void Mix64_matches_the_splitmix64_finalizer_vectors()
    {
        foreach (var c in File["mix64"]!.AsArray())
            Assert.Equal(ulong.Parse((string)c!["out"]!), Rendezvous.Mix64(ulong.Parse((string)c["in"]!)));
    }

    [Fact]
    public void Every_placement_ranks_the_nodes_exactly_as_the_vectors()
    {
        var cases = File["placements"]!.AsArray();
        Assert.True(cases.Count >= 100);
        foreach (var c in cases)
        {
            var nodes = c!["nodes"]!.AsArray().Select(n => (string)n!).ToArray();
            var expected = c["ranking"]!.AsArray().Select(n => (string)n!).ToArray();
            var hashes = nodes.Select(Rendezvous.NodeHash).ToArray();
            ulong keyHash = Rendezvous.Hash(Convert.FromHexString((string)c["key"]!));
            // The full ranking, and every shorter prefix of it (replica counts 1..N).
            for (int r = 1; r <= nodes.Length; r++)
            {
                var ranks = new int[r];
                Rendezvous.Rank(keyHash, hashes, nodes, ranks);
                Assert.Equal(expected[..r], ranks.Select(i => nodes[i]).ToArray());
            }
        }
    }

    [Fact]
    public void Asking_for_more_replicas_than_nodes_is_refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => Rendezvous.Rank(1, [1, 2], ["a", "b"], new int[3]));
        Assert.Contains("3 nodes of 2", ex.Message);
    }
}
