"""KvasirConnector with vLLM's hybrid KV cache manager (HMA): every kv-cache group is saved and loaded.

Mirrored from vllm-project/vllm (not installable here): ``vllm/distributed/kv_transfer/kv_connector/v1/base.py``
(``SupportsHMA.request_finished_all_groups(request, block_ids: tuple[list[int], ...])``, ``supports_hma``; the
scheduler calls request_finished_all_groups instead of request_finished when the connector is a SupportsHMA, and the
connector factory refuses a connector that is not one while the hybrid manager is on), ``vllm/v1/kv_cache_interface.py``
(``KVCacheConfig(num_blocks, kv_cache_tensors, kv_cache_groups)``, ``KVCacheGroupSpec(layer_names, kv_cache_spec)``,
``FullAttentionSpec``, ``SlidingWindowSpec(sliding_window)``, ``MambaSpec``) and the sliding-window manager's rule:
blocks before ``(num_computed_tokens - sliding_window + 1) // block_size`` are freed and show as the null block (id 0)
in the request's block table.
"""
import uuid
from dataclasses import dataclass, field
from typing import List

import pytest

torch = pytest.importorskip("torch")

from kvasir import KvStore  # noqa: E402
from kvasir.integrations import vllm as V  # noqa: E402
from vllm_standins import (BS, NUM_BLOCKS, CacheConfig, ForwardContext, KVTransferConfig, ModelConfig,  # noqa: E402
                           NewRequestData, ParallelConfig, Request, SchedulerOutput, VllmConfig)


@dataclass
class FullAttentionSpec:
    block_size: int


@dataclass
class SlidingWindowSpec:
    block_size: int
    sliding_window: int


@dataclass
class MambaSpec:
    block_size: int


@dataclass
class KVCacheGroupSpec:
    layer_names: List[str]
    kv_cache_spec: object
    is_eagle_group: bool = False


@dataclass
class KVCacheConfig:
    num_blocks: int = NUM_BLOCKS
    kv_cache_tensors: list = field(default_factory=list)
    kv_cache_groups: list = field(default_factory=list)


class GroupBlocks:
    """KVCacheBlocks of a hybrid manager: one block-id list per group."""

    def __init__(self, *groups):
        self.groups = tuple(list(g) for g in groups)

    def get_block_ids(self):
        return self.groups


WINDOW = 6  # tokens


def hma_config():
    return KVCacheConfig(kv_cache_groups=[
        KVCacheGroupSpec(["full.0", "full.1"], FullAttentionSpec(BS)),
        KVCacheGroupSpec(["swa.0"], SlidingWindowSpec(BS, WINDOW))])


def caches(fill, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"full.0": (2, NUM_BLOCKS, BS, 2, 8), "full.1": (2, NUM_BLOCKS, BS, 2, 8), "swa.0": (2, NUM_BLOCKS, BS, 1, 8)}
    return {n: (torch.randn(s, generator=g) + 1 if fill else torch.zeros(s)).to(torch.float16) for n, s in shapes.items()}


def block(t, bid):
    return t.select(1, bid).contiguous().view(torch.uint8)


class HmaEngine:
    def __init__(self, address, model, fill=False, seed=0, kv_cache_config=None, staging=False):
        extra = {"kvasir_force_staging": "true"} if staging else {}
        cfg = VllmConfig(KVTransferConfig(kv_load_failure_policy="recompute", kv_connector_extra_config=extra),
                         CacheConfig(), ModelConfig(model), ParallelConfig())
        kcc = kv_cache_config or hma_config()
        self.sched = V.KvasirConnector(cfg, V.KVConnectorRole.SCHEDULER, kcc, store=KvStore(address, request_timeout=10))
        self.worker = V.KvasirConnector(cfg, V.KVConnectorRole.WORKER, kcc, store=KvStore(address, request_timeout=10))
        self.caches = caches(fill, seed)
        self.worker.register_kv_caches(self.caches)

    def step(self, request, *groups):
        n = self.sched.get_num_new_matched_tokens(request, 0)[0]
        self.sched.update_state_after_alloc(request, GroupBlocks(*groups), n)
        out = SchedulerOutput(
            scheduled_new_reqs=[NewRequestData(request.request_id, request.prompt_token_ids,
                                               tuple(list(g) for g in groups), n)],
            num_scheduled_tokens={request.request_id: len(request.prompt_token_ids) - n})
        meta = self.sched.build_connector_meta(out)
        self.worker.bind_connector_metadata(meta)
        self.worker.start_load_kv(ForwardContext())
        self.worker.wait_for_save()
        errors = self.worker.get_block_ids_with_load_errors()
        self.worker.clear_connector_metadata()
        return n, meta, errors

    def close(self):
        self.worker.shutdown()
        self.sched.shutdown()


@pytest.fixture
def hma(node):
    made = []

    def make(**kw):
        e = HmaEngine(node.address, **kw)
        made.append(e)
        return e
    yield make
    for e in made:
        e.close()


def test_the_connector_declares_the_hybrid_manager_interface():
    assert issubclass(V.KvasirConnector, V.SupportsHMA) and V.supports_hma(V.KvasirConnector)


@pytest.mark.parametrize("staging", [False, True], ids=["in-place", "staging"])
def test_every_group_is_saved_and_a_sliding_window_group_loads_only_its_window(hma, node, staging):
    model = f"hma-{uuid.uuid4().hex[:12]}"
    toks = [100 + 3 * i for i in range(4 * BS + 1)]    # four full blocks and one token
    a = hma(model=model, fill=True, seed=3, staging=staging)
    a_full, a_swa = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    n, meta, errors = a.step(Request("a", toks), a_full, a_swa)
    assert n == 0 and not errors
    assert a.worker.stats["blocks_saved"] == 8 and a.worker.stats["blocks_save_failed"] == 0  # 4 blocks x 2 groups
    assert a.sched.request_finished_all_groups(Request("a", toks), (a_full, a_swa)) == (False, None)

    # Another engine: 16 tokens hit; the window (6 tokens) needs blocks 2 and 3 of the SWA group only, so the
    # hybrid manager gives the SWA group null blocks (0) for blocks 0 and 1.
    b = hma(model=model, staging=staging)
    b_full, b_swa = [11, 12, 13, 14, 15], [0, 0, 6, 7, 8]
    n, meta, errors = b.step(Request("b", toks), b_full, b_swa)
    assert n == 4 * BS and not errors
    for name in ("full.0", "full.1"):
        for s, d in zip(a_full[:4], b_full[:4]):
            assert torch.equal(block(a.caches[name], s), block(b.caches[name], d)), (name, s, d)
    for s, d in zip(a_swa[2:4], b_swa[2:4]):
        assert torch.equal(block(a.caches["swa.0"], s), block(b.caches["swa.0"], d)), (s, d)
    assert not block(b.caches["swa.0"], 0).any()   # the null block is never written
    assert b.worker.stats["blocks_loaded"] == 4 + 2

    # Without the SWA group's last block the 16-token hit is not restorable; 12 tokens are (window: blocks 1, 2).
    last = a.worker.block_key(chained_block_hash_hex(toks, 3), group=1)
    assert KvStore(node.address).remove(last) == 0
    c = hma(model=model)
    assert c.sched.get_num_new_matched_tokens(Request("c", toks), 0) == (3 * BS, False)


def chained_block_hash_hex(toks, i):
    return V.chained_block_hashes(toks, BS)[i].hex()


def test_a_group_kind_it_cannot_restore_is_refused_with_the_reason(node):
    kcc = KVCacheConfig(kv_cache_groups=[KVCacheGroupSpec(["full.0"], FullAttentionSpec(BS)),
                                         KVCacheGroupSpec(["mamba.0"], MambaSpec(BS))])
    with pytest.raises(ValueError, match="MambaSpec"):
        HmaEngine(node.address, model="m", kv_cache_config=kcc)
