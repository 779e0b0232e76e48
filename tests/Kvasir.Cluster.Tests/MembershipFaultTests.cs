using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// Membership under faults that are not a lost Redis: two live nodes misconfigured with one id, a registry whose
/// contents are damaged, a registry call that fails in a way nobody expected. The loops that follow membership must
/// say so and keep going, never stop for good.
/// </summary>
public sealed class MembershipFaultTests
{
    private static NodeOptions NodeWithId(ClusterHarness cluster, string id) => new()
    {
        Port = 0,
        NodeId = id,
        Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 },
        // Long: the test drives the heartbeats itself (BeatAsync); the background ones (every 15 s) change nothing it checks.
        Cluster = new ClusterJoinOptions { RedisUrl = cluster.Redis.Url, Name = cluster.Name, HeartbeatTtl = TimeSpan.FromSeconds(60) },
    };

    [Fact]
    public async Task Two_live_nodes_with_one_id_keep_the_epoch_still_and_the_older_one_reports_the_conflict()
    {
        // Each heartbeat found the other node's record under the id and bumped the epoch: every client re-read the
        // membership, and routed the id's keys to whichever node beat last.
        await using var cluster = await ClusterHarness.StartAsync(0);
        await using var registry = await cluster.RegistryAsync();
        await using var older = new CacheNode(NodeWithId(cluster, "dup"));
        older.Start();
        await Poll.UntilAsync(() => older.Registration?.State == RegistrationState.Registered, "the first node's registration");
        await Poll.UntilAsync(() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() > older.StartedAt.ToUnixTimeMilliseconds(), "a later start (started_ms)");
        await using var newer = new CacheNode(NodeWithId(cluster, "dup"));
        newer.Start();
        await Poll.UntilAsync(() => newer.Registration?.State == RegistrationState.Registered, "the second node's registration");
        await older.Registration!.BeatAsync();

        long before = (await registry.PollAsync()).Epoch;
        for (int i = 0; i < 4; i++)
        {
            await older.Registration!.BeatAsync();
            await newer.Registration!.BeatAsync();
        }
        long after = (await registry.PollAsync()).Epoch;
        Assert.True(before == after, $"the epoch went {before} -> {after} over 8 heartbeats of two nodes sharing id 'dup'");

        Assert.Equal(newer.DataAddress, Assert.Single((await registry.ReadAsync()).Nodes).Address);   // the newer start keeps the id
        var problem = older.Problems().SingleOrDefault(p => p.Reason.Contains("dup", StringComparison.Ordinal));
        Assert.True(problem.Reason is not null, $"the older node reports no id conflict; its problems: [{string.Join("; ", older.Problems())}]");
        Assert.Contains(newer.DataAddress, problem.Reason, StringComparison.Ordinal);
        Assert.Equal("node_id", problem.Component);
        Assert.True(older.Registration!.IdConflict);
        Assert.Empty(newer.Problems());
    }
}
