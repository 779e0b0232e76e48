using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>/metrics and /v1/status of a node with a disk tier: a GET the disk served is a disk hit and a served hit, not a miss.</summary>
public sealed class TierMetricsTests
{
    private const int Mi = 1 << 20;

    /// <summary>A node with a 16 MiB arena and admin HTTP on a free port, over <paramref name="tiers"/>.</summary>
    private static TestNode StartNode(TierOptions tiers) => TestNode.Start(new NodeOptions
    {
        Port = 0,
        AdminPort = 0,
        Store = new StoreOptions { Capacity = 16 * Mi, MaxValueBytes = 2 * Mi },
        Tiers = tiers,
    });

    private static Task<KvStore> ConnectAsync(TestNode node)
        => KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, Transport = KvTransportKind.Tcp });

    [Fact]
    public async Task A_disk_served_get_counts_as_a_disk_hit_in_metrics_and_status_not_as_a_miss()
    {
        using var dir = new TempDir();
        await using var node = StartNode(new TierOptions { DiskPath = dir.Path, DiskCapacity = 256L * Mi });
        await using var store = await ConnectAsync(node);
        var keys = Enumerable.Range(0, 48).Select(i => $"m/{i}").ToArray();   // 48 MiB through a 16 MiB arena: the first ones leave DRAM
        foreach (var k in keys)
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key(k)], [TestValues.For(k, Mi)]))[0]);
        string cold = keys.First(k => !node.Store.InDram(TestValues.Key(k)));
        string hot = keys.Last();
        Assert.True(node.Store.InDram(TestValues.Key(hot)), "the newest value is in DRAM");

        Assert.Equal(TestValues.For(cold, Mi), await store.GetAsync(TestValues.Key(cold)));   // served by the disk
        Assert.Equal(TestValues.For(hot, Mi), await store.GetAsync(TestValues.Key(hot)));     // served by DRAM
        Assert.Null(await store.GetAsync(TestValues.Key("m/never-put")));                     // no tier has it

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{node.Node.AdminPort}"), Timeout = TimeSpan.FromSeconds(10) };
        var metrics = await http.GetStringAsync("/metrics");
        Assert.Equal(1, Sample(metrics, "kvasir_tier_hits_total", """tier="disk" """));
        Assert.Equal(1, Sample(metrics, "kvasir_tier_hits_total", """tier="dram" """));
        Assert.Equal(2, Sample(metrics, "kvasir_tier_misses_total", """tier="dram" """));   // the cold key and the absent one
        Assert.Equal(1, Sample(metrics, "kvasir_tier_misses_total", """tier="disk" """));   // the absent one
        Assert.Equal(2, Sample(metrics, "kvasir_hits_total", ""));
        Assert.Equal(1, Sample(metrics, "kvasir_misses_total", ""));
        Assert.Equal(0, Sample(metrics, "kvasir_tier_errors_total", """kind="write",tier="disk" """));
        Assert.Equal(48.0 * Mi, Sample(metrics, "kvasir_value_received_bytes_total", """op="put",transport="tcp" """));
        Assert.Equal(2.0 * Mi, Sample(metrics, "kvasir_value_sent_bytes_total", """op="get",transport="tcp" """));
        Assert.Matches(new Regex("""^kvasir_build_info\{runtime="[^"]+",version="[^"]+"\} 1$""", RegexOptions.Multiline), metrics);

        using var status = JsonDocument.Parse(await http.GetStringAsync("/v1/status"));
        var s = status.RootElement;
        Assert.Equal(1, s.GetProperty("tiers").GetProperty("disk").GetProperty("hits").GetInt64());
        Assert.Equal(1, s.GetProperty("tiers").GetProperty("dram").GetProperty("hits").GetInt64());
        Assert.Equal(2, s.GetProperty("hits").GetInt64());
        Assert.Equal(1, s.GetProperty("misses").GetInt64());
        Assert.Equal(2.0 / 3, s.GetProperty("served_hit_ratio").GetDouble(), 6);
        Assert.Equal(1.0 / 3, s.GetProperty("dram_hit_ratio").GetDouble(), 6);
    }

    [Fact]
    public async Task The_shared_tier_appears_in_memory_by_tier_with_its_files_bytes_and_filesystem_capacity()
    {
        using var dir = new TempDir();
        await using var node = StartNode(new TierOptions { SharedFsPath = dir.Path, SharedUsageInterval = TimeSpan.FromMilliseconds(100) });
        await using var store = await ConnectAsync(node);
        var keys = new[] { "sh/0", "sh/1", "sh/2" };
        foreach (var k in keys)
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key(k)], [TestValues.For(k, Mi)]))[0]);
        Assert.True(node.Store.DrainShared(TimeSpan.FromSeconds(30)), "the shared writes to finish");
        long expected = Directory.EnumerateFiles(dir.Path, "*.kv", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.True(expected > 3L * Mi, $"three files of 1 MiB values under the shared path (found {expected} bytes)");

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{node.Node.AdminPort}"), Timeout = TimeSpan.FromSeconds(10) };
        string metrics = "";
        await Poll.UntilAsync(async () =>
        {
            metrics = await http.GetStringAsync("/metrics");
            return metrics.Contains("kvasir_tier_used_bytes{tier=\"shared\"} " + expected.ToString(CultureInfo.InvariantCulture) + "\n", StringComparison.Ordinal);
        }, () => $"a walk of the shared tree to report {expected} bytes; /metrics has: "
            + string.Join(" | ", metrics.Split('\n').Where(l => l.StartsWith("kvasir_tier_used_bytes", StringComparison.Ordinal))), TimeSpan.FromSeconds(30));
        Assert.Equal(3, Sample(metrics, "kvasir_tier_keys", """tier="shared" """));
        Assert.True(Sample(metrics, "kvasir_tier_capacity_bytes", """tier="shared" """) >= expected, "the shared filesystem's size");

        using var status = JsonDocument.Parse(await http.GetStringAsync("/v1/status"));
        var shared = status.RootElement.GetProperty("tiers").GetProperty("shared_fs");
        Assert.Equal(expected, shared.GetProperty("used_bytes").GetInt64());
        Assert.Equal(3, shared.GetProperty("keys").GetInt64());
        Assert.True(shared.GetProperty("capacity_bytes").GetInt64() >= expected);
    }

    /// <summary>The value of one sample: <paramref name="labels"/> is the exact label text (sorted, as the exporter writes it), "" for none.</summary>
    private static double Sample(string metrics, string name, string labels)
    {
        var pattern = "^" + Regex.Escape(name) + (labels.Trim().Length == 0 ? "" : Regex.Escape("{" + labels.Trim() + "}")) + " (\\S+)$";
        var m = Regex.Match(metrics, pattern, RegexOptions.Multiline);
        Assert.True(m.Success, $"/metrics has no sample {name}{{{labels.Trim()}}}");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
