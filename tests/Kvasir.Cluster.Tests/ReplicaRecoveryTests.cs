using System.Globalization;
using Kvasir.Cli.Tests;
using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// A replica that comes back is used again at once (bench/chaos.py --seed 8's stale reads): the first put after a node
/// restarted at its address reaches it, and steady traffic does not keep a node that failed once out of use.
/// </summary>
public sealed class ReplicaRecoveryTests
{
    private const int Size = ReplicaVersionTests.Size;
    private static readonly string[] Memory = ["--memory", "64MiB", .. ReplicaVersionTests.Quiet];

    [Fact]
    public async Task A_replica_restarted_at_its_address_gets_the_next_put_and_a_read_without_the_other_replica_is_not_stale()
    {
        var disk = Directory.CreateTempSubdirectory("kvasir-restart-");
        string[] diskFlags = ["--disk", disk.FullName, "--disk-capacity", "64MiB", .. Memory];
        var a = await ServeProcess.StartAsync(["--port", "0", .. diskFlags]);
        var b = await ServeProcess.StartAsync(["--port", "0", .. Memory]);
        const string key = "restart/1";
        try
        {
            await using var store = await ReplicaVersionTests.ConnectAsync(a, b, versions: true);
            await ReplicaVersionTests.PutAllAsync(store, [key], version: 1);   // both replicas connected and holding version 1
            int aPort = a.Port;
            await a.DisposeAsync();   // SIGKILL, then back at its address with version 1 from its disk; no request between
            a = await ServeProcess.StartAsync(["--port", aPort.ToString(CultureInfo.InvariantCulture), .. diskFlags]);
            await ReplicaVersionTests.PutAllAsync(store, [key], version: 2);
            Assert.True(await DirectAsync(a, key) is { } onA && onA.AsSpan().SequenceEqual(TestValues.For(key, Size, 2)),
                "the restarted replica missed the first put after its restart");
            await b.DisposeAsync();
            var got = await ReplicaVersionTests.ReadAsync(store, key);
            Assert.True(got is not null, "no replica answered");
            Assert.True(got.AsSpan().SequenceEqual(TestValues.For(key, Size, 2)),
                got.AsSpan().SequenceEqual(TestValues.For(key, Size, 1)) ? "STALE (version 1)" : "WRONG BYTES");
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            disk.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_replica_that_came_back_is_used_again_while_requests_keep_coming()
    {
        var a = await ServeProcess.StartAsync(["--port", "0", .. Memory]);
        var b = await ServeProcess.StartAsync(["--port", "0", .. Memory]);
        const string key = "backoff/1";
        Task<ServeProcess>? restart = null;
        try
        {
            await using var store = await ReplicaVersionTests.ConnectAsync(a, b, versions: true);
            await ReplicaVersionTests.PutAllAsync(store, [key], version: 1);
            int aPort = a.Port;
            await a.DisposeAsync();
            // Restarted at its address while puts keep coming, one every few milliseconds (steadier than any backoff).
            restart = Task.Run(() => ServeProcess.StartAsync(["--port", aPort.ToString(CultureInfo.InvariantCulture), .. Memory]));
            int version = 2;
            async Task PutsAsync()
            {
                for (int i = 0; i < 20; i++) await ReplicaVersionTests.PutAllAsync(store, [key], version);
                version++;
            }
            while (!restart.IsCompleted) await PutsAsync();
            var back = await restart;
            // Once it serves, its backoff (at most 4 s) is all that may keep it out of the puts.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (await DirectAsync(back, key) is null)
            {
                Assert.True(DateTime.UtcNow < deadline, "a node back at its address got no put in 15 s of steady puts after it served again");
                await PutsAsync();
            }
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            if (restart is not null)
            {
                await Task.WhenAny(restart, Task.Delay(TimeSpan.FromSeconds(60)));   // its start is bounded (20 s) in StartAsync
                if (restart.IsCompletedSuccessfully) await (await restart).DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_read_repair_copy_keeps_the_winners_time_to_live()
    {
        var a = await ServeProcess.StartAsync(["--port", "0", .. Memory]);
        var b = await ServeProcess.StartAsync(["--port", "0", .. Memory]);
        try
        {
            await using var store = await ReplicaVersionTests.ConnectAsync(a, b, versions: true);
            var shortLived = TestValues.KeyMemory("ttl/short");
            var forever = TestValues.KeyMemory("ttl/never");
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([shortLived], [TestValues.For("ttl/short", Size, 1)], new PutOptions { Ttl = TimeSpan.FromSeconds(60) }))[0]);
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([forever], [TestValues.For("ttl/never", Size, 1)]))[0]);
            await using (var onA = await KvStore.ConnectAsync(new KvStoreOptions { Server = a.Server }))   // each key now lives on b alone
                Assert.All(await onA.RemoveAsync([shortLived, forever]), s => Assert.Equal(KvStatus.Ok, s));
            Assert.NotNull(await ReplicaVersionTests.ReadAsync(store, "ttl/short"));
            Assert.NotNull(await ReplicaVersionTests.ReadAsync(store, "ttl/never"));
            Assert.Equal(2, store.ReadRepairs);
            await using var check = await KvStore.ConnectAsync(new KvStoreOptions { Server = a.Server });
            var infos = await check.InfoAsync([shortLived, forever]);
            Assert.True(infos[0].Status == KvStatus.Ok && infos[0].Ttl is { } ttl && ttl > TimeSpan.Zero && ttl <= TimeSpan.FromSeconds(60),
                $"the repaired copy's TTL is {infos[0].Ttl?.ToString() ?? "none"}, the value's at most 60 s");
            Assert.True(infos[1].Status == KvStatus.Ok && infos[1].Ttl is null, $"a value without a TTL was repaired with one ({infos[1].Ttl})");
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
    }

    private static async Task<byte[]?> DirectAsync(ServeProcess node, string key)
    {
        await using var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Server, ConnectTimeout = TimeSpan.FromSeconds(2) });
        return await direct.GetAsync(TestValues.KeyMemory(key));
    }
}
