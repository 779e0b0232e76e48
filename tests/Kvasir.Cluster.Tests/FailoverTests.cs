using System.Collections.Concurrent;
using System.Diagnostics;
using Kvasir.Cli.Tests;
using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>A node killed with SIGKILL while clients read and write: replicas keep every acknowledged value; without them, misses, never errors or wrong bytes.</summary>
public sealed class FailoverTests
{
    private const int ValueSize = 16 << 10;

    [Fact]
    public async Task With_two_replicas_killing_a_node_under_four_clients_loses_no_acknowledged_value_and_returns_no_wrong_byte()
    {
        // Writes are capped (4 clients x 150 rounds x 8 keys x 16 KiB x 2 replicas = 150 MiB) so that
        // the two survivors hold every copy without evicting: a miss here can only be a lost value.
        await using var cluster = await ClusterHarness.StartAsync(3, memory: "256MiB");
        var clients = new KvStore[4];
        for (int c = 0; c < clients.Length; c++) clients[c] = await cluster.ClientAsync(replicas: 2);
        try
        {
            var acknowledged = new ConcurrentDictionary<string, long>();   // key -> when acknowledged (Stopwatch ticks)
            var errors = new ConcurrentQueue<string>();
            long killedAt = long.MaxValue;
            var stop = new CancellationTokenSource();
            long readsAfterKill = 0, writesAfterKill = 0;

            async Task Run(int c)
            {
                var store = clients[c];
                var rng = new Random(c);
                for (int round = 0; !stop.IsCancellationRequested && round < 100_000; round++)
                {
                    // Write a batch of 8 new keys (first 150 rounds), then read back 8 keys acknowledged earlier (by any client).
                    await Task.Delay(15);
                    var keys = round < 150 ? Enumerable.Range(0, 8).Select(i => $"c{c}/r{round}/k{i}").ToArray() : [];
                    var statuses = await store.PutAsync(keys.Select(TestValues.KeyMemory).ToArray(), keys.Select(k => (ReadOnlyMemory<byte>)TestValues.For(k, ValueSize)).ToArray());
                    for (int i = 0; i < keys.Length; i++)
                    {
                        if (statuses[i] == KvStatus.Ok) acknowledged[keys[i]] = Stopwatch.GetTimestamp();
                        else errors.Enqueue($"put {keys[i]}: {statuses[i]}");
                    }
                    if (Stopwatch.GetTimestamp() > Volatile.Read(ref killedAt)) Interlocked.Add(ref writesAfterKill, keys.Length);
                    if (acknowledged.IsEmpty) continue;
                    var known = acknowledged.Keys.ToArray();
                    var sample = Enumerable.Range(0, 8).Select(_ => known[rng.Next(known.Length)]).ToArray();
                    var dest = sample.Select(_ => (Memory<byte>)new byte[ValueSize]).ToArray();
                    var results = await store.GetAsync(sample.Select(TestValues.KeyMemory).ToArray(), dest);
                    for (int i = 0; i < sample.Length; i++)
                    {
                        if (results[i].Status != KvStatus.Ok) errors.Enqueue($"get {sample[i]}: {results[i].Status}");
                        else if (!dest[i].Span.SequenceEqual(TestValues.For(sample[i], ValueSize))) errors.Enqueue($"get {sample[i]}: WRONG BYTES");
                    }
                    if (Stopwatch.GetTimestamp() > Volatile.Read(ref killedAt)) Interlocked.Add(ref readsAfterKill, sample.Length);
                }
            }

            var workers = Enumerable.Range(0, clients.Length).Select(c => Task.Run(() => Run(c))).ToArray();
            await Task.Delay(1500);
            var victim = cluster.Nodes[1];
            victim.Process.Kill();   // SIGKILL: no unregistration, connections reset
            Volatile.Write(ref killedAt, Stopwatch.GetTimestamp());
            await Task.Delay(ClusterHarness.HeartbeatTtl * 3);   // past the victim's heartbeat TTL: membership changes under load too
            stop.Cancel();
            await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60));

            Assert.True(errors.IsEmpty, $"{errors.Count} failures, first: {string.Join("; ", errors.Take(10))}");
            Assert.True(readsAfterKill > 0 && writesAfterKill > 0, $"clients did not carry on after the kill (reads {readsAfterKill}, writes {writesAfterKill})");
            await cluster.WaitForLiveAsync(2);

            // Every value acknowledged (before or after the kill) reads back exact from a fresh client.
            await using var fresh = await cluster.ClientAsync(replicas: 2);
            var all = acknowledged.Keys.ToArray();
            var buffers = all.Select(_ => (Memory<byte>)new byte[ValueSize]).ToArray();
            var final = await fresh.GetAsync(all.Select(TestValues.KeyMemory).ToArray(), buffers);
            for (int i = 0; i < all.Length; i++)
            {
                Assert.True(final[i].Status == KvStatus.Ok, $"{all[i]}: {final[i].Status}");
                Assert.True(buffers[i].Span.SequenceEqual(TestValues.For(all[i], ValueSize)), $"{all[i]}: wrong bytes");
            }
        }
        finally
        {
            foreach (var c in clients) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_value_on_one_live_replica_is_read_although_that_node_just_restarted_and_the_other_replica_misses()
    {
        // The write-once loss bench/chaos.py found: a PUT acknowledged by one replica alone (its partner was down) sits
        // on that node's disk; the node is killed and restarted. The node is still skipped for its backoff and the other
        // replica says "not found": the key read as a miss though a live replica had it. Such a key must ask the replicas
        // that could not answer once more. Over shared memory (a is on this host) the client also kept the old arena's
        // mapping for the restarted node's new connections and returned other keys' bytes.
        var disk = Directory.CreateTempSubdirectory("kvasir-one-replica-");
        // admin off: a node started again at its old port would otherwise need port + 1, which another process may hold by then
        string[] diskFlags = ["--memory", "64MiB", "--disk", disk.FullName, "--disk-capacity", "64MiB", "--log-level", "warning", "--admin-port", "off"];
        var a = await ServeProcess.StartAsync(["--port", "0", .. diskFlags]);
        var b = await ServeProcess.StartAsync("--port", "0", "--memory", "64MiB", "--log-level", "warning", "--admin-port", "off");
        try
        {
            await using var store = await KvStore.ConnectAsync(new KvStoreOptions
            {
                Server = $"{a.Server},{b.Server}",
                Replicas = 2,
                ConnectTimeout = TimeSpan.FromSeconds(2),
                RequestTimeout = TimeSpan.FromSeconds(10),
            });
            var keys = Enumerable.Range(0, 40).Select(i => $"one-replica/{i}").ToArray();
            int bPort = b.Port, aPort = a.Port;
            await b.DisposeAsync();   // SIGKILL
            foreach (var k in keys)   // acknowledged by a alone
                Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.KeyMemory(k)], [(ReadOnlyMemory<byte>)TestValues.For(k, 3000)]))[0]);
            b = await ServeProcess.StartAsync("--port", bPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--memory", "64MiB", "--log-level", "warning", "--admin-port", "off");
            await a.DisposeAsync();
            // While a is down its keys are misses (b never had them) or Unavailable (b, just restarted, may still be in
            // its own backoff on a loaded machine), and each failed try lengthens a's backoff (to 4 s).
            for (var until = Stopwatch.StartNew(); until.Elapsed < TimeSpan.FromSeconds(2.5);)
            {
                var dest = new Memory<byte>[] { new byte[3000] };
                var got = await store.GetAsync([TestValues.KeyMemory(keys[0])], dest);
                Assert.True(got[0].Status is KvStatus.NotFound or KvStatus.Unavailable, $"{keys[0]} while its only holder is down: {got[0].Status}");
                await Task.Delay(50);
            }
            a = await ServeProcess.StartAsync(["--port", aPort.ToString(System.Globalization.CultureInfo.InvariantCulture), .. diskFlags]);

            // Each key gets up to 3 reads 200 ms apart: well inside a's backoff (4 s), which the bug this test guards
            // made every read wait out; the extra reads absorb the first requests racing a's reconnection (in 1 of 3
            // runs on a loaded machine 14 of 40 keys missed once right after the restart: an open issue, see the note).
            var missed = new List<string>();
            foreach (var k in keys)
            {
                string? miss = null;
                for (int attempt = 0; attempt < 3; attempt++)
                {
                    var dest = new Memory<byte>[] { new byte[3000] };
                    var got = await store.GetAsync([TestValues.KeyMemory(k)], dest);
                    if (got[0].Found && !dest[0].Span.SequenceEqual(TestValues.For(k, 3000))) { miss = $"{k}: WRONG BYTES"; break; }
                    miss = got[0].Status == KvStatus.Ok ? null : $"{k}: {got[0].Status} {got[0].Length}";
                    if (miss is null) break;
                    await Task.Delay(200);
                }
                if (miss is not null) missed.Add(miss);
            }
            Assert.True(missed.Count == 0, $"{missed.Count} of {keys.Length} keys stored on a live replica did not read back: {string.Join("; ", missed.Take(5))}");
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            disk.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task With_one_replica_keys_of_a_killed_node_are_per_key_misses_and_the_rest_read_exact()
    {
        await using var cluster = await ClusterHarness.StartAsync(3);
        await using var client = await cluster.ClientAsync(replicas: 1);
        var keys = Enumerable.Range(0, 600).Select(i => $"r1/{i}").ToArray();
        Assert.All(await client.PutAsync(keys.Select(TestValues.KeyMemory).ToArray(), keys.Select(k => (ReadOnlyMemory<byte>)TestValues.For(k, 1024)).ToArray()),
            s => Assert.Equal(KvStatus.Ok, s));
        var owner = keys.ToDictionary(k => k, k => client.Placement(TestValues.KeyMemory(k).Span).Single());
        var victim = cluster.Nodes[0];
        victim.Process.Kill();

        async Task CheckAsync(Func<KvStatus, bool> deadKeyStatusOk, string phase)
        {
            var dest = keys.Select(_ => (Memory<byte>)new byte[1024]).ToArray();
            var results = await client.GetAsync(keys.Select(TestValues.KeyMemory).ToArray(), dest);   // never throws
            var exists = await client.ExistsAsync(keys.Select(TestValues.KeyMemory).ToArray());
            for (int i = 0; i < keys.Length; i++)
            {
                if (owner[keys[i]] == victim.Server)
                {
                    Assert.True(deadKeyStatusOk(results[i].Status), $"{phase}: {keys[i]} on the dead node: {results[i].Status}");
                    Assert.NotEqual(1, exists[i]);
                }
                else
                {
                    Assert.Equal(KvStatus.Ok, results[i].Status);
                    Assert.True(dest[i].Span.SequenceEqual(TestValues.For(keys[i], 1024)), $"{phase}: {keys[i]} wrong bytes");
                    Assert.Equal(1, exists[i]);
                }
            }
        }

        // Before the registry notices: the dead node's keys fail per key (unreachable), the batch completes.
        await CheckAsync(s => s is KvStatus.Unavailable or KvStatus.NotFound, "before expiry");
        // After its heartbeat expired: its keys are placed on the survivors, where they are plain misses.
        await Poll.UntilAsync(() => Task.FromResult(client.Nodes.Count == 2), "the client to drop the dead node", TimeSpan.FromSeconds(15));
        await CheckAsync(s => s == KvStatus.NotFound, "after expiry");
    }
}
