namespace Kvasir.Prefix.Tests;

public sealed class ErrorTests
{
    public static TheoryData<KvCacheException, string, bool> All => new()
    {
        { new BudgetExceededException("m"), "KV_BUDGET_EXCEEDED", false },
        { new MemoryExhaustedException("m"), "KV_MEMORY_EXHAUSTED", true },
        { new PoolFullException("m"), "KV_POOL_FULL", true },
        { new InvalidHandleException("m"), "KV_INVALID_HANDLE", false },
        { new DoubleFreeException("m"), "KV_DOUBLE_FREE", false },
        { new HandlePinnedException("m"), "KV_HANDLE_PINNED", true },
        { new HandleNotFoundException("m"), "KV_HANDLE_NOT_FOUND", false },
        { new RefCountUnderflowException("m"), "KV_REF_COUNT_UNDERFLOW", false },
        { new CacheMissException("m"), "KV_CACHE_MISS", false },
        { new PrefixTooLongException("m"), "KV_PREFIX_TOO_LONG", false },
        { new NoVictimException("m"), "KV_NO_VICTIM", true },
        { new EvictionFailedException("m"), "KV_EVICTION_FAILED", false },
        { new AllPinnedException("m"), "KV_ALL_PINNED", true },
        { new TransferFailedException("m"), "KV_TRANSFER_FAILED", true },
        { new TransferTimeoutException("m"), "KV_TRANSFER_TIMEOUT", true },
        { new ChecksumMismatchException("m"), "KV_CHECKSUM_MISMATCH", false },
        { new MetadataMismatchException("m"), "KV_METADATA_MISMATCH", false },
        { new ConfigMissingException("m"), "KV_CONFIG_MISSING", false },
        { new ConfigInvalidException("m"), "KV_CONFIG_INVALID", false },
    };

    [Theory]
    [MemberData(nameof(All))]
    public void Every_code_has_its_type_and_to_dictionary_shape(KvCacheException error, string code, bool retryable)
    {
        Assert.Equal(code, error.Code);
        Assert.Equal(retryable, error.Retryable);
        var dict = error.ToDictionary();
        Assert.Equal(["error_type", "code", "message", "context", "retryable"], dict.Keys);
        Assert.Equal(code, dict["code"]);
        Assert.Equal("m", dict["message"]);
        Assert.EndsWith("Error", (string)dict["error_type"]!);
        Assert.Empty(error.Context);
    }

    [Fact]
    public void Context_and_cause_are_kept()
    {
        var cause = new IOException("disk");
        var e = new TransferFailedException("load failed", new Dictionary<string, object?> { ["block"] = "ab" }, cause);
        Assert.Same(cause, e.InnerException);
        Assert.Equal("ab", e.Context["block"]);
        Assert.Equal("TransferFailedError", e.ErrorType);
    }

    [Fact]
    public void There_are_exactly_nineteen_codes() => Assert.Equal(19, All.Count());
}
