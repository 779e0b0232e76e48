"""KvasirConnector (vLLM v1 KV connector) against a real node, with real torch CPU tensors.

vLLM cannot be installed here, so the objects vLLM hands the connector are the minimal stand-ins of
vllm_standins.py (mirroring vLLM at commit 003df296; see there). The connector subclasses its own
documented stand-in of KVConnectorBase_V1 because vLLM is not importable.
"""
import os
import subprocess
import sys
import uuid

import pytest

torch = pytest.importorskip("torch")

from kvasir import KvStore  # noqa: E402
from kvasir.integrations.vllm import (KVConnectorRole, KvasirConnector,  # noqa: E402
                                      KvasirConnectorMetadata, SupportsHMA, chained_block_hashes, supports_hma)
from conftest import record_puts  # noqa: E402
from vllm_standins import (BS, NUM_BLOCKS, CacheConfig, CachedRequestData, CountingStore,  # noqa: E402
                           ForwardContext, FullAttentionSpec, KVCacheBlocks, KVCacheConfig, KVCacheGroupSpec,
                           KVTransferConfig, MambaSpec, ModelConfig, NewRequestData, ParallelConfig, Request,
                           SchedulerOutput, SlidingWindowSpec, VllmConfig, remembering)


# ------------------------------------------------------------------ helpers

def make_caches(fill: bool, seed: int = 0):
    """Three layers: two FlashAttention-layout [2, blocks, bs, heads, dim] (fp32, fp16) and one
    MLA-like [blocks, bs, dim] (bf16)."""
    shapes = {"model.layers.0.attn": ((2, NUM_BLOCKS, BS, 2, 8), torch.float32),
              "model.layers.1.attn": ((2, NUM_BLOCKS, BS, 2, 8), torch.float16),
              "model.layers.2.attn": ((NUM_BLOCKS, BS, 16), torch.bfloat16)}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, dtype) in shapes.items():
        out[name] = (torch.randn(shape, generator=g).to(dtype) + 1) if fill else torch.zeros(shape, dtype=dtype)
    return out


def block_of(tensor, block_id):
    bdim = 1 if tensor.dim() == 5 else 0
    return tensor.select(bdim, block_id).contiguous().view(torch.uint8)


class Engine:
    """A scheduler-side and a worker-side connector, each with its own store, as one vLLM engine."""

    def __init__(self, address, model, tp_rank=0, tp_size=1, role="kv_both", fill=False, seed=0, transport=None,
                 device="cpu", kv_cache_config=None, caches=make_caches, **extra):
        cfg = VllmConfig(KVTransferConfig(kv_role=role, kv_connector_extra_config={"kvasir_tp_rank": tp_rank, **extra}),
                         CacheConfig(), ModelConfig(model), ParallelConfig(tensor_parallel_size=tp_size))
        kcc = kv_cache_config or KVCacheConfig()
        self.sched_store = CountingStore(KvStore(address, request_timeout=10))
        self.worker_store = KvStore(address, transport=transport, request_timeout=10)
        self.sched = KvasirConnector(cfg, KVConnectorRole.SCHEDULER, kcc, store=self.sched_store)
        self.worker = KvasirConnector(cfg, KVConnectorRole.WORKER, kcc, store=self.worker_store)
        self.caches = {name: t.to(device) for name, t in caches(fill, seed).items()}
        self.worker.register_kv_caches(self.caches)

    def schedule(self, request, block_ids, num_scheduled=None):
        """``block_ids``: a list (one kv-cache group) or a tuple of per-group lists."""
        n = self.sched.get_num_new_matched_tokens(request, 0)[0]
        blocks = KVCacheBlocks(block_ids)
        self.sched.update_state_after_alloc(request, blocks, n)
        total = len(request.prompt_token_ids)
        out = SchedulerOutput(
            scheduled_new_reqs=[NewRequestData(request.request_id, request.prompt_token_ids, blocks.get_block_ids(), n)],
            num_scheduled_tokens={request.request_id: (total - n) if num_scheduled is None else num_scheduled})
        return n, self.sched.build_connector_meta(out)

    def execute(self, meta, between=None):
        """One forward pass on the worker; returns the load errors."""
        self.worker.bind_connector_metadata(meta)
        self.worker.start_load_kv(ForwardContext())
        for name, tensor in self.caches.items():
            self.worker.wait_for_layer_load(name)
            self.worker.save_kv_layer(name, tensor, None)
        self.worker.wait_for_save()
        errors = self.worker.get_block_ids_with_load_errors()
        self.worker.clear_connector_metadata()
        return errors

    def step(self, request, block_ids):
        n, meta = self.schedule(request, block_ids)
        return n, meta, self.execute(meta)

    def close(self):
        self.worker.shutdown()
        self.sched.shutdown()
        self.worker_store.close()   # the connectors leave the stores they were given open
        self.sched_store.close()


@pytest.fixture
def engines(node):
    make, close_all = remembering(lambda **kw: Engine(node.address, **kw), Engine.close)
    yield make
    close_all()


def prompt(n_tokens, base=1000):
    return [base + 7 * i for i in range(n_tokens)]


def model_name():
    return f"test-model-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ tests

def test_hashes_are_chained():
    toks = prompt(20)
    h = chained_block_hashes(toks, BS)
    assert len(h) == 5 and len(set(h)) == 5
    assert chained_block_hashes(toks[:8] + prompt(12, base=5), BS)[:2] == h[:2]
    assert chained_block_hashes(prompt(4, base=5) + toks[4:], BS)[1] != h[1]  # prefix-dependent
    assert chained_block_hashes(toks, BS, salt="s")[0] != h[0]
    assert chained_block_hashes(toks[:3], BS) == []


def test_save_then_other_engine_hits_and_loads_byte_exact(engines):
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=1)
    a_ids = [3, 7, 1, 9, 12]
    n, meta, errors = a.step(Request("a1", toks), a_ids)
    assert n == 0 and not errors
    assert [bid for bid, _ in meta.requests[0].save] == a_ids
    assert a.worker.stats["blocks_saved"] == 5 and a.worker.stats["blocks_save_failed"] == 0
    assert a.worker.stats["blocks_saved_local"] == 5   # the node is on this host: straight into its arena

    b = engines(model=model, fill=False)  # new stores, zeroed caches: another engine
    b_ids = [5, 2, 8, 11, 0]
    n, meta, errors = b.step(Request("b1", toks), b_ids)
    assert n == 4 * BS  # not 5 blocks: at least one token must remain to compute
    assert not errors
    assert [bid for bid, _ in meta.requests[0].load] == b_ids[:4]
    assert meta.requests[0].save == []  # all 5 blocks are already stored
    assert b.worker.last_loaded_block_ids == {"b1": b_ids[:4]}
    assert b.worker.stats["blocks_loaded_local"] == 4
    for name in a.caches:
        for src, dst in zip(a_ids[:4], b_ids[:4]):
            assert torch.equal(block_of(a.caches[name], src), block_of(b.caches[name], dst)), (name, src, dst)
        for other in set(range(NUM_BLOCKS)) - set(b_ids[:4]):
            assert not block_of(b.caches[name], other).any(), (name, other)


def test_each_request_saves_its_blocks_as_one_chain_continuing_the_block_before(engines):
    # Issue 17 item 4: the node's chain-aware eviction sees a request's blocks as a chain only if the connector says so.
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=1)
    calls = record_puts(a.worker_store, "batch_put_from_multi_buffers_local")
    hashes = [h.hex() for h in chained_block_hashes(toks + prompt(3 * BS, base=9), BS)]
    a.step(Request("a1", toks), [3, 7, 1, 9, 12])
    assert calls == [([a.worker.block_key(h) for h in hashes[:5]], {"chain": True, "chain_parent": None})]
    # the next turn: the first five blocks are stored, its three new ones continue block 4
    n, meta, errors = a.step(Request("a2", toks + prompt(3 * BS, base=9)), [3, 7, 1, 9, 12, 4, 5, 6])
    assert n == 5 * BS and not errors
    assert calls[1] == ([a.worker.block_key(h) for h in hashes[5:]], {"chain": True, "chain_parent": a.worker.block_key(hashes[4])})
    assert a.worker.stats["blocks_saved"] == 8 and a.worker.stats["blocks_save_failed"] == 0
    # two requests in one step: two chains, one write each, the codes back in the plan's order
    calls.clear()
    b1, b2 = prompt(2 * BS, base=20000), prompt(3 * BS, base=30000)
    _, m1 = a.schedule(Request("b1", b1), [0, 2])
    _, m2 = a.schedule(Request("b2", b2), [8, 10, 11])
    both = KvasirConnectorMetadata(requests=m1.requests + m2.requests)
    assert not a.execute(both)
    assert [(len(keys), links["chain_parent"]) for keys, links in calls] == [(2, None), (3, None)]
    assert a.worker.stats["blocks_saved"] == 13 and a.worker.stats["blocks_save_failed"] == 0
    assert a.sched_store.batch_is_exist([a.worker.block_key(h.hex()) for h in chained_block_hashes(b2, BS)]) == [1, 1, 1]


def test_partial_prefix_and_trailing_token(engines):
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=2)
    a.step(Request("a", toks), [0, 1, 2, 3, 4])
    b = engines(model=model)
    shared2 = toks[:2 * BS] + prompt(3 * BS, base=9)
    assert b.sched.get_num_new_matched_tokens(Request("s2", shared2), 0) == (2 * BS, False)
    # five full stored blocks plus one more token: all five blocks are usable
    assert b.sched.get_num_new_matched_tokens(Request("p1", toks + [1]), 0) == (5 * BS, False)
    # locally computed tokens are subtracted
    assert b.sched.get_num_new_matched_tokens(Request("p2", toks + [2]), 2 * BS) == (3 * BS, False)
    assert b.sched.get_num_new_matched_tokens(Request("miss", prompt(5 * BS, base=3)), 0) == (0, False)


def test_keys_differ_by_tp_rank_and_model(engines):
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=3)
    h = chained_block_hashes(toks, BS)[0].hex()
    t0 = engines(model=model, tp_rank=0, tp_size=2, fill=True, seed=4)
    t1 = engines(model=model, tp_rank=1, tp_size=2, fill=True, seed=5)
    other = engines(model=model + "-other")
    keys = {a.worker.block_key(h), t0.worker.block_key(h), t1.worker.block_key(h), other.worker.block_key(h)}
    assert len(keys) == 4
    assert "tp1of2" in t1.worker.block_key(h) and model in a.worker.block_key(h)

    a.step(Request("a", toks), [0, 1, 2, 3, 4])
    assert other.sched.get_num_new_matched_tokens(Request("o", toks), 0) == (0, False)
    probe = engines(model=model, tp_size=2)
    assert probe.sched.get_num_new_matched_tokens(Request("p", toks), 0) == (0, False)
    t0.step(Request("t0", toks), [0, 1, 2, 3, 4])  # rank 0 only: rank 1's keys are missing
    probe = engines(model=model, tp_size=2)
    assert probe.sched.get_num_new_matched_tokens(Request("p", toks), 0) == (0, False)
    t1.step(Request("t1", toks), [0, 1, 2, 3, 4])
    probe = engines(model=model, tp_size=2)
    assert probe.sched.get_num_new_matched_tokens(Request("p", toks), 0) == (4 * BS, False)

    # each tp rank loads its own shard
    for rank, src in ((0, t0), (1, t1)):
        w = engines(model=model, tp_rank=rank, tp_size=2)
        n, meta = w.schedule(Request(f"r{rank}", toks), [10, 11, 12, 13, 14])
        assert n == 4 * BS and not w.execute(meta)
        for name in src.caches:
            assert torch.equal(block_of(src.caches[name], 2), block_of(w.caches[name], 12))


def test_missing_and_short_blocks_are_load_errors(engines, node):
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=6)
    a.step(Request("a", toks), [0, 1, 2, 3, 4])
    b = engines(model=model)
    b_ids = [6, 7, 8, 9, 10]
    n, meta = b.schedule(Request("b", toks), b_ids)
    assert n == 4 * BS
    hashes = chained_block_hashes(toks, BS)
    with KvStore(node.address, request_timeout=10) as s:  # evicted / overwritten after scheduling
        assert s.remove(b.worker.block_key(hashes[2].hex())) == 0
        assert s.put(b.worker.block_key(hashes[1].hex()), b"short") == 0
    errors = b.execute(meta)
    assert errors == {7, 8}
    assert b.worker.last_loaded_block_ids == {"b": [6]}  # block 9 arrived but follows a failure
    assert b.worker.stats["blocks_load_failed"] == 2
    assert b.worker.stats["blocks_loaded_local"] == 0   # a block missing from the arena: the socket path reports each one
    # reported for that forward pass only
    b.worker.bind_connector_metadata(KvasirConnectorMetadata())
    assert b.worker.get_block_ids_with_load_errors() == set()


def test_exists_called_once_per_request(engines):
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=7)
    a.step(Request("a", toks), [0, 1, 2, 3, 4])
    assert a.sched_store.exists_calls == 1
    b = engines(model=model)
    r1, r2 = Request("r1", toks), Request("r2", toks[:2 * BS] + prompt(3 * BS, base=11))
    for _ in range(3):  # vLLM may ask again while a request waits
        assert b.sched.get_num_new_matched_tokens(r1, 0) == (4 * BS, False)
    assert b.sched.get_num_new_matched_tokens(r2, 0) == (2 * BS, False)
    b.sched.update_state_after_alloc(r1, KVCacheBlocks([0, 1, 2, 3, 4]), 4 * BS)
    b.sched.build_connector_meta(SchedulerOutput(
        scheduled_new_reqs=[NewRequestData("r1", toks, ([0, 1, 2, 3, 4],), 4 * BS)],
        num_scheduled_tokens={"r1": BS}))
    assert b.sched_store.exists_calls == 2


def test_blocks_saved_over_the_socket_load_through_the_arena_and_back(engines):
    # One engine on TCP (as for a node on another host: CPU caches read in place), one on this
    # host's shared-memory path: the two paths must agree byte for byte, both ways.
    model, toks = model_name(), prompt(5 * BS)
    tcp = engines(model=model, fill=True, seed=9, transport="tcp")
    tcp.step(Request("t", toks), [0, 1, 2, 3, 4])
    assert tcp.worker.stats["blocks_saved"] == 5 and tcp.worker.stats["blocks_saved_local"] == 0
    local = engines(model=model)
    n, meta, errors = local.step(Request("l", toks), [4, 3, 2, 1, 0])
    assert n == 4 * BS and not errors and local.worker.stats["blocks_loaded_local"] == 4
    for name in tcp.caches:
        for src, dst in zip([0, 1, 2, 3], [4, 3, 2, 1]):
            assert torch.equal(block_of(tcp.caches[name], src), block_of(local.caches[name], dst))

    other, toks2 = model_name(), prompt(5 * BS, base=77)
    saver = engines(model=other, fill=True, seed=10)
    saver.step(Request("s", toks2), [5, 6, 7, 8, 9])
    assert saver.worker.stats["blocks_saved_local"] == 5
    reader = engines(model=other, transport="tcp")
    n, meta, errors = reader.step(Request("r", toks2), [9, 8, 7, 6, 5])
    assert n == 4 * BS and not errors and reader.worker.stats["blocks_loaded_local"] == 0
    for name in saver.caches:
        for src, dst in zip([5, 6, 7, 8], [9, 8, 7, 6]):
            assert torch.equal(block_of(saver.caches[name], src), block_of(reader.caches[name], dst))


def test_staging_path_and_chunked_prefill(engines):
    """The host-staging path (used for CUDA tensors) forced on CPU, and a prompt saved over two
    scheduler steps (chunked prefill: the second chunk comes as a cached request)."""
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=8, kvasir_force_staging=True)
    ids = [2, 4, 6, 8, 10]
    n, meta = a.schedule(Request("a", toks), ids, num_scheduled=2 * BS)
    assert [bid for bid, _ in meta.requests[0].save] == [2, 4]
    a.execute(meta)
    meta = a.sched.build_connector_meta(SchedulerOutput(
        scheduled_cached_reqs=CachedRequestData(["a"], set(), [None], [2 * BS]),
        num_scheduled_tokens={"a": 3 * BS}))
    assert [bid for bid, _ in meta.requests[0].save] == [6, 8, 10]
    a.execute(meta)
    assert a.worker.stats["blocks_saved"] == 5 and a.worker.stats["blocks_saved_local"] == 0

    b = engines(model=model, kvasir_force_staging=True)
    n, meta, errors = b.step(Request("b", toks), [1, 3, 5, 7, 9])
    assert n == 4 * BS and not errors
    for name in a.caches:
        for src, dst in zip(ids[:4], [1, 3, 5, 7]):
            assert torch.equal(block_of(a.caches[name], src), block_of(b.caches[name], dst))
        assert not block_of(b.caches[name], 9).any()


def test_a_requeued_request_is_looked_up_again_and_sees_blocks_stored_since(engines):
    # vLLM asks get_num_new_matched_tokens again for a preempted request; what other engines stored meanwhile
    # must count (before: the first answer was kept for the request's lifetime).
    model, toks = model_name(), prompt(5 * BS)
    b = engines(model=model)
    req = Request("late", toks)
    assert b.sched.get_num_new_matched_tokens(req, 0) == (0, False)
    assert b.sched.get_num_new_matched_tokens(req, 0) == (0, False)   # still waiting: the answer is kept
    assert b.sched_store.exists_calls == 1
    b.sched.update_state_after_alloc(req, KVCacheBlocks([0, 1, 2, 3, 4]), 0)   # scheduled, computing ...
    a = engines(model=model, fill=True, seed=12)
    a.step(Request("other", toks), [5, 6, 7, 8, 9])                          # ... another engine stores the prompt
    assert b.sched.get_num_new_matched_tokens(req, 0) == (4 * BS, False)      # preempted, re-queued: asked again
    assert b.sched_store.exists_calls == 2


def test_a_present_but_broken_vllm_is_reported_not_replaced_by_the_stand_ins(tmp_path):
    broken = tmp_path / "vllm"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('CUDA driver mismatch')\n")
    python_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{python_dir}")
    r = subprocess.run([sys.executable, "-c", "import kvasir.integrations.vllm"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode != 0
    assert "vLLM is installed but its v1 KV connector interface does not import" in r.stderr
    assert "CUDA driver mismatch" in r.stderr


@pytest.mark.parametrize("policy", ["fail", "recompute"])
def test_the_load_failure_policy_is_checked_and_load_errors_are_reported_either_way(engines, node, policy, caplog):
    # vLLM's default ("fail") turns a block evicted between lookup and load into a failed request: the scheduler
    # says so, with the fix; with "recompute" it is quiet. The connector reports the block either way.
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=13)
    a.step(Request("a", toks), [0, 1, 2, 3, 4])
    b = engines(model=model)
    cfg = b.sched._vllm_config
    cfg.kv_transfer_config.kv_load_failure_policy = policy   # as vLLM parsed it
    caplog.clear()
    with caplog.at_level("WARNING", logger="kvasir.vllm"):
        sched = KvasirConnector(cfg, KVConnectorRole.SCHEDULER, KVCacheConfig(), store=b.sched_store)
    warned = [r.getMessage() for r in caplog.records if "kv_load_failure_policy" in r.getMessage()]
    assert sched.failure_policy == policy
    assert bool(warned) == (policy == "fail")
    assert all('"kv_load_failure_policy": "recompute"' in w for w in warned)
    b.sched = sched
    n, meta = b.schedule(Request("b", toks), [6, 7, 8, 9, 10])
    assert n == 4 * BS
    with KvStore(node.address, request_timeout=10) as s:   # evicted between lookup and load
        assert s.remove(b.worker.block_key(chained_block_hashes(toks, BS)[1].hex())) == 0
    assert b.execute(meta) == {7}
    assert b.worker.last_loaded_block_ids == {"b": [6]}


# Every method of vLLM's KVConnectorBase_V1 at the mirrored commit (vllm/distributed/kv_transfer/kv_connector/v1/
# base.py, 003df296): the stand-in must offer them all, so drift shows here even without vLLM installed.
UPSTREAM_BASE_METHODS = {
    "prefer_cross_layer_blocks", "supports_eagle_prefix_cache_hashing", "requires_kv_delivery",
    "set_eagle_prefix_cache_hashing", "role", "bind_connector_metadata", "clear_connector_metadata",
    "_get_connector_metadata", "has_connector_metadata", "register_kv_caches", "register_cross_layers_kv_cache",
    "set_host_xfer_buffer_ops", "handle_preemptions", "start_load_kv", "wait_for_layer_load", "save_kv_layer",
    "wait_for_save", "get_finished", "get_block_ids_with_load_errors", "shutdown", "get_kv_connector_stats",
    "get_kv_connector_kv_cache_events", "get_handshake_metadata", "build_connector_worker_meta",
    "bind_gpu_block_pool", "get_num_new_matched_tokens", "update_state_after_alloc", "build_connector_meta",
    "on_new_request", "update_connector_output", "request_finished", "take_events", "has_pending_push_work",
    "get_required_kvcache_layout", "requires_piecewise_for_cudagraph", "get_finished_count",
    "build_kv_connector_stats", "set_xfer_handshake_metadata", "set_xfer_handshake_metadata_pp_aware",
    "build_prom_metrics", "reset_cache",
}


def test_shutdown_leaves_a_store_it_was_given_open_and_forgets_the_caches_it_registered(node):
    """A caller that hands the connector its own store keeps using it after ``shutdown``: the connector closed it
    before, so the caller's next call failed; the kv caches registered in it are forgotten (they may be freed)."""
    cfg = VllmConfig(KVTransferConfig(kv_role="kv_both"), CacheConfig(), ModelConfig(model_name()), ParallelConfig())
    caches = make_caches(fill=True)
    with KvStore(node.address, request_timeout=10) as store:
        worker = KvasirConnector(cfg, KVConnectorRole.WORKER, KVCacheConfig(), store=store)
        worker.register_kv_caches(caches)
        worker.shutdown()
        assert store.put(b"after-shutdown", b"still open") == 0
        assert store.get(b"after-shutdown") == b"still open"
        assert [store.unregister_buffer(t.data_ptr()) for t in caches.values()] == [-1] * len(caches)   # NOT_FOUND


def test_the_connector_offers_every_method_of_the_upstream_base(engines):
    from kvasir.integrations import vllm as mod
    missing = sorted(m for m in UPSTREAM_BASE_METHODS if not hasattr(mod.KVConnectorBase_V1, m))
    assert missing == []
    e = engines(model=model_name())
    assert list(e.sched.take_events()) == [] and e.sched.has_pending_push_work() is False
    assert KvasirConnector.get_required_kvcache_layout(e.sched._vllm_config) is None
    assert e.sched.requires_kv_delivery is False     # a cache: a dropped save is only a future miss


# ------------------------------------------------------------------ hybrid KV cache manager (SupportsHMA)
# vllm-project/vllm @ 003df296, vllm/distributed/kv_transfer/kv_connector/v1/base.py: SupportsHMA
# (request_finished_all_groups(request, block_ids: tuple[list[int], ...])) and supports_hma; the scheduler calls
# request_finished_all_groups instead of request_finished for a SupportsHMA connector, and the factory refuses one
# that is not while the hybrid manager is on. vllm/v1/core/single_type_kv_cache_manager.py (sliding window): blocks
# before (num_computed_tokens - sliding_window + 1) // block_size are freed and show as the null block, id 0.

WINDOW = 6  # tokens


def hma_config():
    return KVCacheConfig(kv_cache_groups=[KVCacheGroupSpec(["full.0", "full.1"], FullAttentionSpec(BS)),
                                          KVCacheGroupSpec(["swa.0"], SlidingWindowSpec(BS, WINDOW))])


def hma_caches(fill, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"full.0": (2, NUM_BLOCKS, BS, 2, 8), "full.1": (2, NUM_BLOCKS, BS, 2, 8), "swa.0": (2, NUM_BLOCKS, BS, 1, 8)}
    return {n: (torch.randn(s, generator=g) + 1 if fill else torch.zeros(s)).to(torch.float16) for n, s in shapes.items()}


def test_the_connector_declares_the_hybrid_manager_interface():
    assert issubclass(KvasirConnector, SupportsHMA) and supports_hma(KvasirConnector)


@pytest.mark.parametrize("layout", ["block", "layer"])
@pytest.mark.parametrize("staging", [False, True], ids=["in-place", "staging"])
def test_every_group_is_saved_and_a_sliding_window_group_loads_only_its_window(engines, node, staging, layout):
    model, toks = model_name(), prompt(4 * BS + 1)        # four full blocks and one token
    extra = {"kvasir_force_staging": "true"} if staging else {}
    extra["kvasir_layout"] = layout   # layer: each kv-cache group's layers are numbered from 0 (full: L0, L1; swa: L0)
    a = engines(model=model, fill=True, seed=3, kv_cache_config=hma_config(), caches=hma_caches, **extra)
    a_full, a_swa = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    n, meta, errors = a.step(Request("a", toks), (a_full, a_swa))
    assert n == 0 and not errors
    assert a.worker.stats["blocks_saved"] == 8 and a.worker.stats["blocks_save_failed"] == 0  # 4 blocks x 2 groups
    assert a.sched.request_finished_all_groups(Request("a", toks), (a_full, a_swa)) == (False, None)

    # Another engine: 16 tokens hit; the window (6 tokens) needs blocks 2 and 3 of the SWA group only, so the
    # hybrid manager gives the SWA group null blocks (0) for blocks 0 and 1.
    b = engines(model=model, kv_cache_config=hma_config(), caches=hma_caches, **extra)
    b_full, b_swa = [11, 12, 13, 14, 15], [0, 0, 6, 7, 8]
    n, meta, errors = b.step(Request("b", toks), (b_full, b_swa))
    assert n == 4 * BS and not errors
    for name in ("full.0", "full.1"):
        for s, d in zip(a_full[:4], b_full[:4]):
            assert torch.equal(block_of(a.caches[name], s), block_of(b.caches[name], d)), (name, s, d)
    for s, d in zip(a_swa[2:4], b_swa[2:4]):
        assert torch.equal(block_of(a.caches["swa.0"], s), block_of(b.caches["swa.0"], d)), (s, d)
    assert not block_of(b.caches["swa.0"], 0).any()   # the null block is never written
    assert b.worker.stats["blocks_loaded"] == 4 + 2

    # Without the SWA group's last block the 16-token hit is not restorable; 12 tokens are (window: blocks 1, 2).
    last = a.worker.block_key(chained_block_hashes(toks, BS)[3].hex(), group=1, suffix="/L0" if layout == "layer" else "")
    assert KvStore(node.address).remove(last) == 0
    c = engines(model=model, kv_cache_config=hma_config(), caches=hma_caches, kvasir_layout=layout)
    assert c.sched.get_num_new_matched_tokens(Request("c", toks), 0) == (3 * BS, False)


def test_a_group_kind_it_cannot_restore_is_refused_with_the_reason(engines):
    kcc = KVCacheConfig(kv_cache_groups=[KVCacheGroupSpec(["full.0"], FullAttentionSpec(BS)),
                                         KVCacheGroupSpec(["mamba.0"], MambaSpec(BS))])
    with pytest.raises(ValueError, match="MambaSpec"):
        engines(model=model_name(), kv_cache_config=kcc)



def test_hybrid_groups_over_a_chunked_prefill(engines):
    """Two kv-cache groups saved over two scheduler steps: the second chunk's new blocks come per group in
    the cached request's new_block_ids, and are appended group by group."""
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=9, kv_cache_config=hma_config(), caches=hma_caches)
    n, meta = a.schedule(Request("a", toks), ([1, 2], [6, 7]), num_scheduled=2 * BS)
    assert [bid for bid, _ in meta.requests[0].save] == [1, 2]
    assert [(g, bid) for g, bid, _ in meta.requests[0].save_groups] == [(1, 6), (1, 7)]
    a.execute(meta)
    meta = a.sched.build_connector_meta(SchedulerOutput(
        scheduled_cached_reqs=CachedRequestData(["a"], set(), [([3, 4, 5], [8, 9, 10])], [2 * BS]),
        num_scheduled_tokens={"a": 3 * BS}))
    assert [bid for bid, _ in meta.requests[0].save] == [3, 4, 5]
    assert [bid for _, bid, _ in meta.requests[0].save_groups] == [8, 9, 10]
    a.execute(meta)
    assert a.worker.stats["blocks_saved"] == 10

    b = engines(model=model, kv_cache_config=hma_config(), caches=hma_caches)
    n, meta, errors = b.step(Request("b", toks), ([11, 12, 13, 14, 15], [0, 0, 1, 2, 3]))
    assert n == 4 * BS and not errors
    assert [bid for _, bid, _ in meta.requests[0].load_groups] == [1, 2]   # the window's blocks 2 and 3
    for s, d in zip([8, 9], [1, 2]):
        assert torch.equal(block_of(a.caches["swa.0"], s), block_of(b.caches["swa.0"], d))
