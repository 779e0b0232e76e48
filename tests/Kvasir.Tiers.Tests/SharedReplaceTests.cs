using Kvasir.Protocol;
using Kvasir.Storage;
using Kvasir.Storage.Tiers;

namespace Kvasir.Tiers.Tests;

/// <summary>
/// A shared file that another node replaces (a newer value of the key, renamed into place) while this node reads it is
/// not corruption: <c>shared_corrupt</c> counts only files whose own bytes fail their checks, so an operator's alarm on it
/// means a damaged file, not two nodes writing one key.
/// </summary>
public sealed class SharedReplaceTests
{
    [Fact]
    public async Task A_file_replaced_by_another_node_mid_read_is_not_counted_as_corrupt()
    {
        // One store keeps overwriting a key (each value queued and renamed into the shared tree); another store on the same
        // directory keeps reading it cold. Its reads look the file up, then read it: a replacement between the two used to
        // be read with the first file's length and CRC, fail the CRC check and be counted in shared_corrupt.
        const int Bytes = 64 * 1024, MaxReads = 20_000;
        var dram = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20 };
        using var dir = new TempDir();
        using var writer = new TieredStore(dram, new TierOptions { SharedFsPath = dir.Path });
        using var reader = new TieredStore(dram, new TierOptions { SharedFsPath = dir.Path, PromoteAfter = int.MaxValue });
        var values = Enumerable.Range(0, 2).Select(v => TestValues.For("replaced", Bytes, version: v)).ToArray();
        Assert.Equal(WireStatus.Ok, await writer.PutAsync("replaced", values[0]));
        Assert.True(writer.DrainShared(TimeSpan.FromSeconds(30)), "the first write did not drain");
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var writes = Task.Run(async () =>
        {
            for (int i = 1; !stop.IsCancellationRequested; i++)
            {
                Assert.Equal(WireStatus.Ok, await writer.PutAsync("replaced", values[i % 2]));
                writer.DrainShared(TimeSpan.FromSeconds(10));
            }
        });
        int reads = 0, hits = 0;
        for (; reads < MaxReads && !stop.IsCancellationRequested; reads++)
        {
            var got = await reader.GetAsync("replaced");
            if (got is null) continue;
            hits++;
            Assert.True(got.AsSpan().SequenceEqual(values[0]) || got.AsSpan().SequenceEqual(values[1]), "a read served bytes of neither value");
        }
        await stop.CancelAsync();
        await writes;
        Assert.True(hits > 0, $"none of {reads} reads was a hit");
        Assert.Equal(0, reader.Stat("shared_corrupt"));
    }
}
