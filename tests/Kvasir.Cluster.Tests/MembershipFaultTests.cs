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

        Assert.Equal(newer.DataAddress, Assert.Single((await registry.ReadAsync()).Nodes).Address);   // the later registration keeps the id
        var problem = older.Problems().SingleOrDefault(p => p.Reason.Contains("dup", StringComparison.Ordinal));
        Assert.True(problem.Reason is not null, $"the older node reports no id conflict; its problems: [{string.Join("; ", older.Problems())}]");
        Assert.Contains(newer.DataAddress, problem.Reason, StringComparison.Ordinal);
        Assert.Equal("node_id", problem.Component);
        Assert.True(older.Registration!.IdConflict);
        Assert.Empty(newer.Problems());
    }

    [Fact]
    public async Task Of_two_live_nodes_with_one_id_the_later_to_register_keeps_it_whatever_their_clocks_say()
    {
        // The first node's host clock is an hour ahead, so its started_ms is the later one: heartbeat.lua compared the
        // nodes' own start times and refused the node that registered second, leaving the id to the first one.
        await using var cluster = await ClusterHarness.StartAsync(0);
        var first = new NodeRecord { Id = "dup", Address = "127.0.0.1:7380", StartedMs = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds() };
        var second = new NodeRecord { Id = "dup", Address = "127.0.0.1:7390", StartedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
        var ttl = TimeSpan.FromSeconds(60);   // the test drives every heartbeat itself (BeatAsync); none lapses meanwhile
        await using var older = new NodeRegistrar(await cluster.RegistryAsync(), () => first, ttl);
        await using var newer = new NodeRegistrar(await cluster.RegistryAsync(), () => second, ttl);
        await using var registry = await cluster.RegistryAsync();

        await older.BeatAsync();
        Assert.Equal(RegistrationState.Registered, older.State);
        await newer.BeatAsync();
        Assert.True(newer.State == RegistrationState.Registered, $"the node that registered second was refused: {newer.Reason}");
        await older.BeatAsync();
        Assert.True(older.IdConflict, $"the displaced node reports no id conflict (state {older.State}: {older.Reason})");
        Assert.Contains(second.Address, older.Reason, StringComparison.Ordinal);
        await newer.BeatAsync();
        Assert.Equal(RegistrationState.Registered, newer.State);
        Assert.Equal(second.Address, Assert.Single((await registry.ReadAsync()).Nodes).Address);

        // Once the holder leaves, the displaced node's next heartbeat registers it again.
        await newer.StopAsync();
        await older.BeatAsync();
        Assert.True(older.State == RegistrationState.Registered && !older.IdConflict, $"the displaced node did not take the free id back: {older.Reason}");
        Assert.Equal(first.Address, Assert.Single((await registry.ReadAsync()).Nodes).Address);
    }

    [Fact]
    public async Task A_watcher_whose_poll_meets_a_damaged_registry_reports_it_and_follows_again_once_it_is_repaired()
    {
        // A non-number in the epoch key made the poll script answer an empty array: the loop threw, stopped for good,
        // and the client kept its view forever with LastError still null.
        await using var cluster = await ClusterHarness.StartAsync(0);
        await using var watcher = await MembershipWatcher.StartAsync(await cluster.RegistryAsync(), TimeSpan.FromMilliseconds(50), ownsRegistry: true);
        string epochKey = $"kvasir:{{{cluster.Name}}}:epoch";
        Assert.Equal("OK", await cluster.Redis.CommandAsync(["SET", epochKey, "not-a-number"]));
        await Poll.UntilAsync(() => watcher.LastError is not null, "the watcher to report the damaged registry");
        Assert.True(watcher.Failures > 0, $"not counted as a failure: {watcher.LastError}");

        Assert.Equal("OK", await cluster.Redis.CommandAsync(["SET", epochKey, "1000"]));
        await Poll.UntilAsync(() => watcher.Current.Epoch == 1000 && watcher.LastError is null,
            () => $"the watcher to follow the repaired registry (epoch {watcher.Current.Epoch}, error {watcher.LastError})");
    }

    [Fact]
    public Task A_heartbeat_loop_keeps_beating_after_an_unexpected_error_and_reports_it_meanwhile() =>
        HeartbeatsOutliveAsync((flaky, on) => flaky.Failing = on, "failing", registrar =>
        {
            Assert.Contains("injected", registrar.Reason, StringComparison.Ordinal);
            Assert.True(registrar.Failures > 0);
        });

    [Fact]
    public Task A_heartbeat_loop_outlives_a_cancellation_that_is_not_its_own_stop() =>
        // A registry call cancelled by something other than the registrar's stop (a timeout inside a client library)
        // escaped BeatAsync: the loop task ended faulted, nobody observed it, heartbeats stopped for good and the state
        // stayed Registered while the registration lapsed.
        HeartbeatsOutliveAsync((flaky, on) => flaky.Cancelled = on, "cancelled", _ => { });

    /// <summary>
    /// A registrar beating into a <see cref="FlakyRegistry"/>: once registered, the fault is switched on until the registrar
    /// reports <see cref="RegistrationState.Degraded"/> (then <paramref name="whileDegraded"/> checks it), then off, and the
    /// registrar must register and beat again.
    /// </summary>
    private static async Task HeartbeatsOutliveAsync(Action<FlakyRegistry, bool> fault, string what, Action<NodeRegistrar> whileDegraded)
    {
        await using var cluster = await ClusterHarness.StartAsync(0);
        var flaky = new FlakyRegistry(await cluster.RegistryAsync());
        var record = new NodeRecord { Id = "n1", Address = "127.0.0.1:7380", StartedMs = 1 };
        await using var registrar = new NodeRegistrar(flaky, () => record, TimeSpan.FromMilliseconds(400));
        registrar.Start();
        await Poll.UntilAsync(() => registrar.State == RegistrationState.Registered, "the first heartbeat");

        fault(flaky, true);
        await Poll.UntilAsync(() => registrar.State == RegistrationState.Degraded,
            () => $"the registrar to report the {what} heartbeat (state {registrar.State})");
        whileDegraded(registrar);

        fault(flaky, false);
        long beats = registrar.Heartbeats;
        await Poll.UntilAsync(() => registrar.State == RegistrationState.Registered && registrar.Heartbeats > beats + 1,
            () => $"the registrar to beat again (state {registrar.State}, {registrar.Heartbeats} heartbeats)");
    }

    /// <summary>
    /// The real registry, whose heartbeats throw an error no caller expects while <see cref="Failing"/> is set, or an
    /// <see cref="OperationCanceledException"/> of a token nobody here cancelled while <see cref="Cancelled"/> is.
    /// </summary>
    private sealed class FlakyRegistry(IClusterRegistry inner) : IClusterRegistry
    {
        public volatile bool Failing;
        public volatile bool Cancelled;
        public string ClusterName => inner.ClusterName;
        public bool IsConnected => inner.IsConnected;

        public Task<bool> HeartbeatAsync(NodeRecord record, TimeSpan ttl, bool renewal = false)
            => Failing ? throw new InvalidOperationException("injected heartbeat failure")
                : Cancelled ? throw new OperationCanceledException("injected cancellation")
                : inner.HeartbeatAsync(record, ttl, renewal);

        public Task UnregisterAsync(string nodeId, string? recordJson = null) => inner.UnregisterAsync(nodeId, recordJson);
        public Task<ClusterSnapshot> ReadAsync() => inner.ReadAsync();
        public Task<(long Epoch, int Live)> PollAsync() => inner.PollAsync();
        public Task<IReadOnlyList<MemberStatus>> ListAllAsync() => inner.ListAllAsync();
        public Task SubscribeAsync(Action onChange) => inner.SubscribeAsync(onChange);
        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
