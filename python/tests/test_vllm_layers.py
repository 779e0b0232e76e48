"""KvasirConnector's per-layer-group values and asynchronous loads/saves (kvasir_layout, _vllm_layers.py), against real
nodes with real torch tensors (CPU; the CUDA case skips without a device).

Hooks as vLLM's v1 model runner calls them (vllm-project/vllm @ 003df296, base.py): start_load_kv before the forward
pass, wait_for_layer_load(layer) inside each attention layer before it reads the cache, save_kv_layer(layer, ...)
after it wrote its KV, wait_for_save as the forward context exits, then get_block_ids_with_load_errors."""
import os
import sys
import threading

import pytest

torch = pytest.importorskip("torch")

from conftest import wait_until  # noqa: E402
from kvasir import KvStore  # noqa: E402
from kvasir.integrations.vllm import KVConnectorRole, KvasirConnector, chained_block_hashes  # noqa: E402
from test_vllm import Engine, block_of, engines, model_name, prompt  # noqa: E402,F401 (engines: a fixture)
from vllm_standins import (BS, CacheConfig, ForwardContext, FullAttentionSpec, KVCacheConfig,  # noqa: E402
                           KVCacheGroupSpec, KVTransferConfig, ModelConfig, ParallelConfig, Request, VllmConfig,
                           remembering)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

LAYERS = ["model.layers.0.attn", "model.layers.1.attn", "model.layers.2.attn"]   # test_vllm.make_caches' layers


def one_group():
    """vLLM's kv_cache_config for a model without the hybrid manager: one group naming every layer."""
    return KVCacheConfig(kv_cache_groups=[KVCacheGroupSpec(list(LAYERS), FullAttentionSpec(BS))])


class GatedStore:
    """A KvStore whose socket reads of a layer group (told by the key's ``/L..`` suffix) wait until the test opens
    that group's gate, and which logs, in order, each read that finished and each put it was asked for."""

    def __init__(self, store):
        self._store = store
        self.gates = {}
        self.log = []

    def gate(self, suffix):
        return self.gates.setdefault(suffix, threading.Event())

    def batch_get_into_multi_buffers(self, keys, addrs, sizes):
        suffix = keys[0][keys[0].rindex("/"):]
        if not self.gate(suffix).wait(20):
            self.log.append(("gate timed out", suffix))
            raise TimeoutError(f"the test never opened the gate of {suffix}")
        try:
            return self._store.batch_get_into_multi_buffers(keys, addrs, sizes)
        finally:
            self.log.append(("in", suffix))

    def batch_put_from_multi_buffers(self, keys, addrs, sizes, **links):
        self.log.append(("put", keys[0][keys[0].rindex("/"):]))
        return self._store.batch_put_from_multi_buffers(keys, addrs, sizes, **links)

    def __getattr__(self, name):
        return getattr(self._store, name)


def saved(engines, model, toks, ids, **extra):
    """An engine that computed ``toks`` into blocks ``ids`` and saved them (layout from ``extra``)."""
    a = engines(model=model, fill=True, seed=21, kv_cache_config=one_group(), **extra)
    n, meta, errors = a.step(Request("a", toks), ids)
    assert n == 0 and not errors and a.worker.stats["blocks_saved"] == len(ids)
    return a


def same_layer(src, dst, name, src_ids, dst_ids):
    return all(torch.equal(block_of(src.caches[name], s), block_of(dst.caches[name], d)) for s, d in zip(src_ids, dst_ids))


@pytest.mark.parametrize("transport", ["tcp", "shm"])
@pytest.mark.parametrize("layout", ["layer", "layer2", "block"])
def test_layer_group_values_round_trip_and_each_layer_is_in_when_its_wait_returns(engines, node, transport, layout):
    model, toks = model_name(), prompt(5 * BS)
    a_ids, b_ids = [3, 7, 1, 9, 12], [5, 2, 8, 11, 0]
    a = saved(engines, model, toks, a_ids, transport=transport, kvasir_layout=layout)
    suffixes = {"layer": ["/L0", "/L1", "/L2"], "layer2": ["/L0-1", "/L2"], "block": [""]}[layout]
    h = chained_block_hashes(toks, BS)[0].hex()
    with KvStore(node.address, request_timeout=10) as s:   # one value per block and layer group, under these keys
        assert s.batch_is_exist([a.worker.block_key(h, suffix=x) for x in suffixes]) == [1] * len(suffixes)
        assert s.batch_is_exist([a.worker.block_key(h, suffix="/L9")]) == [0]

    b = engines(model=model, kv_cache_config=one_group(), transport=transport, kvasir_layout=layout)
    n, meta = b.schedule(Request("b", toks), b_ids)
    assert n == 4 * BS
    b.worker.bind_connector_metadata(meta)
    b.worker.start_load_kv(ForwardContext())
    for name in LAYERS:
        b.worker.wait_for_layer_load(name)
        assert same_layer(a, b, name, a_ids[:4], b_ids[:4]), name   # this layer's blocks are in now
        b.worker.save_kv_layer(name, b.caches[name], None)
    b.worker.wait_for_save()
    assert b.worker.get_block_ids_with_load_errors() == set()
    assert b.worker.last_loaded_block_ids == {"b": b_ids[:4]}
    assert b.worker.stats["blocks_loaded"] == 4
    assert b.worker.stats["blocks_loaded_local"] == (4 if transport == "shm" else 0)
    for name in LAYERS:
        assert not block_of(b.caches[name], b_ids[4]).any()   # the block left to compute was not written
    with KvStore(node.address, request_timeout=10) as s:
        assert s.stats()["leases"] == 0   # every arena read released its leases


def test_a_layer_wait_returns_only_once_its_group_is_in_and_start_load_does_not_wait(engines):
    model, toks = model_name(), prompt(5 * BS)
    a_ids, b_ids = [0, 1, 2, 3, 4], [9, 8, 7, 6, 5]
    a = saved(engines, model, toks, a_ids, kvasir_layout="layer")
    b = engines(model=model, kv_cache_config=one_group(), transport="tcp", kvasir_layout="layer")
    gated = b.worker._store = GatedStore(b.worker._store)
    n, meta = b.schedule(Request("b", toks), b_ids)
    b.worker.bind_connector_metadata(meta)
    b.worker.start_load_kv(ForwardContext())   # every gate is closed: it must return without any read done
    assert gated.log == []

    gated.gate("/L0").set()
    b.worker.wait_for_layer_load(LAYERS[0])
    assert ("in", "/L0") in gated.log and same_layer(a, b, LAYERS[0], a_ids[:4], b_ids[:4])
    assert ("in", "/L1") not in gated.log   # layer 0 did not wait for layer 1's group

    seen = {}

    def wait_layer1():
        b.worker.wait_for_layer_load(LAYERS[1])
        seen["log"] = list(gated.log)
        seen["equal"] = same_layer(a, b, LAYERS[1], a_ids[:4], b_ids[:4])

    waiter = threading.Thread(target=wait_layer1)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive(), "wait_for_layer_load(layer 1) returned while layer 1's group was held back"
    gated.gate("/L1").set()
    waiter.join(20)
    assert not waiter.is_alive(), "wait_for_layer_load(layer 1) did not return within 20 s of its group's read"
    assert ("in", "/L1") in seen["log"] and seen["equal"]
    gated.gate("/L2").set()
    b.worker.wait_for_layer_load(LAYERS[2])
    b.worker.wait_for_save()
    assert b.worker.get_block_ids_with_load_errors() == set()
    assert all(same_layer(a, b, name, a_ids[:4], b_ids[:4]) for name in LAYERS)


@pytest.mark.parametrize("transport", ["tcp", "shm"])
def test_a_missing_layer_group_fails_its_block_and_the_lookup_stops_before_it(engines, node, transport):
    model, toks = model_name(), prompt(5 * BS)
    a_ids, b_ids = [0, 1, 2, 3, 4], [10, 11, 12, 13, 14]
    a = saved(engines, model, toks, a_ids, kvasir_layout="layer")
    b = engines(model=model, kv_cache_config=one_group(), transport=transport, kvasir_layout="layer")
    n, meta = b.schedule(Request("b", toks), b_ids)
    assert n == 4 * BS
    with KvStore(node.address, request_timeout=10) as s:   # layer 1's value of block 2, evicted after the lookup
        assert s.remove(a.worker.block_key(chained_block_hashes(toks, BS)[2].hex(), suffix="/L1")) == 0
    assert b.execute(meta) == {12}
    assert b.worker.last_loaded_block_ids == {"b": [10, 11]}
    assert b.worker.stats["blocks_load_failed"] == 1
    assert same_layer(a, b, LAYERS[1], a_ids[:2], b_ids[:2])
    with KvStore(node.address, request_timeout=10) as s:
        assert s.stats()["leases"] == 0   # the groups read through the arena released theirs, the failed one too
    # a new lookup sees block 2 as missing: the prefix stops before it
    c = engines(model=model, kv_cache_config=one_group(), kvasir_layout="layer")
    assert c.sched.get_num_new_matched_tokens(Request("c", toks), 0) == (2 * BS, False)


def test_a_node_down_mid_load_fails_the_blocks_it_had_not_sent_and_leaves_no_thread(engines, own_node):
    model, toks = model_name(), prompt(5 * BS)
    a_ids, b_ids = [0, 1, 2, 3, 4], [10, 11, 12, 13, 14]
    a = Engine(own_node.address, model, fill=True, seed=22, kv_cache_config=one_group(), kvasir_layout="layer")
    b = Engine(own_node.address, model, kv_cache_config=one_group(), transport="tcp", kvasir_layout="layer")
    try:
        a.step(Request("a", toks), a_ids)
        gated = b.worker._store = GatedStore(b.worker._store)
        n, meta = b.schedule(Request("b", toks), b_ids)
        assert n == 4 * BS
        b.worker.bind_connector_metadata(meta)
        b.worker.start_load_kv(ForwardContext())
        gated.gate("/L0").set()
        b.worker.wait_for_layer_load(LAYERS[0])
        assert same_layer(a, b, LAYERS[0], a_ids[:4], b_ids[:4])
        io_thread = b.worker._io._thread
        own_node.stop()                                   # the node goes away between layer groups
        gated.gate("/L1").set()
        gated.gate("/L2").set()
        for name in LAYERS[1:]:
            b.worker.wait_for_layer_load(name)            # reported, not raised
        b.worker.wait_for_save()
        assert b.worker.get_block_ids_with_load_errors() == set(b_ids[:4])
        assert b.worker.last_loaded_block_ids == {"b": []}
        assert b.worker.stats["blocks_load_failed"] == 4
    finally:
        b.close()
        a.close()
    assert b.worker._io._thread is None and not io_thread.is_alive()


def test_host_saves_of_a_layer_group_start_before_wait_for_save(engines):
    model, toks = model_name(), prompt(5 * BS)
    a = engines(model=model, fill=True, seed=23, kv_cache_config=one_group(), transport="tcp", kvasir_layout="layer2")
    gated = a.worker._store = GatedStore(a.worker._store)
    n, meta = a.schedule(Request("a", toks), [0, 1, 2, 3, 4])
    a.worker.bind_connector_metadata(meta)
    a.worker.start_load_kv(ForwardContext())
    a.worker.save_kv_layer(LAYERS[0], a.caches[LAYERS[0]], None)
    a.worker.save_kv_layer(LAYERS[1], a.caches[LAYERS[1]], None)   # the last layer of group /L0-1
    wait_until(lambda: ("put", "/L0-1") in gated.log, "layers 0-1's put, queued by save_kv_layer")
    assert ("put", "/L2") not in gated.log
    a.worker.save_kv_layer(LAYERS[2], a.caches[LAYERS[2]], None)
    a.worker.wait_for_save()
    assert a.worker.stats["blocks_saved"] == 5 and a.worker.stats["blocks_save_failed"] == 0
    b = engines(model=model, kv_cache_config=one_group(), kvasir_layout="layer2")
    n, meta, errors = b.step(Request("b", toks), [5, 6, 7, 8, 9])
    assert n == 4 * BS and not errors
    assert all(same_layer(a, b, name, [0, 1, 2, 3], [5, 6, 7, 8]) for name in LAYERS)


def test_with_async_loads_off_start_load_kv_returns_with_every_block_in(engines):
    model, toks = model_name(), prompt(5 * BS)
    a = saved(engines, model, toks, [0, 1, 2, 3, 4], kvasir_layout="layer")
    b = engines(model=model, kv_cache_config=one_group(), transport="tcp", kvasir_layout="layer",
                kvasir_async_load="false")
    n, meta = b.schedule(Request("b", toks), [5, 6, 7, 8, 9])
    b.worker.bind_connector_metadata(meta)
    b.worker.start_load_kv(ForwardContext())
    assert all(same_layer(a, b, name, [0, 1, 2, 3], [5, 6, 7, 8]) for name in LAYERS)
    assert KvasirConnector.requires_piecewise_for_cudagraph({"kvasir_async_load": "false"}) is False
    assert KvasirConnector.requires_piecewise_for_cudagraph({}) is True   # waits inside the attention layers


def test_bad_layout_settings_are_refused_with_the_fix(node):
    def make(kcc, **extra):
        cfg = VllmConfig(KVTransferConfig(kv_role="kv_both", kv_connector_extra_config=extra), CacheConfig(),
                         ModelConfig("m"), ParallelConfig())
        with KvStore(node.address, request_timeout=10) as store:
            KvasirConnector(cfg, KVConnectorRole.SCHEDULER, kcc, store=store).shutdown()

    with pytest.raises(ValueError, match="kvasir_layout 'layers'.*block.*layer.*layerN"):
        make(one_group(), kvasir_layout="layers")
    with pytest.raises(ValueError, match="kvasir_layout 'layer0'"):
        make(one_group(), kvasir_layout="layer0")
    with pytest.raises(ValueError, match="kvasir_num_layers"):
        make(KVCacheConfig(), kvasir_layout="layer4")
    make(KVCacheConfig(), kvasir_layout="layer4", kvasir_num_layers=8)


@pytest.fixture(scope="module")
def gpu_node_address():
    """A node for the CUDA case, started as bench/gpu_bench.py starts it (KVASIR_BIN, a self-contained publish, on
    the device machine, which has no .NET; else the CLI build), with a shared-memory arena."""
    import gpu_bench  # noqa: PLC0415
    node, address = gpu_bench.start_node("256MiB")
    yield address
    node.terminate()
    node.wait(timeout=30)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (run on the GPU machine)")
@pytest.mark.parametrize("transport", ["tcp", "shm"])
def test_cuda_caches_load_layer_group_by_layer_group(gpu_node_address, transport):
    """CUDA kv caches: shared memory DMAs each group into the caches, TCP stages it through host memory (the I/O
    thread reads, the waiting thread copies): each layer's blocks are in when its wait returns; the saves of CUDA
    caches (wait_for_save) load back byte-exact."""
    make, close_all = remembering(lambda **kw: Engine(gpu_node_address, **kw), Engine.close)
    try:
        model, toks = model_name(), prompt(5 * BS)
        a = make(model=model, fill=True, seed=24, kv_cache_config=one_group(), device="cuda", kvasir_layout="layer")
        assert a.step(Request("a", toks), [0, 1, 2, 3, 4])[2] == set()
        assert a.worker.stats["blocks_saved"] == 5
        b = make(model=model, kv_cache_config=one_group(), transport=transport, device="cuda", kvasir_layout="layer")
        n, meta = b.schedule(Request("b", toks), [5, 6, 7, 8, 9])
        assert n == 4 * BS
        b.worker.bind_connector_metadata(meta)
        b.worker.start_load_kv(ForwardContext())
        for name in LAYERS:
            b.worker.wait_for_layer_load(name)
            assert same_layer(a, b, name, [0, 1, 2, 3], [5, 6, 7, 8]), name
        b.worker.wait_for_save()
        assert b.worker.get_block_ids_with_load_errors() == set()
        assert b.worker.stats["blocks_loaded_local"] == (4 if transport == "shm" else 0)
    finally:
        close_all()
