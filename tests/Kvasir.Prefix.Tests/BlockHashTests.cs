namespace Kvasir.Prefix.Tests;

public sealed class BlockHashTests
{
    // Expected values computed with plain hashlib from the spec text (docs/engine-side.md), independent of this code:
    // python3 -c 'import hashlib,struct; ...' (see the commit that added this file).
    private const string FirstBlock0To15 = "b9975e92453177fa67d7459df892e8e304bd25e750a1e872876d07e67579f7ed";
    private const string SecondBlock16To31 = "81794e60ec32af95acee4884d8db92980e002d681b55b20700c29c0374bfcbe6";
    private const string ExtremesWithThreeExtraKeys = "8c0161db8416fb7f4368ed7d29ac71d7e5b7241525bf8a7344bafe0824c3d435";
    private const string NonAsciiExtraKey = "ada36cfbccba65d0cc4d3b99e9be78db7c51b873c1f7387390002fc4d7771ba5";

    [Fact]
    public void Three_full_blocks_and_a_tail_give_three_chained_hashes_matching_hashlib()
    {
        var hasher = new BlockHasher(16);
        var hashes = hasher.ComputeBlockHashes(Enumerable.Range(0, 50).ToArray());
        Assert.Equal(3, hashes.Length);
        Assert.Equal(FirstBlock0To15, hashes[0].Hex);
        Assert.Equal(SecondBlock16To31, hashes[1].Hex);
        Assert.Equal("kvb1:" + FirstBlock0To15, hashes[0].StoreKeyString);
        Assert.Equal(69, hashes[0].StoreKey().Length);
    }

    [Fact]
    public void Extra_keys_and_extreme_tokens_match_hashlib()
    {
        Assert.Equal(ExtremesWithThreeExtraKeys, new BlockHasher(2, ["model-a", "lora-7", "salt"]).ComputeBlockHashes(new long[] { 0, uint.MaxValue })[0].Hex);
        Assert.Equal(NonAsciiExtraKey, new BlockHasher(1, ["modèle-é"]).ComputeBlockHashes(new long[] { 7 })[0].Hex);
    }

    [Fact]
    public void A_caller_given_parent_continues_the_chain()
    {
        var hasher = new BlockHasher(16);
        var second = hasher.ComputeBlockHashes(Enumerable.Range(16, 16).ToArray(), BlockHash.Parse(FirstBlock0To15));
        Assert.Equal(SecondBlock16To31, Assert.Single(second).Hex);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(15)]
    public void Fewer_tokens_than_a_block_give_no_hash(int count) =>
        Assert.Empty(new BlockHasher(16).ComputeBlockHashes(Enumerable.Range(0, count).ToArray()));

    [Fact]
    public void Extra_keys_separate_models()
    {
        var tokens = Enumerable.Range(0, 16).ToArray();
        Assert.NotEqual(new BlockHasher(16, ["model-a"]).ComputeBlockHashes(tokens)[0], new BlockHasher(16, ["model-b"]).ComputeBlockHashes(tokens)[0]);
        Assert.NotEqual(new BlockHasher(16, ["ab"]).ComputeBlockHashes(tokens)[0], new BlockHasher(16, ["a", "b"]).ComputeBlockHashes(tokens)[0]);
    }

    [Fact]
    public void Tokens_outside_u32_and_block_size_below_one_are_rejected()
    {
        var hasher = new BlockHasher(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => hasher.ComputeBlockHashes(new long[] { 1, -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => hasher.ComputeBlockHashes(new long[] { 1L << 32, 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => hasher.ComputeBlockHashes(new[] { -5, 0 }));
        Assert.Equal("KV_CONFIG_INVALID", Assert.Throws<ConfigInvalidException>(() => new BlockHasher(0)).Code);
    }

    [Fact]
    public void Hash_round_trips_through_hex_and_bytes_and_compares_by_value()
    {
        var hash = BlockHash.Parse(FirstBlock0To15);
        Assert.Equal(hash, BlockHash.FromBytes(hash.ToBytes()));
        Assert.Equal(hash, BlockHash.Parse(FirstBlock0To15.ToUpperInvariant()));
        Assert.True(hash == BlockHash.Parse(FirstBlock0To15));
        Assert.True(hash != BlockHash.Zero);
        Assert.Equal(FirstBlock0To15, hash.ToString());
        Assert.Equal(new string('0', 64), default(BlockHash).Hex);
        Assert.Throws<FormatException>(() => BlockHash.Parse("abc"));
        Assert.Throws<ArgumentException>(() => BlockHash.FromBytes(new byte[31]));
        Assert.Equal(hash.GetHashCode(), BlockHash.Parse(FirstBlock0To15).GetHashCode());
        Assert.True(hash.Equals((object)BlockHash.Parse(FirstBlock0To15)));
    }

    [Fact]
    public void HashBlock_of_a_full_block_equals_the_chained_computation()
    {
        var hasher = new BlockHasher(16);
        Assert.Equal(FirstBlock0To15, hasher.HashBlock(BlockHash.Zero, Enumerable.Range(0, 16).Select(i => (long)i).ToArray()).Hex);
        Assert.Equal(16, hasher.BlockSize);
        Assert.Empty(hasher.ExtraKeys);
    }
}
