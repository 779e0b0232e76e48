using System.Globalization;
using System.Text.RegularExpressions;
using Kvasir.Cli.Tests;
using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>A cluster client reaches the members on its host through their shared-memory arenas (docs/cluster.md).</summary>
public sealed partial class ClusterTransportTests
{
    [Fact]
    public async Task A_cluster_client_moves_the_values_of_members_on_this_host_through_their_arenas_not_their_sockets()
    {
        await using var cluster = await ClusterHarness.StartAsync(2);
        await using var client = await cluster.ClientAsync();
        await Poll.UntilAsync(() => client.Nodes.Count == 2, "the client to see 2 nodes");
        const int Count = 40, Size = 64 << 10;
        var keys = Enumerable.Range(0, Count).Select(i => TestValues.KeyMemory($"transport/{i}")).ToArray();
        var values = Enumerable.Range(0, Count).Select(i => (ReadOnlyMemory<byte>)TestValues.For($"transport/{i}", Size)).ToArray();
        var before = await Task.WhenAll(cluster.Nodes.Select(ValueBytesAsync));

        Assert.All(await client.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        for (int i = 0; i < Count; i++) Assert.Equal(values[i].ToArray(), await client.GetAsync(keys[i]));

        var after = await Task.WhenAll(cluster.Nodes.Select(ValueBytesAsync));
        var moved = after.Select((a, n) => a.ToDictionary(kv => kv.Key, kv => kv.Value - before[n][kv.Key])).ToArray();
        foreach (var d in moved)
        {
            Assert.True(d[("in", "shm")] > 0 && d[("out", "shm")] > 0, $"a node moved no value through its arena: {string.Join(", ", d)}");
            Assert.Equal(0, d[("in", "tcp")]);
            Assert.Equal(0, d[("out", "tcp")]);
        }
        Assert.Equal((double)Count * Size, moved.Sum(d => d[("in", "shm")]));
        Assert.Equal((double)Count * Size, moved.Sum(d => d[("out", "shm")]));
    }

    /// <summary>The node's value bytes stored ("in") and served ("out") by transport, from its /metrics.</summary>
    private static async Task<Dictionary<(string, string), double>> ValueBytesAsync(ServeProcess node)
    {
        var admin = AdminPattern().Match(node.Stdout);
        Assert.True(admin.Success, $"the node named no admin address: {node.Stdout}");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var text = await http.GetStringAsync($"http://{admin.Groups[1].Value}/metrics");
        var got = new Dictionary<(string, string), double> { [("in", "tcp")] = 0, [("in", "shm")] = 0, [("out", "tcp")] = 0, [("out", "shm")] = 0 };
        foreach (Match m in SamplePattern().Matches(text))
        {
            var key = (m.Groups[1].Value == "received" ? "in" : "out", m.Groups[2].Value);
            if (got.ContainsKey(key)) got[key] += double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
        }
        return got;
    }

    [GeneratedRegex(@"admin on http://(\S+?)/")]
    private static partial Regex AdminPattern();

    [GeneratedRegex("""^kvasir_value_(received|sent)_bytes_total\{[^}]*transport="(\w+)"[^}]*\} (\S+)$""", RegexOptions.Multiline)]
    private static partial Regex SamplePattern();
}
