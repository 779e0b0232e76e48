using Kvasir.Client;
using Kvasir.Embedded;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// Versioned replicas (docs/cluster.md § Versions) where one replica is the embedded member, reached in-process: its
/// copies must carry versions like any other, or an older copy on the other replica outvotes the newest one.
/// </summary>
public sealed class EmbeddedVersionTests
{
    [Fact]
    public async Task An_overwrite_the_other_replica_refused_reads_back_new_from_the_embedded_member()
    {
        await using var cluster = await ClusterHarness.StartAsync(0);
        // The other replica takes values up to 64 KiB: it stores the first write and refuses the larger overwrite,
        // as a node out of memory would. The embedded member stores both.
        await using var remote = new CacheNode(new NodeOptions
        {
            Port = 0,
            NodeId = "remote",
            Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 64 << 10 },
            Cluster = new ClusterJoinOptions { RedisUrl = cluster.Redis.Url, Name = cluster.Name, HeartbeatTtl = TimeSpan.FromSeconds(10) },   // never lapses on a loaded machine mid-test
        });
        remote.Start();
        await cluster.WaitForLiveAsync(1);
        await using var store = await cluster.ClientAsync(replicas: 2, embedded: new EmbeddedNodeOptions { Capacity = 16L << 20, ClientId = "rank-0" });
        await Poll.UntilAsync(() => store.Nodes.Count == 2, "the store to see both members");

        var key = TestValues.KeyMemory("mutable");
        var first = TestValues.For("mutable", 4096, 1);
        var second = TestValues.For("mutable", 128 << 10, 2);
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([key], [first]))[0]);
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([key], [second]))[0]);   // Ok: the embedded member stored it

        var dest = new byte[256 << 10];
        var got = (await store.GetAsync([key], [dest]))[0];
        Assert.Equal(KvStatus.Ok, got.Status);
        Assert.True(got.Length == second.Length && dest.AsSpan(0, second.Length).SequenceEqual(second),
            got.Length == first.Length && dest.AsSpan(0, first.Length).SequenceEqual(first) ? "STALE: the first write came back" : $"wrong bytes ({got.Length})");
        Assert.Equal(second, await store.GetAsync(key));
    }
}
