namespace Kvasir.Storage.Tests;

public sealed class StoreOptionsTests
{
    public static TheoryData<string, StoreOptions> InvalidOptions => new()
    {
        { "Capacity", new StoreOptions { Capacity = 0 } },
        { "MaxValueBytes", new StoreOptions { Capacity = 1 << 20, MaxValueBytes = (1 << 20) + 1 } },
        { "MaxValueBytes", new StoreOptions { Capacity = 4L << 30, MaxValueBytes = (long)int.MaxValue + 1 } },
        { "MaxValueBytes", new StoreOptions { MaxValueBytes = -1 } },
        { "MaxKeyBytes", new StoreOptions { MaxKeyBytes = 0 } },
        { "MaxKeyBytes", new StoreOptions { MaxKeyBytes = StoreOptions.MaxKeyBytesLimit + 1 } },
        { "Granule", new StoreOptions { Granule = 32 } },
        { "Granule", new StoreOptions { Granule = 3000 } },
        { "Capacity", new StoreOptions { Capacity = 2048, MaxValueBytes = 1024, Granule = 4096 } },
        { "BlockSize", new StoreOptions { BlockSize = 0 } },
        { "BlockSize", new StoreOptions { Capacity = 1 << 20, MaxValueBytes = 1 << 20, BlockSize = (1 << 20) + 1 } },
        { "HighWatermark", new StoreOptions { HighWatermark = 1.01 } },
        { "HighWatermark", new StoreOptions { HighWatermark = 0 } },
        { "LowWatermark", new StoreOptions { HighWatermark = 0.8, LowWatermark = 0.9 } },
        { "LowWatermark", new StoreOptions { LowWatermark = 0 } },
        { "Eviction", new StoreOptions { Eviction = (EvictionPolicyKind)42 } },
        { "LeaseTimeout", new StoreOptions { LeaseTimeout = TimeSpan.Zero } },
        {
            "Namespaces",
            new StoreOptions { Namespaces = [.. Enumerable.Range(0, StoreOptions.MaxNamespaces + 1).Select(i => new NamespaceQuota(BitConverter.GetBytes(i), 1))] }
        },
    };

    [Fact]
    public void Defaults_are_valid()
    {
        new StoreOptions().Validate();
    }

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void Unusable_options_are_rejected_naming_the_option(string option, StoreOptions options)
    {
        var error = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Equal(option, error.ParamName);
        Assert.ThrowsAny<ArgumentException>(() => new KvArenaStore(options));
    }

    [Fact]
    public void Granule_is_ignored_in_block_mode()
    {
        new StoreOptions { Capacity = 1 << 20, MaxValueBytes = 1 << 16, BlockSize = 1 << 16, Granule = 3 }.Validate();
    }
}
