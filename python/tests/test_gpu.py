"""KV blocks into GPU memory and back through the shared-memory arena. Needs torch with CUDA: CI has
no GPU, so this skips there; these tests and the full-size benchmark (bench/gpu_bench.py) run on
the device machine, and their figures are in docs/benchmarks.md. The node comes from KVASIR_BIN (a
self-contained publish) or .build/cli."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device on this machine (the GPU figures come from the device run)", allow_module_level=True)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))
import gpu_bench  # noqa: E402

import kvasir  # noqa: E402
from kvasir import errors as E  # noqa: E402
from kvasir.local_load import KeyNotLocalError  # noqa: E402


@pytest.fixture(scope="module")
def address():
    node, addr = gpu_bench.start_node("512MiB")
    yield addr
    node.terminate()
    node.wait(timeout=30)


@pytest.fixture(scope="module")
def store(address):
    s = kvasir.KvStore(address, transport="shm")
    yield s
    s.close()


def _stored(store, prefix, lengths, seed):
    rng = np.random.default_rng(seed)
    values = [rng.integers(0, 256, n, dtype=np.uint8) for n in lengths]
    keys = [f"{prefix}/{i}" for i in range(len(values))]
    for k, v in zip(keys, values):
        assert store.put(k, v.tobytes()) == 0
    return keys, values


def test_blocks_load_into_gpu_memory_and_store_back_byte_exact():
    result = gpu_bench.run(blocks=2048, block=128 << 10, rounds=1)   # 256 MiB, three passes, every byte checked
    assert result["verified_bytes"] == 3 * 2048 * (128 << 10)


def test_pieces_on_the_gpu_and_in_host_memory_in_one_load(store):
    lengths = [1, 4095, 4096, 65537, 1 << 20, 0]
    keys, values = _stored(store, "mixed", lengths, 1)
    gpu = torch.full((sum(lengths) * 2 + 64,), 0xEE, dtype=torch.uint8, device="cuda")
    host = np.full(sum(lengths) + 64, 0xEE, dtype=np.uint8)
    store.register_buffer(host.ctypes.data, host.nbytes)
    addrs, sizes, where = [], [], []
    g = h = 0
    for n in lengths:   # first half of each value on the GPU (two pieces), the rest in host memory
        a, b = n // 4, n // 2 - n // 4
        addrs.append([gpu.data_ptr() + g, gpu.data_ptr() + g + a + 7, host.ctypes.data + h])
        sizes.append([a, b, n - a - b + 3])
        where.append((g, a, b, h))
        g += a + b + 16
        h += n - a - b + 3
    load = store.batch_get_into_multi_buffers_submit_local(keys, addrs, sizes)
    assert load.wait() == lengths
    out = gpu.cpu().numpy()
    for v, (g, a, b, h) in zip(values, where):
        got = np.concatenate([out[g:g + a], out[g + a + 7:g + a + 7 + b], host[h:h + len(v) - a - b]])
        assert np.array_equal(got, v)
        assert out[g + a] == 0xEE and (len(v) == 0 or host[h + len(v) - a - b] == 0xEE)
    assert store.stats()["leases"] == 0


def test_a_gpu_range_past_its_allocation_is_refused_before_anything_is_leased(store):
    keys, _ = _stored(store, "past", [100], 2)
    t = torch.empty(64, dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match="past the end of its GPU allocation"):
        store.batch_get_into_multi_buffers_submit_local(keys, [[t.data_ptr()]], [[1 << 40]])
    assert store.stats()["leases"] == 0
    with pytest.raises(KeyNotLocalError, match="does not fit"):
        store.batch_get_into_multi_buffers_submit_local(keys, [[t.data_ptr()]], [[64]])
    assert store.stats()["leases"] == 0


def test_a_put_from_gpu_memory_stores_each_value(store):
    lengths = [0, 1, 4097, 1 << 20, 3 << 20]
    src = torch.randint(0, 256, (sum(lengths),), dtype=torch.uint8, device="cuda")
    offsets = np.concatenate(([0], np.cumsum(lengths)))[:-1]
    keys = [f"from-gpu-mixed/{i}" for i in range(len(lengths))]
    codes = store.batch_put_from_local(keys + [""], [src.data_ptr() + int(o) for o in offsets] + [src.data_ptr()], lengths + [1])
    assert codes == [0] * len(lengths) + [E.INVALID_KEY]
    expect = src.cpu().numpy()
    for k, o, n in zip(keys, offsets, lengths):
        assert store.get(k) == expect[o:o + n].tobytes()
    assert store.stats()["reservations"] == 0


def test_the_vllm_connector_moves_cuda_kv_blocks_through_the_arena(address):
    # The connector test's engines (vLLM stand-ins, see test_vllm.py) with their kv caches on the GPU:
    # saves and loads go between the arena and GPU memory directly, never through a staging tensor.
    from test_vllm import BS, Engine, Request, block_of, model_name, prompt
    model, toks = model_name(), prompt(5 * BS)
    a = Engine(address, model, fill=True, seed=1, device="cuda")
    b = Engine(address, model, device="cuda")
    try:
        a.step(Request("a", toks), [3, 7, 1, 9, 12])
        assert a.worker.stats["blocks_saved_local"] == 5
        n, _, errors = b.step(Request("b", toks), [5, 2, 8, 11, 0])
        assert n == 4 * BS and not errors and b.worker.stats["blocks_loaded_local"] == 4
        for name in a.caches:
            assert a.caches[name].is_cuda and b.caches[name].is_cuda
            for src, dst in zip([3, 7, 1, 9], [5, 2, 8, 11]):
                assert torch.equal(block_of(a.caches[name], src), block_of(b.caches[name], dst)), (name, src, dst)
            assert not block_of(b.caches[name], 0).any()
    finally:
        a.close()
        b.close()
