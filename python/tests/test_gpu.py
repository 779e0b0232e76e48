"""KV blocks into GPU memory and back through the shared-memory arena. Needs torch with CUDA: CI has
no GPU, so this skips there; the full-size run and its figures are in docs/benchmarks.md (made on
the device machine with bench/gpu_bench.py)."""
import os
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device on this machine (the GPU figures come from the device run)", allow_module_level=True)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))


def test_blocks_load_into_gpu_memory_and_store_back_byte_exact():
    import gpu_bench
    result = gpu_bench.run(blocks=2048, block=128 << 10, rounds=1)   # 256 MiB each way, every byte checked
    assert result["verified_bytes"] == 2 * 2048 * (128 << 10)
