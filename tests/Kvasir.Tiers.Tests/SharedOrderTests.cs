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
}
