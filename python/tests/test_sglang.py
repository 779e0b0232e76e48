"""KvasirHiCacheStorage (sglang HiCache L3 backend) against a real Kvasir node, with real torch CPU tensors.

sglang cannot be installed here, so ``_HostPool`` below is a stand-in for sglang's host KV pools
(``pool_host/mha.py`` MHATokenToKVPoolHost and ``pool_host/mla.py`` MLATokenToKVPoolHost,
"page_first" layout): same attributes the backend uses (``page_size``, ``layout``, ``dtype``,
``size``, ``kv_buffer``) and the same ``get_page_buffer_meta(indices)`` pointer arithmetic
(MHA: a K and a V pointer per page; MLA: one pointer per page), backed by a real torch tensor.
"""
import importlib
import uuid

import pytest

torch = pytest.importorskip("torch")

from kvasir.integrations import sglang as sg  # noqa: E402
from conftest import record_puts  # noqa: E402

PAGE = 4
LAYERS = 3
HEADS = 2
HEAD_DIM = 8
PAGES = 16


class _HostPool:
    """Stand-in for sglang's MHA/MLA host KV pool with layout 'page_first'."""

    def __init__(self, mla=False, dtype=torch.float16, fill=True, seed=0):
        self.layout = "page_first"
        self.page_size = PAGE
        self.layer_num = LAYERS
        self.dtype = dtype
        self.size = PAGE * PAGES
        self.is_mla = mla
        if mla:
            self.kv_lora_rank_plus_rope = 24
            shape = (self.size, LAYERS, 1, self.kv_lora_rank_plus_rope)
        else:
            self.head_num, self.head_dim = HEADS, HEAD_DIM
            shape = (2, self.size, LAYERS, HEADS, HEAD_DIM)
        if fill:
            g = torch.Generator().manual_seed(seed)
            self.kv_buffer = torch.randn(shape, generator=g).to(dtype)
        else:
            self.kv_buffer = torch.zeros(shape, dtype=dtype)

    def token_bytes(self):
        per = LAYERS * (self.kv_lora_rank_plus_rope if self.is_mla else HEADS * HEAD_DIM)
        return per * torch.tensor([], dtype=self.dtype).element_size()

    def get_ksize_per_token(self):
        return self.token_bytes()

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        idx = indices.tolist()
        base = self.kv_buffer.data_ptr()
        tb = self.token_bytes()
        ptrs = []
        if self.is_mla:
            for i in range(0, len(idx), self.page_size):
                ptrs.append(base + idx[i] * tb)
        else:
            v_offset = self.size * tb
            for i in range(0, len(idx), self.page_size):
                k = base + idx[i] * tb
                ptrs += [k, k + v_offset]
        return ptrs, [tb * self.page_size] * len(ptrs)

    def page(self, first_index):
        """The bytes of one page (K and V halves for MHA), for comparisons."""
        if self.is_mla:
            return self.kv_buffer[first_index:first_index + PAGE].clone()
        return self.kv_buffer[:, first_index:first_index + PAGE].clone()

    def get_dummy_flat_data_page(self):
        return torch.zeros_like(self.page(0)).flatten()


def _config(tp_rank=0, tp_size=2, mla=False, model="org/model-x", extra=None, pp_rank=0, pp_size=1, metrics=True):
    return sg.HiCacheStorageConfig(
        tp_rank=tp_rank, tp_size=tp_size, pp_rank=pp_rank, pp_size=pp_size, attn_cp_rank=0, attn_cp_size=1,
        is_mla_model=mla, enable_storage_metrics=metrics, is_page_first_layout=True, model_name=model,
        extra_config=extra)


def _extra(node, **more):
    cfg = {"backend_name": "kvasir", "module_path": "kvasir.integrations.sglang",
           "class_name": "KvasirHiCacheStorage", "servers": node.address, "interface_v1": 1}
    cfg.update(more)
    return cfg


def _create_dynamic(storage_config, mem_pool_host, **kwargs):
    """What sglang's StorageBackendFactory._create_dynamic_backend does (backend_factory.py)."""
    cfg = storage_config.extra_config
    for field in ("backend_name", "module_path", "class_name"):
        assert field in cfg
    cls = getattr(importlib.import_module(cfg["module_path"]), cfg["class_name"])
    assert issubclass(cls, sg.HiCacheStorage)
    backend = cls(storage_config, kwargs)
    backend.register_mem_pool_host(mem_pool_host)  # done by HiCacheController after creation
    return backend


@pytest.fixture
def make(node):
    made = []

    def _make(pool=None, **cfg_kw):
        extra = cfg_kw.pop("extra", None) or _extra(node)
        b = _create_dynamic(_config(extra=extra, **cfg_kw), pool if pool is not None else _HostPool())
        made.append(b)
        return b

    yield _make
    for b in made:
        b.close()


def _keys(n):
    tag = uuid.uuid4().hex[:12]
    return [f"page-{tag}-{i}" for i in range(n)]


def _indices(pages):
    return torch.cat([torch.arange(p * PAGE, (p + 1) * PAGE) for p in pages])


def test_dynamic_construction(node, make):
    b = make()
    assert isinstance(b, sg.HiCacheStorage)
    assert b.interface_v1 and b.config_prefix == "org-model-x" and b.mha_suffix == "0"
    assert b.store.host == node.host and b.store.port == node.port


def test_zero_copy_round_trip(make):
    src = _HostPool(seed=1)
    b = make(src)
    keys = _keys(5)
    src_pages = [2, 7, 0, 11, 5]
    assert b.batch_set_v1(keys, _indices(src_pages)) == [True] * 5
    assert b.batch_exists(keys) == 5
    # A fresh pool (another process after a restart): read the pages into other slots.
    dst = _HostPool(fill=False)
    reader = make(dst)
    dst_pages = [1, 3, 4, 9, 15]
    assert reader.batch_get_v1(keys, _indices(dst_pages)) == [True] * 5
    for s, d in zip(src_pages, dst_pages):
        assert torch.equal(src.page(s * PAGE).view(torch.int16), dst.page(d * PAGE).view(torch.int16))
    # Writing again skips what is stored and still reports success.
    assert b.batch_set_v1(keys, _indices(src_pages)) == [True] * 5


def test_a_requests_pages_are_written_as_one_chain_continuing_its_prefix_keys(make):
    # Issue 17 item 4: sglang hands batch_set_v1 one request's pages in prefix order, the pages before them in
    # extra_info.prefix_keys; the backend declares them a chain so the node's chain-aware eviction can use it.
    b = make(_HostPool(seed=1))
    calls = record_puts(b.store, "batch_put_from")
    keys = _keys(6)
    assert b.batch_set_v1(keys[:3], _indices([0, 1, 2])) == [True] * 3
    objects = [k for key in keys for k in b._page_keys(key)]
    per = len(b._page_keys(keys[0]))
    assert calls == [(objects[:3 * per], {"chain": True, "chain_parent": None})]
    later = sg.HiCacheStorageExtraInfo(prefix_keys=keys[:3])
    assert b.batch_set_v1(keys[3:], _indices([3, 4, 5]), later) == [True] * 3
    assert calls[1] == (objects[3 * per:], {"chain": True, "chain_parent": objects[3 * per - 1]})
    # pages already stored are skipped: the rest is still a run, continuing the last stored object
    calls.clear()
    more = _keys(2)
    assert b.batch_set_v1(keys[4:] + more, _indices([4, 5, 6, 7]), sg.HiCacheStorageExtraInfo(prefix_keys=keys[:4])) == [True] * 4
    assert calls == [([k for key in more for k in b._page_keys(key)], {"chain": True, "chain_parent": objects[-1]})]
    assert b.batch_exists(keys + more) == 8


def test_pages_stored_before_split_a_requests_pages_into_runs_each_continuing_the_page_before_it(make):
    # Page-level dedup (_put_missing) skips pages already stored; each run of the pages left continues the page
    # before it (stored, so the node links them), the first run the request's prefix.
    b = make(_HostPool(seed=2))
    keys, prefix = _keys(6), _keys(1)
    objects = [k for key in keys for k in b._page_keys(key)]
    per = len(b._page_keys(keys[0]))
    assert b.batch_set_v1([keys[2]], _indices([2]), sg.HiCacheStorageExtraInfo(prefix_keys=keys[:2])) == [True]
    calls = record_puts(b.store, "batch_put_from")
    assert b.batch_set_v1(keys, _indices([0, 1, 2, 3, 4, 5]), sg.HiCacheStorageExtraInfo(prefix_keys=prefix)) == [True] * 6
    assert calls == [(objects[:2 * per], {"chain": True, "chain_parent": b._page_keys(prefix[0])[-1]}),
                     (objects[3 * per:], {"chain": True, "chain_parent": objects[3 * per - 1]})]
    assert b.batch_exists(keys) == 6


def test_batch_set_v2_writes_each_pools_pages_as_a_chain_continuing_extra_info_prefix_keys(make):
    # sglang's batch_set_v2(transfers, extra_info) (hicache_storage.py @ 001067ff; the hybrid cache controller passes
    # one operation's pages per transfer, and extra_info with the request's prefix_keys where it has them). Pools
    # whose every page is needed (KV, all_pages sidecars) are chains continuing the prefix's last page in that pool;
    # a trailing_pages pool (a state per page: each is a restore point alone) is written unlinked.
    kv, idx_pool, swa = _HostPool(seed=21), _HostPool(mla=True, seed=22), _HostPool(mla=True, seed=23)
    b = make(kv)
    b.register_mem_host_pool_v2(kv, sg.PoolName.KV)
    b.register_mem_host_pool_v2(idx_pool, sg.PoolName.INDEXER)
    b.register_mem_host_pool_v2(swa, sg.PoolName.SWA)
    prefix, keys = _keys(2), _keys(3)

    def transfers(ks, kv_pages, idx_pages, swa_pages):
        return [sg.PoolTransfer(name=sg.PoolName.KV, host_indices=_indices(kv_pages), keys=ks),
                sg.PoolTransfer(name=sg.PoolName.INDEXER, host_indices=_indices(idx_pages), keys=ks),
                sg.PoolTransfer(name=sg.PoolName.SWA, host_indices=_indices(swa_pages), keys=ks[-1:],
                                hit_policy=sg.PoolHitPolicy.TRAILING_PAGES)]

    calls = record_puts(b.store, "batch_put_from")
    out = b.batch_set_v2(transfers(keys, [0, 1, 2], [3, 4, 5], [6]), sg.HiCacheStorageExtraInfo(prefix_keys=prefix))
    assert all(out[n] == [True] * m for n, m in [(sg.PoolName.KV, 3), (sg.PoolName.INDEXER, 3), (sg.PoolName.SWA, 1)])
    kv_objects = [k for key in keys for k in b._page_keys(key)]
    idx_objects = b._component_keys(keys, sg.PoolName.INDEXER, 1)
    assert calls == [
        (kv_objects, {"chain": True, "chain_parent": b._page_keys(prefix[-1])[-1]}),
        (idx_objects, {"chain": True, "chain_parent": b._component_keys(prefix[-1:], sg.PoolName.INDEXER, 1)[-1]}),
        (b._component_keys(keys[-1:], sg.PoolName.SWA, 1), {})]
    assert b.store.batch_is_exist(kv_objects + idx_objects + b._component_keys(keys[-1:], sg.PoolName.SWA, 1)) == [1] * 10

    # Without extra_info (the controller's sidecar backup): a chain within the call, from no parent.
    calls.clear()
    more = _keys(2)
    b.batch_set_v2(transfers(more, [7, 8], [9, 10], [11]))
    assert [kw for _, kw in calls] == [{"chain": True, "chain_parent": None}] * 2 + [{}]
    rd = make(_HostPool(fill=False))
    dst_idx = _HostPool(mla=True, fill=False)
    rd.register_mem_host_pool_v2(dst_idx, sg.PoolName.INDEXER)
    got = rd.batch_get_v2([sg.PoolTransfer(name=sg.PoolName.INDEXER, host_indices=_indices([0, 1]), keys=more)])
    assert got[sg.PoolName.INDEXER] == [True, True]
    for s_, d in zip([9, 10], [0, 1]):
        assert torch.equal(idx_pool.page(s_ * PAGE).view(torch.int16), dst_idx.page(d * PAGE).view(torch.int16))


def test_generic_batch_set_writes_its_pages_as_one_chain_and_a_single_set_unlinked(node, make):
    # The generic path (no interface_v1): sglang's _generic_page_set hands batch_set one operation's pages in prefix
    # order but no extra_info, so the backend cannot know the parent: a chain within the call, from no parent. A
    # single set() cannot know its neighbours: unlinked. Tensors and raw (pointer, size) ranges alike.
    b = make(extra=_extra(node, interface_v1=0))
    calls = record_puts(b.store, "batch_put_from")
    keys = _keys(7)
    objects = [b._object_key(k) for k in keys]
    vals = [torch.full((64,), float(i)) for i in range(7)]
    assert b.batch_set(keys[:3], values=vals[:3]) is True
    assert calls == [(objects[:3], {"chain": True, "chain_parent": None})]
    assert b.set(keys[3], vals[3]) is True
    assert calls[1] == ([objects[3]], {})
    # Raw ranges; the first is stored already (skipped) and one has no value: two runs, each continuing the key
    # before it (a parent the node does not hold is no link, as for any chained put).
    calls.clear()
    raw = torch.stack(vals)
    locs = [raw[i].data_ptr() for i in range(7)]
    sizes = [raw[i].numel() * raw[i].element_size() for i in range(7)]
    locs[5] = None
    assert b.batch_set(keys[3:], target_locations=locs[3:], target_sizes=sizes[3:]) is False   # keys[5] had no value
    assert calls == [([objects[4]], {"chain": True, "chain_parent": objects[3]}),
                     ([objects[6]], {"chain": True, "chain_parent": objects[5]})]
    assert b.store.batch_is_exist(objects) == [1, 1, 1, 1, 1, 0, 1]
    for i in (0, 1, 2, 3, 4, 6):
        out = torch.empty(64)
        assert b.get(keys[i], out) is out and torch.equal(out, vals[i])


def test_zero_copy_mla_round_trip(make):
    src = _HostPool(mla=True, seed=2)
    w = make(src, mla=True, tp_rank=0)
    keys = _keys(3)
    assert w.batch_set_v1(keys, _indices([4, 5, 6])) == [True] * 3
    dst = _HostPool(mla=True, fill=False)
    r = make(dst, mla=True, tp_rank=1)
    assert r.batch_exists(keys) == 3
    assert r.batch_get_v1(keys, _indices([0, 1, 2])) == [True] * 3
    for s, d in zip([4, 5, 6], [0, 1, 2]):
        assert torch.equal(src.page(s * PAGE).view(torch.int16), dst.page(d * PAGE).view(torch.int16))


def test_batch_exists_counts_consecutive_hits(make):
    pool = _HostPool(seed=3)
    b = make(pool)
    k = _keys(4)
    assert b.batch_set_v1([k[0], k[1], k[3]], _indices([0, 1, 3])) == [True] * 3
    assert b.batch_exists(k) == 2  # hit, hit, miss, hit
    assert b.batch_exists([k[2], k[0]]) == 0
    assert b.batch_exists([]) == 0
    assert b.exists(k[0]) is True and b.exists(k[2]) is False
    got = b.batch_get_v1(k, _indices([8, 9, 10, 11]))
    assert got == [True, True, False, True] and all(isinstance(x, bool) for x in got)
    assert b.batch_get_v1([], torch.empty(0, dtype=torch.int64)) == []


def test_tp_ranks_are_isolated_mla_shared(make):
    pool = _HostPool(seed=4)
    t0 = make(pool, tp_rank=0)
    t1 = make(_HostPool(fill=False), tp_rank=1)
    keys = _keys(2)
    assert t0.batch_set_v1(keys, _indices([0, 1])) == [True, True]
    assert t0.batch_exists(keys) == 2
    assert t1.batch_exists(keys) == 0
    assert t1.batch_get_v1(keys, _indices([0, 1])) == [False, False]
    assert t0._page_keys("x") != t1._page_keys("x")
    # MLA: no TP suffix; rank 1 reads what rank 0 wrote, and rank 1 never writes.
    m0 = make(_HostPool(mla=True, seed=5), mla=True, tp_rank=0)
    m1 = make(_HostPool(mla=True, fill=False), mla=True, tp_rank=1)
    assert m0._page_keys("x") == m1._page_keys("x") == ["org-model-x_x__k"]
    mkeys = _keys(2)
    assert m1.batch_set_v1(mkeys, _indices([0, 1])) == [True, True]  # skipped (rank != 0)
    assert m0.batch_exists(mkeys) == 0
    assert m0.batch_set_v1(mkeys, _indices([0, 1])) == [True, True]
    assert m1.batch_exists(mkeys) == 2
    # Another model name does not see the keys either.
    other = make(_HostPool(fill=False), tp_rank=0, model="org/other")
    assert other.batch_exists(keys) == 0
    # PP rank is part of the suffix when pp_size > 1.
    p1 = make(_HostPool(fill=False), tp_rank=0, pp_rank=1, pp_size=2)
    assert p1._page_keys("x") == ["org-model-x_x_0_1_k", "org-model-x_x_0_1_v"]


def test_generic_set_get_tensors(node, make):
    b = make(extra=_extra(node, interface_v1=0))
    keys = _keys(3)
    vals = [torch.randn(4, 5, dtype=torch.float32), torch.arange(100, dtype=torch.int64),
            torch.randn(7, 3).to(torch.bfloat16)]
    assert b.set(keys[0], vals[0]) is True
    assert b.batch_set(keys[1:], values=vals[1:]) is True
    for k, v in zip(keys, vals):
        out = torch.empty_like(v)
        got = b.get(k, out)
        assert got is out and torch.equal(out.view(torch.uint8), v.view(torch.uint8))
    targets = [torch.zeros_like(v) for v in vals]
    res = b.batch_get(keys, targets)
    assert all(r is t for r, t in zip(res, targets))
    assert all(torch.equal(t.view(torch.uint8), v.view(torch.uint8)) for t, v in zip(targets, vals))
    raw = b.get(keys[1])  # no target: bytes as the pool's dtype (float16 here) or uint8
    assert raw.numel() * raw.element_size() == 800
    assert bytes(raw.view(torch.uint8).numpy()) == bytes(vals[1].view(torch.uint8).numpy())
    assert b.exists(keys[0]) and b.batch_exists(keys) == 3


def test_misses_never_none_lists(node, make):
    b = make(extra=_extra(node, interface_v1=0))
    k = _keys(3)
    assert b.exists(k[0]) is False
    assert b.get(k[0]) is None
    assert b.get(k[0], torch.empty(4)) is None
    assert b.set(k[1], torch.ones(4)) is True
    res = b.batch_get(k, [torch.empty(4) for _ in k])
    assert isinstance(res, list) and len(res) == 3 and res[0] is None and res[2] is None
    assert torch.equal(res[1], torch.ones(4))
    alloc = b.batch_get(k)
    assert isinstance(alloc, list) and alloc[0] is None and alloc[2] is None
    assert torch.equal(alloc[1].view(torch.uint8), torch.ones(4).view(torch.uint8))
    assert b.batch_get([]) == []
    assert b.batch_exists(k) == 0
    assert b.batch_set([], values=[]) is False
    # A too-small target reads as a miss.
    assert b.get(k[1], torch.empty(2)) is None


def test_v2_pool_transfers(make):
    kv = _HostPool(seed=6)
    b = make(kv)
    side = _HostPool(mla=True, seed=7)  # any pool exposing get_page_buffer_meta
    b.register_mem_host_pool_v2(kv, sg.PoolName.KV)
    b.register_mem_host_pool_v2(side, sg.PoolName.INDEXER)
    keys = _keys(3)
    out = b.batch_set_v2([sg.PoolTransfer(name=sg.PoolName.KV, host_indices=_indices([0, 1, 2]), keys=keys),
                          sg.PoolTransfer(name=sg.PoolName.INDEXER, host_indices=_indices([3, 4]), keys=keys[:2])])
    assert out[sg.PoolName.KV] == [True] * 3 and out[sg.PoolName.INDEXER] == [True] * 2
    r = b.batch_exists_v2(keys, [sg.PoolTransfer(name=sg.PoolName.INDEXER, host_indices=_indices([3, 4, 5]),
                                                 keys=keys)])
    assert r.kv_hit_pages == 2  # the indexer pool has only the first two pages (all_pages policy)
    r2 = b.batch_exists_v2(keys, [sg.PoolTransfer(name=sg.PoolName.INDEXER, host_indices=_indices([3]),
                                                  keys=keys[1:2], hit_policy=sg.PoolHitPolicy.TRAILING_PAGES)])
    assert r2.kv_hit_pages == 2
    dst_kv, dst_side = _HostPool(fill=False), _HostPool(mla=True, fill=False)
    rd = make(dst_kv)
    rd.register_mem_host_pool_v2(dst_side, sg.PoolName.INDEXER)
    got = rd.batch_get_v2([sg.PoolTransfer(name=sg.PoolName.KV, host_indices=_indices([5, 6, 7]), keys=keys),
                           sg.PoolTransfer(name=sg.PoolName.INDEXER, host_indices=_indices([8, 9, 10]), keys=keys)])
    assert got[sg.PoolName.KV] == [True] * 3 and got[sg.PoolName.INDEXER] == [True, True, False]
    for s, d in zip([0, 1, 2], [5, 6, 7]):
        assert torch.equal(kv.page(s * PAGE).view(torch.int16), dst_kv.page(d * PAGE).view(torch.int16))
    for s, d in zip([3, 4], [8, 9]):
        assert torch.equal(side.page(s * PAGE).view(torch.int16), dst_side.page(d * PAGE).view(torch.int16))


def test_v2_newer_pool_names_and_sidecar_transfers(make):
    """sglang's newer PoolName members (DeepSeek V4 compressed pools, draft indexer / SWA), its
    SidecarPoolSpec / count_pool_hits / PoolTransferResult.update_* helpers, and a sidecar transfer
    (``indices_from_pool``) that carries no host indices of its own: it rides its source pool's."""
    assert {p.value for p in sg.PoolName} >= {
        "kv", "mamba", "swa", "indexer", "draft", "draft_indexer", "draft_swa", "deepseek_v4_c4",
        "deepseek_v4_c4_indexer", "deepseek_v4_c128", "deepseek_v4_c4_state",
        "deepseek_v4_c4_indexer_state", "deepseek_v4_c128_state"}
    spec = sg.SidecarPoolSpec(sg.PoolName.DEEPSEEK_V4_C4, sg.PoolName.KV)
    assert spec.hit_policy == sg.PoolHitPolicy.ALL_PAGES and sg.STORAGE_BATCH_SIZE == 128
    assert sg.count_pool_hits({"a": [True, False, True], "b": [True]}) == {"a": 1, "b": 1}
    res = sg.PoolTransferResult.empty()
    res.update_kv_hit_pages(3)
    res.update_kv_hit_pages(2)
    res.update_extra_pool_hit_pages({"swa": 1})
    assert res.kv_hit_pages == 3 and res.extra_pool_hit_pages == {"swa": 1}

    kv, c4, dswa = _HostPool(seed=11), _HostPool(mla=True, seed=12), _HostPool(mla=True, seed=13)
    b = make(kv)
    b.register_mem_host_pool_v2(kv, sg.PoolName.KV)
    b.register_mem_host_pool_v2(c4, sg.PoolName.DEEPSEEK_V4_C4)
    b.register_mem_host_pool_v2(dswa, sg.PoolName.DRAFT_SWA)
    keys = _keys(3)

    def transfers(kv_pages, swa_pages):
        return [sg.PoolTransfer(name=sg.PoolName.KV, host_indices=_indices(kv_pages), keys=keys),
                sg.PoolTransfer(name=sg.PoolName.DEEPSEEK_V4_C4, keys=keys, indices_from_pool=sg.PoolName.KV),
                sg.PoolTransfer(name=sg.PoolName.DRAFT_SWA, host_indices=_indices(swa_pages), keys=keys[-1:],
                                hit_policy=sg.PoolHitPolicy.TRAILING_PAGES)]

    out = b.batch_set_v2(transfers([0, 1, 2], [5]))
    assert out[sg.PoolName.KV] == [True] * 3 and out[sg.PoolName.DEEPSEEK_V4_C4] == [True] * 3
    assert out[sg.PoolName.DRAFT_SWA] == [True]
    ex = b.batch_exists_v2(keys, transfers([0, 1, 2], [5])[1:])
    assert ex.kv_hit_pages == 3 and ex.extra_pool_hit_pages[sg.PoolName.DEEPSEEK_V4_C4] == 3
    dst_kv, dst_c4, dst_swa = _HostPool(fill=False), _HostPool(mla=True, fill=False), _HostPool(mla=True, fill=False)
    rd = make(dst_kv)
    rd.register_mem_host_pool_v2(dst_kv, sg.PoolName.KV)
    rd.register_mem_host_pool_v2(dst_c4, sg.PoolName.DEEPSEEK_V4_C4)
    rd.register_mem_host_pool_v2(dst_swa, sg.PoolName.DRAFT_SWA)
    got = rd.batch_get_v2(transfers([7, 8, 9], [12]))
    assert all(got[n] == [True] * len(v) for n, v in
               [(sg.PoolName.KV, keys), (sg.PoolName.DEEPSEEK_V4_C4, keys), (sg.PoolName.DRAFT_SWA, [1])])
    for s_, d in zip([0, 1, 2], [7, 8, 9]):  # the sidecar's pages went to the KV transfer's slots, in its own pool
        assert torch.equal(c4.page(s_ * PAGE).view(torch.int16), dst_c4.page(d * PAGE).view(torch.int16))
        assert torch.equal(kv.page(s_ * PAGE).view(torch.int16), dst_kv.page(d * PAGE).view(torch.int16))
    assert torch.equal(dswa.page(5 * PAGE).view(torch.int16), dst_swa.page(12 * PAGE).view(torch.int16))
    # a sidecar whose source pool is not in the call cannot be placed: each of its pages fails, nothing raises
    lone = rd.batch_get_v2([sg.PoolTransfer(name=sg.PoolName.DEEPSEEK_V4_C4, keys=keys,
                                            indices_from_pool=sg.PoolName.KV)])
    assert lone[sg.PoolName.DEEPSEEK_V4_C4] == [False] * 3


def test_clear_stats_close(node, make):
    b = make(_HostPool(seed=8))
    keys = _keys(4)
    assert b.batch_set_v1(keys, _indices([0, 1, 2, 3])) == [True] * 4
    assert b.batch_get_v1(keys[:2], _indices([4, 5])) == [True, True]
    stats = b.get_stats()
    assert stats.backup_pgs == [4] and stats.prefetch_pgs == [2]
    assert len(stats.backup_bandwidth) == 1 and stats.backup_bandwidth[0] > 0
    assert b.get_stats().backup_pgs == []  # drained
    assert isinstance(b.node_stats(), dict)
    b.clear()
    assert b.batch_exists(keys) == 0
    b.close()
    b.close()  # idempotent
    with pytest.raises(Exception):
        b.batch_exists(keys)


def test_config_from_env(node, monkeypatch):
    monkeypatch.setenv("KVASIR_SERVERS", node.address)
    extra = {"backend_name": "kvasir", "module_path": "kvasir.integrations.sglang",
             "class_name": "KvasirHiCacheStorage", "interface_v1": 1}
    b = _create_dynamic(_config(extra=extra), _HostPool())
    try:
        assert (b.store.host, b.store.port) == (node.host, node.port)
        assert b.batch_exists(_keys(1)) == 0
    finally:
        b.close()


def test_auth_key_from_extra_config(auth_node):
    from conftest import AUTH_KEY
    extra = {"backend_name": "kvasir", "module_path": "kvasir.integrations.sglang",
             "class_name": "KvasirHiCacheStorage", "servers": auth_node.address, "auth_key": AUTH_KEY,
             "interface_v1": 1}
    b = _create_dynamic(_config(extra=extra), _HostPool(seed=9))
    try:
        keys = _keys(2)
        assert b.batch_set_v1(keys, _indices([0, 1])) == [True, True]
        assert b.batch_exists(keys) == 2
    finally:
        b.close()


def test_clear_removes_every_key_of_its_prefix_even_those_another_instance_wrote(node, make):
    # clear() uses the node's REMOVE_PREFIX: nothing tracked, so a restarted backend (or another rank) clears all.
    writer = make(_HostPool(seed=9))
    other_model = make(_HostPool(seed=10), model="org/other-model")
    keys = _keys(3)
    assert writer.batch_set_v1(keys, _indices([0, 1, 2])) == [True] * 3
    assert other_model.batch_set_v1(keys, _indices([0, 1, 2])) == [True] * 3
    fresh = make(_HostPool(seed=9))  # same model, wrote nothing itself
    fresh.clear()
    assert writer.batch_exists(keys) == 0
    assert other_model.batch_exists(keys) == 3
    other_model.clear()
    assert other_model.batch_exists(keys) == 0
