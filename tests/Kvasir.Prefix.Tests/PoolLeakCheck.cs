namespace Kvasir.Prefix.Tests;

/// <summary>
/// Base of every test class that makes pools: after each test (xunit disposes the class instance) every pool it
/// made must be back to zero — no tokens, no bytes, no live handle — or the test fails saying what leaked.
/// </summary>
public abstract class PoolLeakCheck : IDisposable
{
    private readonly List<KvPool> _pools = [];

    protected KvPool NewPool(KvPoolOptions options)
    {
        var pool = new KvPool(options);
        _pools.Add(pool);
        return pool;
    }

    public void Dispose()
    {
        GC.SuppressFinalize(this);
        foreach (var pool in _pools)
        {
            Assert.True(pool is { UsedTokens: 0, UsedBytes: 0, LiveHandles: 0 },
                $"pool accounting not back to zero after the test: {pool.UsedTokens} tokens, {pool.UsedBytes} bytes, {pool.LiveHandles} live handles");
        }
    }
}
