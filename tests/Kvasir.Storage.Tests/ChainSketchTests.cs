using Kvasir.Protocol;
using Kvasir.Shared;
using Kvasir.Storage.Internal;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

/// <summary>
/// The <see cref="EvictionPolicyKind.ChainSketch"/> policy (chain LFU-DA whose counts survive eviction in a
/// <see cref="FrequencySketch"/>) against plain <see cref="EvictionPolicyKind.ChainLfu"/>, on a store of two blocks,
/// and the sketch itself.
/// </summary>
public sealed class ChainSketchTests
{
    private const int Block = 1024;

    private static KvArenaStore TwoBlockStore(EvictionPolicyKind policy) => new(new StoreOptions
    {
        Capacity = 2 * Block,
        BlockSize = Block,
        MaxValueBytes = Block,
        HighWatermark = 1.0,
        LowWatermark = 1.0,
        Eviction = policy,
    });

    [Theory]
    [InlineData(EvictionPolicyKind.ChainLfu, "F", "A")]
    [InlineData(EvictionPolicyKind.ChainSketch, "A", "F")]
    public void A_block_read_before_its_eviction_and_stored_again_outlives_a_newer_one_only_with_the_sketch(EvictionPolicyKind policy, string survivor, string evicted)
    {
        // Priority = age L + 1 + reads (with the sketch, a new slot starts from the reads its key had before); the lowest
        // goes, L becomes its priority, ties go to the older. put A (1), read it twice (3), put B (1), put C evicts B
        // (L 1; C 2), put D evicts C (L 2; D 3), put E evicts A (tie with D, older; L 3; E 4), put A again evicts D
        // (L 3): chainlfu A 4, chainsketch 3 + 1 + 2 reads = 6. put F evicts E either way (4 ties with chainlfu's A and
        // is older; L 4; F 5). put G: chainlfu evicts A (4 < 5), chainsketch evicts F (5 < 6).
        using var store = TwoBlockStore(policy);
        Assert.Equal(WireStatus.Ok, Put(store, "A", Block));
        Assert.True(ReadsBackExactly(store, "A", Block));
        Assert.True(ReadsBackExactly(store, "A", Block));
        foreach (string key in new[] { "B", "C", "D", "E", "A", "F", "G" })
        {
            Assert.Equal(WireStatus.Ok, Put(store, key, Block));
        }

        Assert.True(store.Exists(Key(survivor)), $"{policy}: {survivor} should have survived");
        Assert.False(store.Exists(Key(evicted)), $"{policy}: {evicted} should have been evicted");
        Assert.True(store.Exists(Key("G")));
        Assert.Equal(6, store.GetStats().Evictions);
    }

    [Fact]
    public void The_sketch_counts_each_key_exactly_while_few_keys_share_its_counters()
    {
        var sketch = new FrequencySketch();
        sketch.Fit(8);
        for (int key = 0; key < 8; key++)
        {
            for (int i = 0; i < key; i++)
            {
                sketch.Increment(Hash(key));
            }
        }

        for (int key = 0; key < 8; key++)
        {
            Assert.Equal(key, sketch.Estimate(Hash(key)));
        }
    }

    [Fact]
    public void Counts_saturate_at_fifteen_and_halve_after_ten_times_the_width_in_increments()
    {
        var sketch = new FrequencySketch();
        Assert.Equal(64, sketch.Width);
        for (int i = 0; i < 20; i++)
        {
            sketch.Increment(Hash(1));
        }

        Assert.Equal(FrequencySketch.MaxCount, sketch.Estimate(Hash(1)));

        // 20 increments so far; the 640th halves every counter: 15 → 7.
        for (int i = 20; i < (FrequencySketch.AgingFactor * 64) - 1; i++)
        {
            sketch.Increment(Hash(2));
        }

        Assert.Equal(FrequencySketch.MaxCount, sketch.Estimate(Hash(1)));
        sketch.Increment(Hash(2));
        Assert.Equal(7, sketch.Estimate(Hash(1)));
    }

    [Fact]
    public void Fitting_more_keys_widens_the_rows_to_twice_the_keys_and_starts_from_zero()
    {
        var sketch = new FrequencySketch();
        sketch.Increment(Hash(3));
        sketch.Fit(32);
        Assert.Equal(64, sketch.Width);
        Assert.Equal(1, sketch.Estimate(Hash(3)));
        sketch.Fit(33);
        Assert.Equal(128, sketch.Width);
        Assert.Equal(0, sketch.Estimate(Hash(3)));
    }

    private static ulong Hash(int key) => GhostKeys.Hash(Key($"key-{key}"));
}
