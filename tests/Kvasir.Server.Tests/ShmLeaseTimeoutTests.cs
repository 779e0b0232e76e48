using Kvasir.Storage;

namespace Kvasir.Server.Tests;

/// <summary>
/// Shared-memory clients copy without asking when their copy ends within 1 s of LEASE or ALLOC
/// (docs/protocol.md § Ownership and timeouts), so a node with a shared-memory arena must never expire
/// a lease or reservation sooner.
/// </summary>
public sealed class ShmLeaseTimeoutTests
{
    private static NodeOptions Options(bool shm, TimeSpan leaseTimeout) => new()
    {
        Port = 0,
        Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20, LeaseTimeout = leaseTimeout },
        SharedMemory = shm,
    };

    [Fact]
    public void A_node_with_a_shared_memory_arena_refuses_a_lease_timeout_below_1_s_saying_why()
    {
        Assert.True(OperatingSystem.IsLinux(), "the shared-memory arena exists on Linux only");
        var ex = Assert.Throws<ArgumentException>(() => new CacheNode(Options(shm: true, TimeSpan.FromMilliseconds(999))));
        Assert.Contains("LeaseTimeout 999 ms is below 1 s", ex.Message);
        Assert.Contains("clients of the shared-memory arena rely on holding a lease or reservation for at least 1 s", ex.Message);
    }

    [Fact]
    public async Task A_node_with_a_shared_memory_arena_accepts_exactly_1_s()
    {
        await using var node = new CacheNode(Options(shm: true, TimeSpan.FromSeconds(1)));
        Assert.NotNull(node.ShmToken);
        node.Start();
    }

    [Fact]
    public async Task A_node_without_shared_memory_still_accepts_a_lease_timeout_below_1_s()
    {
        await using var node = new CacheNode(Options(shm: false, TimeSpan.FromMilliseconds(100)));
        Assert.Null(node.ShmToken);
        node.Start();
        Assert.True(node.IsServing);
    }
}
