using Kvasir.Net;
using Kvasir.Storage;

namespace Kvasir.Server.Tests;

/// <summary>
/// Which /dev/shm arenas a starting node may delete: only those whose liveness lock nobody holds. A node in
/// another PID namespace sharing /dev/shm is invisible in /proc, so the process id cannot tell; the lock can.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ShmLivenessTests
{
    /// <summary>A process id no process here has (above the kernel's pid_max of 4,194,304).</summary>
    private const int InvisiblePid = 4_999_999;

    private static string FakeArena(string tag)
    {
        string path = Path.Combine(ShmFiles.Directory, $"kvasir-{InvisiblePid}-{tag}.arena");
        File.WriteAllBytes(path, new byte[4096]);
        File.WriteAllBytes(path + ".token", new byte[16]);
        return path;
    }

    private static void Cleanup(string arena)
    {
        foreach (var suffix in new[] { "", ".token", ".lock" }) File.Delete(arena + suffix);
    }

    [Fact]
    public void An_arena_whose_lock_is_held_survives_a_sweep_though_its_pid_is_not_visible()
    {
        // Before the lock, a node removed every arena whose /proc/PID it could not see: this one.
        string arena = FakeArena(Convert.ToHexStringLower(Guid.NewGuid().ToByteArray()[..4]));
        try
        {
            using (ShmFiles.HoldLiveness(arena))   // a live node in another PID namespace
            {
                ShmFiles.RemoveStale();
                Assert.True(File.Exists(arena), "the sweep deleted a live node's arena");
                Assert.True(File.Exists(arena + ".token"));
            }
            // the node died (the kernel dropped its lock): the next sweep removes everything it left
            ShmFiles.RemoveStale();
            Assert.False(File.Exists(arena), "a dead node's arena was kept");
            Assert.False(File.Exists(arena + ".token"));
            Assert.False(File.Exists(arena + ".lock"));
        }
        finally { Cleanup(arena); }
    }

    [Fact]
    public async Task A_node_holds_its_arena_lock_for_its_life_and_a_second_node_leaves_its_arena_alone()
    {
        var options = new NodeOptions { Port = 0, SharedMemory = true, Store = new StoreOptions { Capacity = 8L << 20, MaxValueBytes = 1L << 20 } };
        await using var first = new CacheNode(options);
        string arena = first.Store.SharedMemoryPath!;
        Assert.True(File.Exists(arena + ".lock"));
        Assert.ThrowsAny<IOException>(() => new FileStream(arena + ".lock", FileMode.Open, FileAccess.ReadWrite, FileShare.None));

        await using (var second = new CacheNode(options))   // its start sweeps /dev/shm
        {
            Assert.True(File.Exists(arena), "a starting node deleted a live node's arena");
            Assert.NotEqual(arena, second.Store.SharedMemoryPath);
        }
        await first.StopAsync();
        Assert.False(File.Exists(arena));
        Assert.False(File.Exists(arena + ".lock"));
        Assert.False(File.Exists(arena + ".token"));
    }

    [Fact]
    public void The_rule_leaves_a_held_arena_removes_it_once_the_lock_is_free_and_then_finds_it_absent()
    {
        // The rule a client applies after letting go of its node's arena (ArenaFiles.TryRemoveIfDead), lock by lock.
        string arena = FakeArena(Convert.ToHexStringLower(Guid.NewGuid().ToByteArray()[..4]));
        try
        {
            var held = ArenaFiles.HoldLiveness(arena);
            Assert.Equal(ArenaOwner.Live, ArenaFiles.TryRemoveIfDead(arena));
            Assert.True(File.Exists(arena) && File.Exists(arena + ".token") && File.Exists(arena + ".lock"), "a live node's files were touched");
            held.Dispose();   // as the kernel does for a killed node: the lock goes, the files stay
            Assert.True(File.Exists(arena + ".lock"));
            Assert.Equal(ArenaOwner.Removed, ArenaFiles.TryRemoveIfDead(arena));
            Assert.False(File.Exists(arena) || File.Exists(arena + ".token") || File.Exists(arena + ".lock"), "a dead node's files were kept");
            Assert.Equal(ArenaOwner.Absent, ArenaFiles.TryRemoveIfDead(arena));
        }
        finally { Cleanup(arena); }
    }

    [Fact]
    public void The_rule_never_removes_an_arena_without_a_lock_file()
    {
        // A node of a version before the lock: the rule cannot tell it from a dead one, so it leaves it (only a starting
        // node's sweep removes such an arena, when its process id is not visible).
        string arena = FakeArena(Convert.ToHexStringLower(Guid.NewGuid().ToByteArray()[..4]));
        try
        {
            Assert.Equal(ArenaOwner.Absent, ArenaFiles.TryRemoveIfDead(arena));
            Assert.True(File.Exists(arena) && File.Exists(arena + ".token"));
        }
        finally { Cleanup(arena); }
    }

    [Fact]
    public void The_lock_file_gets_its_name_already_locked_never_replaces_one_and_leaves_no_temporary_file()
    {
        string arena = FakeArena(Convert.ToHexStringLower(Guid.NewGuid().ToByteArray()[..4]));
        try
        {
            using var held = ArenaFiles.HoldLiveness(arena);
            Assert.ThrowsAny<IOException>(() => new FileStream(arena + ".lock", FileMode.Open, FileAccess.Read, FileShare.None));
            Assert.ThrowsAny<IOException>(() => ArenaFiles.HoldLiveness(arena));   // the name is taken: never replaced
            Assert.Equal([arena + ".lock"], Directory.GetFiles(ShmFiles.Directory, Path.GetFileName(arena) + ".lock*"));
            ArenaFiles.ReleaseLiveness(held, arena);
            Assert.False(File.Exists(arena + ".lock"));
        }
        finally { Cleanup(arena); }
    }
}
