using System.Buffers.Binary;
using Kvasir.Cli.Tests;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// DRAM, the disk and recovery agree on which acknowledged write of a key won, under concurrency: an older version
/// is never returned once a newer one was acknowledged, whether the value comes from DRAM, is promoted from disk, is
/// reloaded after eviction, or is recovered after kill -9.
/// </summary>
public sealed class VersionOrderTests
{
    private const int Mi = 1 << 20;

    /// <summary>A value naming its key and version in its first 16 bytes; the rest is the key/version pattern.</summary>
    private static byte[] Versioned(string key, int size, long version)
    {
        var v = TestValues.For(key, size, (int)version);
        BinaryPrimitives.WriteInt64LittleEndian(v, version);
        BinaryPrimitives.WriteInt64LittleEndian(v.AsSpan(8), key.GetHashCode());
        return v;
    }

    private static long VersionOf(string key, byte[] value)
    {
        long version = BinaryPrimitives.ReadInt64LittleEndian(value);
        Assert.True(value.AsSpan().SequenceEqual(Versioned(key, value.Length, version)), $"{key}: bytes of no version ever written");
        return version;
    }

    [Fact]
    public async Task Concurrent_puts_and_promoting_gets_never_return_an_older_version_than_the_last_acknowledged()
    {
        // 64 keys of 4 KiB through a 128 KiB arena: every key is evicted and promoted back from disk over and over
        // (promote-after 1, the whole arena may hold promoted values) while writers put new versions of it.
        using var dir = new TempDir();
        var node = new CacheNode(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 128 * 1024, MaxValueBytes = 4096 },
            Tiers = new TierOptions { DiskPath = dir.Path, DiskCapacity = 64L * Mi, PromoteAfter = 1, HotFraction = 1.0 },
        });
        node.Start();
        await using var _ = node;
        const int Keys = 64, Writers = 8, PutsPerWriter = 25_000, Readers = 8, Size = 4096;
        var acked = new long[Keys];   // per key, the newest acknowledged version (each key has one writer)
        string KeyOf(int i) => $"stress/{i}";
        using var done = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        long puts = 0, reads = 0, older = 0, misses = 0, refused = 0;
        string? firstOlder = null;

        async Task WriteAsync(int w)
        {
            await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}" });
            var rng = new Random(w);
            var versions = new long[Keys];
            for (int n = 0; n < PutsPerWriter && !done.IsCancellationRequested; n++)
            {
                int i = w + Writers * rng.Next(Keys / Writers);   // writer w owns keys i ≡ w (mod Writers)
                long version = ++versions[i];
                var status = (await store.PutAsync([TestValues.Key(KeyOf(i))], [Versioned(KeyOf(i), Size, version)]))[0];
                if (status == KvStatus.OutOfMemory)   // the tiny arena is all reserved or leased for a moment: not stored
                {
                    Interlocked.Increment(ref refused);
                    n--;
                    continue;
                }
                Assert.Equal(KvStatus.Ok, status);
                Volatile.Write(ref acked[i], version);
                Interlocked.Increment(ref puts);
            }
        }

        async Task ReadAsync(int r)
        {
            await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}" });
            var rng = new Random(1000 + r);
            var buffer = new byte[Size];
            while (Interlocked.Read(ref puts) < (long)Writers * PutsPerWriter && !done.IsCancellationRequested)
            {
                int i = rng.Next(Keys);
                long before = Volatile.Read(ref acked[i]);
                var result = (await store.GetAsync([TestValues.Key(KeyOf(i))], [buffer]))[0];
                Interlocked.Increment(ref reads);
                if (result.Status == KvStatus.NotFound)
                {
                    // A cache may miss (a cold read with no free arena space to stage in); it may never go back in time.
                    Interlocked.Increment(ref misses);
                    continue;
                }
                Assert.Equal(KvStatus.Ok, result.Status);
                long seen = VersionOf(KeyOf(i), buffer);
                if (seen < before && Interlocked.Increment(ref older) == 1) firstOlder = $"{KeyOf(i)}: read version {seen} after {before} was acknowledged";
            }
        }

        var tasks = Enumerable.Range(0, Writers).Select(w => Task.Run(() => WriteAsync(w)))
            .Concat(Enumerable.Range(0, Readers).Select(r => Task.Run(() => ReadAsync(r)))).ToArray();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(5));
        Assert.False(done.IsCancellationRequested, $"the run did not finish in time: {puts} puts, {reads} reads");
        Assert.True(puts >= 200_000, $"only {puts} acknowledged puts");
        Assert.True(misses < reads / 2, $"{misses} of {reads} reads missed: the reads did not exercise promotion");
        Assert.True(older == 0, $"{older} reads returned an older version than one already acknowledged; first: {firstOlder}");

        // In the end every key reads its newest acknowledged version.
        await using var check = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}" });
        for (int i = 0; i < Keys; i++)
        {
            if (acked[i] == 0) continue;
            var value = await check.GetAsync(TestValues.Key(KeyOf(i)));
            Assert.NotNull(value);
            Assert.Equal(acked[i], VersionOf(KeyOf(i), value));
        }
        var stats = await check.StatsAsync();
        Assert.True(stats["tier_promotions"] > 1000, $"only {stats["tier_promotions"]} promotions: the race was not exercised");
    }

    [Fact]
    public async Task Racing_big_and_small_puts_of_a_key_leave_the_same_winner_in_dram_after_eviction_and_after_kill_9()
    {
        using var dir = new TempDir();
        string[] flags = ["--port", "0", "--memory", "640MiB", "--disk", dir.Path, "--disk-capacity", "4GiB", "--shm", "off", "--log-level", "warning"];
        const int Rounds = 40, Big = 24 * Mi;
        var winners = new byte[Rounds][];
        string KeyOf(int r) => $"race/{r}";
        await using (var node = await ServeProcess.StartAsync(flags))
        {
            var options = new KvStoreOptions { Server = node.Server, Transport = KvTransportKind.Tcp };
            await using var big = await KvStore.ConnectAsync(options);
            await using var small = await KvStore.ConnectAsync(options);
            for (int r = 0; r < Rounds; r++)
            {
                // The small PUT starts 0..21 ms after the big one: some land while the big one is still being received,
                // some while it is being written to disk, some after.
                var key = TestValues.Key(KeyOf(r));
                var bigPut = big.PutAsync([key], [TestValues.For(KeyOf(r), Big, 1)]);
                await Task.Delay(r % 8 * 3);
                var smallPut = small.PutAsync([key], [TestValues.For(KeyOf(r), 512, 2)]);
                var puts = await Task.WhenAll(bigPut, smallPut);
                Assert.All(puts, p => Assert.Equal(KvStatus.Ok, p[0]));
                winners[r] = (await small.GetAsync(key))!;   // from DRAM
                Assert.True(winners[r].AsSpan().SequenceEqual(TestValues.For(KeyOf(r), Big, 1)) || winners[r].AsSpan().SequenceEqual(TestValues.For(KeyOf(r), 512, 2)),
                    $"{KeyOf(r)}: neither value");
            }
            for (int i = 0; i < 700; i++)   // evict every race key from DRAM
                Assert.Equal(KvStatus.Ok, (await big.PutAsync([TestValues.Key($"fill/{i}")], [TestValues.For($"fill/{i}", Mi)]))[0]);
            var stats = await big.StatsAsync();
            Assert.True(stats["evictions"] >= Rounds, $"only {stats["evictions"]} evictions");
            for (int r = 0; r < Rounds; r++)
                Assert.True(await small.GetAsync(TestValues.Key(KeyOf(r))) is { } v && v.AsSpan().SequenceEqual(winners[r]), $"{KeyOf(r)}: the disk serves another winner than DRAM did");
            node.Process.Kill();
            await node.Process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        await using var again = await ServeProcess.StartAsync(flags);
        await using var reader = await KvStore.ConnectAsync(new KvStoreOptions { Server = again.Server, Transport = KvTransportKind.Tcp });
        for (int r = 0; r < Rounds; r++)
            Assert.True(await reader.GetAsync(TestValues.Key(KeyOf(r))) is { } v && v.AsSpan().SequenceEqual(winners[r]), $"{KeyOf(r)}: recovery chose another winner than DRAM did");
    }
}
