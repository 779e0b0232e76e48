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
    public void A_chained_put_under_chain_placement_goes_to_its_roots_nodes_exactly_as_the_vectors()
    {
        var cases = File["chains"]!.AsArray();
        Assert.True(cases.Count >= 12);
        foreach (var c in cases)
        {
            var nodes = c!["nodes"]!.AsArray().Select(n => (string)n!).ToArray();
            var keys = c["keys"]!.AsArray().Select(k => Convert.FromHexString((string)k!)).ToArray();
            var root = c["root"] is { } r ? Convert.FromHexString((string)r!) : [];
            var expected = c["placement"]!.AsArray().Select(n => (string)n!).ToArray();
            var placedBy = Rendezvous.ChainPlacementKey(keys[0], root, continuesParent: c["parent"] is not null);
            var ranks = new int[(int)c["replicas"]!];
            Rendezvous.Rank(Rendezvous.Hash(placedBy.Span), nodes.Select(Rendezvous.NodeHash).ToArray(), nodes, ranks);
            Assert.Equal(expected, ranks.Select(i => nodes[i]).ToArray());
        }
    }

    [Fact]
    public void Chain_placement_of_a_continuation_without_its_root_is_refused_with_the_fix()
    {
        var ex = Assert.Throws<ArgumentException>(() => Rendezvous.ChainPlacementKey(new byte[] { 1 }, default, continuesParent: true));
        Assert.Contains("must name the chain's first key", ex.Message);
        var tooLong = Assert.Throws<ArgumentException>(() => Rendezvous.ChainPlacementKey(new byte[] { 1 }, new byte[513], continuesParent: true));
        Assert.Contains("1..512 bytes (got 513)", tooLong.Message);
        Assert.Equal(new byte[] { 7 }, Rendezvous.ChainPlacementKey(new byte[] { 1 }, new byte[] { 7 }, continuesParent: true).ToArray());
        Assert.Equal(new byte[] { 1 }, Rendezvous.ChainPlacementKey(new byte[] { 1 }, default, continuesParent: false).ToArray());
    }

    [Fact]
    public void Asking_for_more_replicas_than_nodes_is_refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => Rendezvous.Rank(1, [1, 2], ["a", "b"], new int[3]));
        Assert.Contains("3 nodes of 2", ex.Message);
    }
}
