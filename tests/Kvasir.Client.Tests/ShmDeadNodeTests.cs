using System.Runtime.InteropServices;
using Kvasir.Cli.Tests;
using static Kvasir.Client.Tests.NodeHarness;
using CliRunner = Kvasir.Cli.Tests.Cli;

namespace Kvasir.Client.Tests;

/// <summary>
/// A node killed with SIGKILL (or by the OOM killer) runs no cleanup: its arena file stays in /dev/shm, and deleting
/// the file frees nothing while a client still maps it. The client that finds its node gone lets go of the mapping and
/// removes the dead node's files; a node that is only slow keeps its arena and its clients' mappings
/// (docs/operations.md § Shared-memory arena files). The node runs as a real process so that it can be killed.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class ShmDeadNodeTests
{
    private const int SigCont = 18, SigStop = 19;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int sig);

    private static void Signal(ServeProcess node, int sig)
    {
        if (SysKill(node.Process.Id, sig) != 0) throw new InvalidOperationException($"kill({node.Process.Id}, {sig}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    private static string ArenaOf(ServeProcess node)
    {
        var mine = Directory.GetFiles("/dev/shm", $"kvasir-{node.Process.Id}-*.arena");
        Assert.True(mine.Length == 1, $"node {node.Process.Id} has one arena file: [{string.Join(", ", mine)}]");
        return mine[0];
    }

    private static string[] FilesOf(string arena) => new[] { arena, arena + ".token", arena + ".lock" }.Where(File.Exists).ToArray();

    /// <summary>Whether this process maps <paramref name="arena"/> (a deleted file shows as "PATH (deleted)").</summary>
    private static bool Mapped(string arena) => File.ReadLines("/proc/self/maps").Any(l => l.Contains(arena, StringComparison.Ordinal));

    private static string Summary(List<KvStatus> seen) => string.Join(", ", seen.GroupBy(s => s).Select(g => $"{g.Key} ×{g.Count()}"));

    /// <summary>A failed test must not leave its node's arena in /dev/shm (tmpfs: memory).</summary>
    private static void RemoveLeftovers(string arena)
    {
        foreach (var f in FilesOf(arena)) File.Delete(f);
    }

    private static async Task<KvStatus> GetStatusAsync(KvStore store, string key)
    {
        var results = await store.GetAsync([Key(key)], [new byte[1 << 17]]);
        return results[0].Status;
    }

    [Fact]
    public async Task A_client_that_finds_its_node_killed_unmaps_the_arena_and_removes_the_dead_nodes_files()
    {
        await using var node = await ServeProcess.StartAsync("--port", "0", "--memory", "32MiB", "--shm", "on");
        string arena = ArenaOf(node);
        try
        {
            await KilledNodeAsync(node, arena);
        }
        finally
        {
            RemoveLeftovers(arena);
        }
    }

    private static async Task KilledNodeAsync(ServeProcess node, string arena)
    {
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions
        {
            Server = node.Server,
            Transport = KvTransportKind.Shm,
            ConnectTimeout = TimeSpan.FromSeconds(2),
            RequestTimeout = TimeSpan.FromSeconds(5),
        });
        Assert.Equal([KvStatus.Ok], await store.PutAsync([Key("a")], [TestValues.Value(1, 70_000)]));
        Assert.Equal(KvStatus.Ok, await GetStatusAsync(store, "a"));
        Assert.True(Mapped(arena), "the client maps the node's arena");

        node.Process.Kill();   // SIGKILL: the node runs nothing, its files stay
        Assert.True(await node.WaitForExitAsync(TimeSpan.FromSeconds(10)), "the killed node to exit");
        Assert.Equal(3, FilesOf(arena).Length);

        // Each request fails (the connection broke, then no reconnect); the first that finds the node unreachable lets go.
        var seen = new List<KvStatus>();
        await Poll.UntilAsync(async () =>
        {
            seen.Add(await GetStatusAsync(store, "a"));
            return FilesOf(arena).Length == 0 && !Mapped(arena);
        }, () => $"the client to unmap the killed node's arena and remove its files (left: [{string.Join(", ", FilesOf(arena))}], " +
                 $"mapped: {Mapped(arena)}, gets: {Summary(seen)})", TimeSpan.FromSeconds(20));
        Assert.DoesNotContain(KvStatus.Ok, seen);
    }

    [Fact]
    public async Task A_client_whose_node_is_only_stopped_keeps_its_arena_and_reads_through_it_again_once_it_resumes()
    {
        // SIGSTOP: the node holds its arena's lock but answers nothing, so requests time out and reconnects fail, as
        // with a node that is merely slow. Its files must stay, and the client's mapping with them.
        await using var node = await ServeProcess.StartAsync("--port", "0", "--memory", "32MiB", "--shm", "on");
        string arena = ArenaOf(node);
        try
        {
            await StoppedNodeAsync(node, arena);
            CliRunner.SendSigterm(node.Process);   // a clean stop removes its files (disposing the process would SIGKILL it)
            Assert.True(await node.WaitForExitAsync(TimeSpan.FromSeconds(15)), "the resumed node to stop at SIGTERM");
            Assert.Empty(FilesOf(arena));
        }
        finally
        {
            if (!node.Process.HasExited) SysKill(node.Process.Id, SigCont);   // a failed test still ends it with SIGKILL on dispose
            RemoveLeftovers(arena);
        }
    }

    private static async Task StoppedNodeAsync(ServeProcess node, string arena)
    {
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions
        {
            Server = node.Server,
            Transport = KvTransportKind.Shm,
            ConnectTimeout = TimeSpan.FromSeconds(1),
            RequestTimeout = TimeSpan.FromSeconds(1),
        });
        Assert.Equal([KvStatus.Ok], await store.PutAsync([Key("a")], [TestValues.Value(2, 70_000)]));
        Signal(node, SigStop);
        try
        {
            // Timeout (the request), then Unavailable (the reconnect's handshake timed out): the node looks unreachable.
            var seen = new List<KvStatus>();
            await Poll.UntilAsync(async () =>
            {
                seen.Add(await GetStatusAsync(store, "a"));
                return seen[^1] == KvStatus.Unavailable;
            }, () => $"a get that finds the stopped node unreachable (gets: {Summary(seen)})", TimeSpan.FromSeconds(30));
            Assert.Equal(3, FilesOf(arena).Length);
            Assert.True(Mapped(arena), "the client unmapped a live node's arena");
        }
        finally
        {
            Signal(node, SigCont);
        }
        await Poll.UntilAsync(async () => await GetStatusAsync(store, "a") == KvStatus.Ok, "a get through the resumed node", TimeSpan.FromSeconds(20));
        Assert.Equal(TestValues.Value(2, 70_000), await store.GetAsync(Key("a")));
        Assert.Equal(KvTransportKind.Shm, store.Transport);
        Assert.Equal(3, FilesOf(arena).Length);
    }
}
