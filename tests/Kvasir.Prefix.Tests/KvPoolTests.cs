namespace Kvasir.Prefix.Tests;

public sealed class KvPoolTests : PoolLeakCheck
{
    [Fact]
    public void Alloc_and_free_account_tokens_and_describe_the_handle()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 1024, NodeRank = 3, Rank = 1 });
        var handle = pool.Alloc(128, "req-1", tokenStart: 64, dtype: "bfloat16", device: "cuda:1", layout: "paged", memoryPtr: 0x1000);
        Assert.Equal(128, handle.NumTokens);
        Assert.Equal(64, handle.TokenStart);
        Assert.Equal(192, handle.TokenEnd);
        Assert.Equal("req-1", handle.RequestId);
        Assert.Equal(("bfloat16", "cuda:1", "paged", (nint)0x1000), (handle.DType, handle.Device, handle.Layout, handle.MemoryPtr));
        Assert.True(handle.IsLocal(1));
        Assert.False(handle.IsLocal(0));
        Assert.Equal(3, handle.NodeRank);
        Assert.Empty(handle.BlockIds);
        Assert.Equal(128, pool.UsedTokens);
        Assert.Equal(896, pool.FreeTokens);
        Assert.Same(handle, pool.Get(handle.HandleId));
        Assert.Same(handle, pool.TryGet(handle.HandleId));
        Assert.Equal([handle], pool.HandlesOf("req-1"));
        var dict = handle.ToDictionary();
        Assert.Equal(handle.HandleId.ToString(), dict["handle_id"]);
        Assert.Equal(192L, dict["token_end"]);
        Assert.Equal(3, dict["node_rank"]);
        Assert.True(pool.Free(handle));
        Assert.True(handle.IsFreed);
        Assert.Equal(0, pool.UsedTokens);
        Assert.Null(pool.TryGet(handle.HandleId));
        Assert.Equal(1, pool.GetStats()["allocations"]);
        Assert.Equal(1, pool.GetStats()["frees"]);
    }

    [Fact]
    public void The_sagellm_constructor_takes_a_token_budget()
    {
        var pool = new KvPool(maxTokens: 1024);
        Assert.Equal(1024, pool.MaxTokens);
        Assert.Null(pool.MaxBytes);
        pool.Free(pool.Alloc(1024));
        Assert.Equal(0, pool.UsedTokens);
        Assert.Equal(1024, pool.PeakTokens);
    }

    [Fact]
    public void Block_mode_rounds_up_to_whole_blocks_and_reuses_block_ids()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 64, BlockSize = 16, BytesPerToken = 10 });
        Assert.Equal(4, pool.TotalBlocks);
        var a = pool.Alloc(17);
        Assert.Equal(32, a.ChargedTokens);
        Assert.Equal(320, a.Bytes);
        Assert.Equal(2, a.BlockIds.Count);
        var b = pool.Alloc(32);
        Assert.Empty(a.BlockIds.Intersect(b.BlockIds));
        Assert.Equal("KV_POOL_FULL", Assert.Throws<PoolFullException>(() => pool.Alloc(1)).Code);
        pool.Free(a);
        var c = pool.Alloc(16);
        Assert.Contains(c.BlockIds[0], a.BlockIds);
        pool.Free(b);
        pool.Free(c);
    }

    [Theory]
    [InlineData(1023, false)]
    [InlineData(1024, false)]
    [InlineData(1025, true)]
    public void A_request_larger_than_the_whole_budget_is_BudgetExceeded_at_once(long tokens, bool exceeds)
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 1024 });
        if (exceeds)
        {
            var e = Assert.Throws<BudgetExceededException>(() => pool.Alloc(tokens));
            Assert.Equal("KV_BUDGET_EXCEEDED", e.Code);
            Assert.False(e.Retryable);
            Assert.Equal(tokens, e.Context["requested_tokens"]);
        }
        else pool.Free(pool.Alloc(tokens));
    }

    [Fact]
    public void Per_request_limit_is_BudgetExceeded_even_when_the_pool_is_empty()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 1024, MaxTokensPerRequest = 100 });
        Assert.Throws<BudgetExceededException>(() => pool.Alloc(101));
        pool.Free(pool.Alloc(100));
    }

    [Fact]
    public void Token_budget_used_up_now_is_PoolFull_and_retryable_and_takes_nothing()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 100 });
        var a = pool.Alloc(60);
        var e = Assert.Throws<PoolFullException>(() => pool.Alloc(41));
        Assert.True(e.Retryable);
        Assert.Equal(60, pool.UsedTokens);
        var b = pool.Alloc(40);
        pool.Free(a);
        pool.Free(b);
    }

    [Fact]
    public void Byte_budget_used_up_now_is_MemoryExhausted()
    {
        var pool = NewPool(new KvPoolOptions { MaxBytes = 1000, BytesPerToken = 10 });
        var a = pool.Alloc(60);
        Assert.Equal(600, pool.UsedBytes);
        var e = Assert.Throws<MemoryExhaustedException>(() => pool.Alloc(41));
        Assert.Equal("KV_MEMORY_EXHAUSTED", e.Code);
        Assert.True(e.Retryable);
        Assert.Throws<BudgetExceededException>(() => pool.Alloc(101));
        Assert.Equal(40, pool.FreeTokens);
        pool.Free(a);
    }

    [Fact]
    public void Double_free_is_rejected()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 100 });
        var a = pool.Alloc(10);
        pool.Free(a);
        var e = Assert.Throws<DoubleFreeException>(() => pool.Free(a));
        Assert.Equal("KV_DOUBLE_FREE", e.Code);
        Assert.Equal(0, pool.UsedTokens);
    }

    [Fact]
    public void Pinned_free_is_rejected_until_unpinned()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 100 });
        var a = pool.Alloc(10);
        pool.Pin(a);
        pool.Pin(a);
        Assert.Equal(2, a.PinCount);
        Assert.Equal("KV_HANDLE_PINNED", Assert.Throws<HandlePinnedException>(() => pool.Free(a)).Code);
        pool.Unpin(a);
        Assert.Throws<HandlePinnedException>(() => pool.Free(a));
        pool.Unpin(a);
        Assert.Equal("KV_REF_COUNT_UNDERFLOW", Assert.Throws<RefCountUnderflowException>(() => pool.Unpin(a)).Code);
        Assert.True(pool.Free(a));
    }

    [Fact]
    public void References_keep_memory_until_the_last_free()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 100 });
        var a = pool.Alloc(10);
        pool.AddRef(a);
        Assert.Equal(2, a.RefCount);
        Assert.False(pool.Free(a));
        Assert.Equal(10, pool.UsedTokens);
        Assert.True(pool.Free(a));
        Assert.Throws<DoubleFreeException>(() => pool.Free(a));
    }

    [Fact]
    public void A_freed_or_foreign_handle_is_InvalidHandle_and_an_unknown_id_HandleNotFound()
    {
        var pool = NewPool(new KvPoolOptions { MaxTokens = 100 });
        var other = NewPool(new KvPoolOptions { MaxTokens = 100 });
        var foreign = other.Alloc(5);
        Assert.Equal("KV_INVALID_HANDLE", Assert.Throws<InvalidHandleException>(() => pool.Free(foreign)).Code);
        Assert.Throws<InvalidHandleException>(() => pool.AddRef(foreign));
        other.Free(foreign);
        Assert.Throws<InvalidHandleException>(() => other.AddRef(foreign));
        Assert.Throws<InvalidHandleException>(() => other.Pin(foreign));
        Assert.Throws<InvalidHandleException>(() => other.Unpin(foreign));
        Assert.Equal("KV_HANDLE_NOT_FOUND", Assert.Throws<HandleNotFoundException>(() => pool.Get(Guid.NewGuid())).Code);
        Assert.Throws<HandleNotFoundException>(() => other.Get(foreign.HandleId));
    }

    [Fact]
    public void Missing_and_invalid_settings_are_config_errors()
    {
        Assert.Equal("KV_CONFIG_MISSING", Assert.Throws<ConfigMissingException>(() => new KvPool(new KvPoolOptions())).Code);
        Assert.Throws<ConfigMissingException>(() => new KvPool(new KvPoolOptions { MaxBytes = 100 }));
        Assert.Equal("KV_CONFIG_INVALID", Assert.Throws<ConfigInvalidException>(() => new KvPool(new KvPoolOptions { MaxTokens = 0 })).Code);
        Assert.Throws<ConfigInvalidException>(() => new KvPool(new KvPoolOptions { MaxTokens = 10, BlockSize = 0 }));
        Assert.Throws<ConfigInvalidException>(() => new KvPool(new KvPoolOptions { MaxTokens = 10, BlockSize = 16 }));
        Assert.Throws<ConfigInvalidException>(() => new KvPool(new KvPoolOptions { MaxTokens = 10, BytesPerToken = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvPool(10).Alloc(0));
    }

    [Theory]
    [InlineData(null)]
    [InlineData(16)]
    public void Budgets_are_never_exceeded_under_8_threads_and_100k_operations(int? blockSize)
    {
        const int Threads = 8, OpsPerThread = 100_000 / Threads;
        var pool = NewPool(new KvPoolOptions { MaxTokens = 4096, MaxBytes = 4096 * 8 - 8 * 100, BytesPerToken = 8, BlockSize = blockSize });
        long overBudget = 0, succeeded = 0, refused = 0;
        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            var held = new List<KvHandle>();
            for (int i = 0; i < OpsPerThread; i++)
            {
                if (held.Count > 0 && (random.Next(2) == 0 || held.Count > 16))
                {
                    int at = random.Next(held.Count);
                    var h = held[at];
                    held.RemoveAt(at);
                    if (random.Next(8) == 0) { pool.AddRef(h); pool.Free(h); }
                    pool.Free(h);
                }
                else
                {
                    try
                    {
                        held.Add(pool.Alloc(random.Next(1, 300)));
                        Interlocked.Increment(ref succeeded);
                    }
                    catch (KvCacheException e) when (e is PoolFullException or MemoryExhaustedException)
                    {
                        Interlocked.Increment(ref refused);
                    }
                }
                if (pool.UsedTokens > 4096 || pool.UsedBytes > pool.MaxBytes) Interlocked.Increment(ref overBudget);
            }
            foreach (var h in held) pool.Free(h);
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => Assert.True(w.Join(TimeSpan.FromMinutes(2)), "a pool worker thread did not finish within 2 minutes"));
        Assert.Equal(0, overBudget);
        Assert.True(pool.PeakTokens <= 4096, $"peak {pool.PeakTokens} tokens above the 4096-token budget");
        Assert.True(pool.PeakBytes <= pool.MaxBytes, $"peak {pool.PeakBytes} bytes above the byte budget");
        Assert.True(succeeded > 0 && refused > 0, $"the run must both fill the pool and allocate ({succeeded} allocations, {refused} refusals)");
        Assert.Equal(pool.Allocations, pool.Frees);
    }
}
