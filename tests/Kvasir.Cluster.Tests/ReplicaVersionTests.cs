using Kvasir.Cli.Tests;
using Kvasir.Client;
using Kvasir.Protocol;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// Versioned replicas and read repair (docs/cluster.md § Versions): a replica that missed an overwrite and comes back
/// with its old copy (a warm restart from its disk tier) ranks first for the key, yet readers get the newest copy and the
/// stale replica is repaired.
/// </summary>
public sealed class ReplicaVersionTests
{
    internal const int Size = 3000;
    internal static readonly string[] Quiet = ["--log-level", "warning", "--admin-port", "off"];

    [Fact]
    public async Task A_replica_that_missed_an_overwrite_and_came_back_from_disk_never_serves_the_old_value_and_is_repaired()
    {
        var disk = Directory.CreateTempSubdirectory("kvasir-stale-");
        string[] diskFlags = ["--memory", "64MiB", "--disk", disk.FullName, "--disk-capacity", "64MiB", .. Quiet];
        var a = await ServeProcess.StartAsync(["--port", "0", .. diskFlags]);
        var b = await ServeProcess.StartAsync(["--port", "0", "--memory", "64MiB", .. Quiet]);
        try
        {
            // Keys that rank a first: the ones a rank-order reader asks a about first.
            var keys = Enumerable.Range(0, 400).Select(i => $"mutable/{i}").Where(k => RanksFirst(k, a.Server, b.Server)).Take(30).ToArray();
            Assert.True(keys.Length == 30, $"only {keys.Length} of 400 keys rank {a.Server} first");
            int aPort = a.Port;
            await using (var writer = await ConnectAsync(a, b, versions: true))
            {
                await PutAllAsync(writer, keys, version: 1);
                await a.DisposeAsync();   // SIGKILL: a keeps version 1 on its disk
                await PutAllAsync(writer, keys, version: 2);   // acknowledged by b alone
            }
            a = await ServeProcess.StartAsync(["--port", aPort.ToString(System.Globalization.CultureInfo.InvariantCulture), .. diskFlags]);

            // Today's reader (rank order, first hit wins) gets a's old copy: the stale read this feature removes.
            await using (var rankOrder = await ConnectAsync(a, b, versions: false))
            {
                var stale = new List<string>();
                foreach (var k in keys)
                    if (await ReadAsync(rankOrder, k) is { } value && value.AsSpan().SequenceEqual(TestValues.For(k, Size, 1))) stale.Add(k);
                Assert.True(stale.Count > 0, "no key read stale without versions: the scenario did not reproduce");
            }

            await using (var reader = await ConnectAsync(a, b, versions: true))
            {
                foreach (var k in keys)
                {
                    var value = await ReadAsync(reader, k);
                    Assert.True(value is not null, $"{k}: no replica answered");
                    Assert.True(value.AsSpan().SequenceEqual(TestValues.For(k, Size, 2)),
                        value.AsSpan().SequenceEqual(TestValues.For(k, Size, 1)) ? $"{k}: STALE (version 1)" : $"{k}: WRONG BYTES");
                }
                Assert.True(reader.ReadRepairs > 0, "no replica was repaired");
            }

            // Read repair wrote version 2 back to a: a alone now serves it.
            await using var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = a.Server, ConnectTimeout = TimeSpan.FromSeconds(2) });
            var notRepaired = new List<string>();
            foreach (var k in keys)
                if (await direct.GetAsync(TestValues.KeyMemory(k)) is not { } v || !v.AsSpan().SequenceEqual(TestValues.For(k, Size, 2))) notRepaired.Add(k);
            Assert.True(notRepaired.Count == 0, $"{notRepaired.Count} of {keys.Length} keys still old or missing on {a.Server}: {string.Join(", ", notRepaired.Take(5))}");
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            disk.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_replica_that_missed_a_write_gets_it_back_on_the_first_read()
    {
        var a = await ServeProcess.StartAsync(["--port", "0", "--memory", "64MiB", .. Quiet]);
        var b = await ServeProcess.StartAsync(["--port", "0", "--memory", "64MiB", .. Quiet]);
        try
        {
            var keys = Enumerable.Range(0, 20).Select(i => $"missed/{i}").ToArray();
            await using var store = await ConnectAsync(a, b, versions: true);
            await PutAllAsync(store, keys, version: 3);
            // Remove the copies on one node behind the cluster client's back: each key now lives on one replica.
            await using (var onA = await KvStore.ConnectAsync(new KvStoreOptions { Server = a.Server }))
                Assert.All(await onA.RemoveAsync(keys.Select(TestValues.KeyMemory).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
            foreach (var k in keys) Assert.True((await ReadAsync(store, k)).AsSpan().SequenceEqual(TestValues.For(k, Size, 3)), $"{k}: not read from b");
            Assert.Equal(keys.Length, store.ReadRepairs);
            await using var check = await KvStore.ConnectAsync(new KvStoreOptions { Server = a.Server });
            foreach (var k in keys)
                Assert.True(await check.GetAsync(TestValues.KeyMemory(k)) is { } v && v.AsSpan().SequenceEqual(TestValues.For(k, Size, 3)), $"{k}: not repaired on a");
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
    }

    private static bool RanksFirst(string key, string first, string other)
    {
        string[] ids = [first, other];
        Span<int> ranks = stackalloc int[1];
        Rendezvous.Rank(Rendezvous.Hash(TestValues.Key(key)), ids.Select(Rendezvous.NodeHash).ToArray(), ids, ranks);
        return ranks[0] == 0;
    }

    internal static Task<KvStore> ConnectAsync(ServeProcess a, ServeProcess b, bool versions) => KvStore.ConnectAsync(new KvStoreOptions
    {
        Server = $"{a.Server},{b.Server}",
        Replicas = 2,
        ReplicaVersions = versions,
        ConnectTimeout = TimeSpan.FromSeconds(2),
        RequestTimeout = TimeSpan.FromSeconds(10),
    });

    internal static async Task PutAllAsync(KvStore store, string[] keys, int version)
    {
        var statuses = await store.PutAsync(keys.Select(TestValues.KeyMemory).ToArray(), keys.Select(k => (ReadOnlyMemory<byte>)TestValues.For(k, Size, version)).ToArray());
        Assert.True(statuses.All(s => s == KvStatus.Ok), $"put of version {version}: {string.Join(",", statuses.Distinct())}");
    }

    /// <summary>The key's value; up to 3 tries 200 ms apart while no replica could answer (a restarted node's first request may die with its old connection).</summary>
    internal static async Task<byte[]?> ReadAsync(KvStore store, string key)
    {
        for (int attempt = 0; ; attempt++)
        {
            var dest = new Memory<byte>[] { new byte[Size] };
            var got = await store.GetAsync([TestValues.KeyMemory(key)], dest);
            if (got[0].Found) return dest[0][..(int)got[0].Length].ToArray();
            if (attempt == 2 || got[0].Status == KvStatus.NotFound) return null;
            await Task.Delay(200);
        }
    }
}
