using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// Racing PUTs of one key through a node with a shared tier: the file the shared tier is left with is the value DRAM
/// published last, so another node mounting the directory (or this one, once DRAM evicts the key) never reads back
/// an older value than the one this node serves.
/// </summary>
public sealed class SharedOrderTests
{
    private const int Rounds = 1500, Bytes = 32 * 1024;
    private static readonly StoreOptions Dram = new() { Capacity = 64L << 20, MaxValueBytes = 1L << 20 };

    [Fact]
    public async Task Racing_puts_of_a_key_leave_the_shared_file_holding_the_value_dram_published_last()
    {
        using var dir = new TempDir();
        using var writer = new TieredStore(Dram, new TierOptions { SharedFsPath = dir.Path });
        for (int round = 0; round < Rounds; round++)
        {
            string key = $"r/{round}";
            using var start = new Barrier(2);
            var threads = Enumerable.Range(1, 2).Select(v => new Thread(() =>
            {
                var value = TestValues.For(key, Bytes, version: v);
                start.SignalAndWait();
                Assert.Equal(WireStatus.Ok, writer.PutAsync(key, value).GetAwaiter().GetResult());
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
        }
        Assert.True(writer.DrainShared(TimeSpan.FromSeconds(60)), "shared writes did not drain");
        using var reader = new TieredStore(Dram, new TierOptions { SharedFsPath = dir.Path });
        var stale = new List<string>();
        for (int round = 0; round < Rounds; round++)
        {
            string key = $"r/{round}";
            var served = await writer.GetAsync(key);
            var shared = await reader.GetAsync(key);
            Assert.NotNull(served);
            if (shared is null || !shared.AsSpan().SequenceEqual(served)) stale.Add(key);
        }
        Assert.True(stale.Count == 0, $"{stale.Count} of {Rounds} keys: the shared file holds another value than DRAM serves ({string.Join(", ", stale.Take(5))})");
    }

    [Fact]
    public async Task A_value_that_could_not_be_queued_removes_the_older_file_before_a_newer_value_of_the_key_is_written()
    {
        // A value larger than the shared queue is never queued (the node then removes the key's older file); a small
        // value of the same key published right after it is queued. The removal must happen before the small value's
        // write, in publication order. (Before: the removal was queued on a tier thread outside the key's stripe lock,
        // and when it ran after the small value was queued it cancelled that write or deleted its file: the key served
        // from DRAM had no shared file, although its value had been queued.)
        const int Keys = 300, Queue = 256 * 1024, Small = 64;
        using var dir = new TempDir();
        using var writer = new TieredStore(Dram, new TierOptions { SharedFsPath = dir.Path, SharedQueueBytes = Queue });
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        int rounds = 0;
        for (; rounds < Keys && DateTime.UtcNow < deadline; rounds++)
        {
            string key = $"q/{rounds}";
            Assert.Equal(WireStatus.Ok, await writer.PutAsync(key, TestValues.For(key, Queue + 1, version: 1)));
            Assert.Equal(WireStatus.Ok, await writer.PutAsync(key, TestValues.For(key, Small, version: 2)));
        }
        Assert.True(writer.DrainShared(TimeSpan.FromSeconds(60)), "shared writes did not drain");
        Assert.Equal(rounds, writer.TierStats().Single(s => s.Key == "shared_dropped").Value);   // every large value, no small one
        using var reader = new TieredStore(Dram, new TierOptions { SharedFsPath = dir.Path });
        var missing = new List<string>();
        for (int round = 0; round < rounds; round++)
        {
            string key = $"q/{round}";
            var shared = await reader.GetAsync(key);
            if (shared is null || !shared.AsSpan().SequenceEqual(TestValues.For(key, Small, version: 2))) missing.Add(key);
        }
        Assert.True(missing.Count == 0, $"{missing.Count} of {rounds} keys: the shared tier lacks the value DRAM published last ({string.Join(", ", missing.Take(5))})");
    }
}
