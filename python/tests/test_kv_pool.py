"""KVPool / KVHandle: budgets, ranges, reference counts, pins and every pool error, under threads too."""
import random
import threading
import uuid

import pytest

from kvasir.kv import KVHandle, KVPool
from kvasir.kv import errors as KE


@pytest.fixture
def pools():
    """Pools made by a test; after it, each must be back to zero (no tokens, bytes or handles leaked)."""
    made = []

    def make(*a, **kw):
        p = KVPool(*a, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        s = p.stats()
        assert (s["used_tokens"], s["used_bytes"], s["handles"], s["free_ranges"]) == (0, 0, 0, 1), s


def test_alloc_returns_a_handle_with_the_sagellm_fields_and_free_returns_the_budget(pools):
    pool = pools(max_tokens=1024, node_rank=3, rank=1)
    h = pool.alloc(num_tokens=128, device="cpu", dtype="float16", layout="NHD", request_id="r1")
    assert isinstance(h, KVHandle) and uuid.UUID(h.handle_id)
    assert (h.num_tokens, h.token_start, h.token_end, h.device, h.dtype, h.layout) == (128, 0, 128, "cpu", "float16", "NHD")
    assert (h.rank, h.node_rank, h.request_id, h.memory_ptr) == (1, 3, "r1", None)
    assert h.is_local(1) and not h.is_local(0)
    d = h.to_dict()
    assert set(d) >= {"handle_id", "request_id", "num_tokens", "token_start", "token_end", "dtype", "device", "layout",
                      "memory_ptr", "rank", "node_rank"}
    assert pool.free_tokens == 896 and pool.get(h.handle_id) is h and pool.handles() == [h]
    assert pool.free(h) is True
    assert pool.free_tokens == 1024 and h.is_freed


def test_ranges_are_disjoint_and_coalesce_after_free(pools):
    pool = pools(max_tokens=100)
    a, b, c = pool.alloc(30), pool.alloc(30), pool.alloc(40)
    assert [(x.token_start, x.token_end) for x in (a, b, c)] == [(0, 30), (30, 60), (60, 100)]
    pool.free(b)
    with pytest.raises(KE.PoolFullError):
        pool.alloc(31)   # 30 free, but only 30 contiguous
    pool.free(a)
    d = pool.alloc(60)
    assert d.token_start == 0
    pool.free(c)
    pool.free(d)


def test_block_size_rounds_reservations_up_to_whole_blocks(pools):
    pool = pools(max_tokens=64, block_size=16)
    h = pool.alloc(17)
    assert h.num_tokens == 17 and pool.stats()["used_tokens"] == 32
    g = pool.alloc(1)
    assert g.token_start == 32
    pool.free(h)
    pool.free(g)


def test_budget_exceeded_when_a_request_can_never_fit(pools):
    pool = pools(max_tokens=100)
    with pytest.raises(KE.BudgetExceededError) as e:
        pool.alloc(101)
    d = e.value.to_dict()
    assert d["code"] == "KV_BUDGET_EXCEEDED" and d["error_type"] == "BudgetExceededError" and not d["retryable"]
    assert d["context"]["max_tokens"] == 100


def test_pool_full_when_not_enough_is_free_now_and_retry_succeeds_after_free(pools):
    pool = pools(max_tokens=100)
    h = pool.alloc(80)
    with pytest.raises(KE.PoolFullError) as e:
        pool.alloc(21)
    assert e.value.retryable and e.value.code == "KV_POOL_FULL"
    pool.free(h)
    pool.free(pool.alloc(100))


def test_pool_full_at_max_handles(pools):
    pool = pools(max_tokens=100, max_handles=2)
    a, b = pool.alloc(1), pool.alloc(1)
    with pytest.raises(KE.PoolFullError):
        pool.alloc(1)
    pool.free(a)
    pool.free(b)


def test_byte_budget_memory_exhausted_and_budget_exceeded(pools):
    pool = pools(max_tokens=None, max_bytes=1000, bytes_per_token=10)
    h = pool.alloc(60)
    assert pool.used_bytes == 600 and h.num_bytes == 600
    with pytest.raises(KE.MemoryExhaustedError) as e:
        pool.alloc(41)
    assert e.value.code == "KV_MEMORY_EXHAUSTED" and e.value.retryable
    with pytest.raises(KE.BudgetExceededError):
        pool.alloc(101)
    g = pool.alloc(1, num_bytes=400)   # an explicit size wins
    pool.free(h)
    pool.free(g)


def test_config_errors(pools):
    with pytest.raises(KE.ConfigMissingError):
        KVPool(None)
    with pytest.raises(KE.ConfigInvalidError):
        KVPool(0)
    with pytest.raises(KE.ConfigInvalidError):
        KVPool(10, block_size=0)
    with pytest.raises(KE.ConfigMissingError):
        KVPool(10, backing=True)
    pool = pools(max_tokens=10, max_bytes=100)
    with pytest.raises(KE.ConfigMissingError):
        pool.alloc(1)   # a byte budget and no way to know the bytes
    with pytest.raises(ValueError):
        pool.alloc(0)


def test_backing_gives_each_handle_its_own_memory(pools):
    pool = pools(max_tokens=8, bytes_per_token=4, backing=True)
    a, b = pool.alloc(2), pool.alloc(3)
    assert b.memory_ptr - a.memory_ptr == 8
    pool.free(a)
    pool.free(b)


def test_double_free_invalid_handle_and_not_found(pools):
    pool, other = pools(max_tokens=10), pools(max_tokens=10)
    h = pool.alloc(5)
    pool.free(h)
    with pytest.raises(KE.DoubleFreeError) as e:
        pool.free(h)
    assert e.value.to_dict()["code"] == "KV_DOUBLE_FREE"
    g = other.alloc(1)
    with pytest.raises(KE.InvalidHandleError):
        pool.free(g)
    with pytest.raises(KE.InvalidHandleError):
        pool.free(object())
    with pytest.raises(KE.HandleNotFoundError):
        pool.free(str(uuid.uuid4()))
    with pytest.raises(KE.HandleNotFoundError):
        pool.get(h.handle_id)
    assert other.free(g.handle_id) is True   # free by id


def test_refcounts_keep_memory_until_the_last_free(pools):
    pool = pools(max_tokens=10)
    h = pool.alloc(4)
    assert pool.retain(h) == 2 and h.ref_count == 2
    assert pool.free(h) is False and pool.used_tokens == 4
    assert pool.free(h) is True and pool.used_tokens == 0


def test_pinned_handle_cannot_be_freed_and_unpin_underflows(pools):
    pool = pools(max_tokens=10)
    h = pool.alloc(4)
    assert pool.pin(h) == 1 and h.pin_count == 1
    with pytest.raises(KE.HandlePinnedError) as e:
        pool.free(h)
    assert e.value.retryable and pool.used_tokens == 4
    assert pool.unpin(h) == 0
    with pytest.raises(KE.RefCountUnderflowError):
        pool.unpin(h)
    pool.free(h)


def test_eight_threads_100k_operations_never_exceed_the_budgets(pools):
    pool = pools(max_tokens=4096, max_bytes=4096 * 64, bytes_per_token=64, block_size=16)
    over = []
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        held = []
        try:
            for _ in range(12_500):
                if held and (rng.random() < 0.5 or len(held) > 8):
                    pool.free(held.pop(rng.randrange(len(held))))
                else:
                    try:
                        held.append(pool.alloc(rng.randint(1, 300)))
                    except (KE.PoolFullError, KE.MemoryExhaustedError):
                        pass
                if pool.used_tokens > 4096 or pool.used_bytes > 4096 * 64:
                    over.append((pool.used_tokens, pool.used_bytes))
            for h in held:
                pool.free(h)
        except Exception as ex:   # reported below, with the thread's seed
            errors.append((seed, repr(ex)))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a pool worker did not finish in 120 s"
    assert not errors and not over
    s = pool.stats()
    assert s["peak_tokens"] <= 4096 and s["peak_bytes"] <= 4096 * 64 and s["allocs"] == s["frees"] > 1000
