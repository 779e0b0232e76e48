#!/usr/bin/env python3
"""What the key count of a value layout costs bench/ttft.py's request B, without the model: a 16,384-token prefix
in 32 layers' blocks (the llama-3-8b block count) with tiny values (4 KiB per layer and block), so the figures are
the per-key work — hashing, one batch_is_exist, leasing and planning the loads — rather than bytes.

    /usr/bin/python3 bench/ttft_keys.py        # one table row per layout: medians of 5, ms
"""
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ttft  # noqa: E402  (puts python/ on the path)

TOKENS, SUFFIX, LAYERS, ROUNDS = 16384, 128, 32, 5


def main() -> int:
    import torch
    import kvasir
    shape = dict(ttft.SHAPES["tiny"], layers=LAYERS)
    model = types.SimpleNamespace(torch=torch, s=shape, device="cpu", dtype=torch.float32)   # what PagedCache reads
    prefix = list(range(TOKENS))
    prompt = prefix + [7] * SUFFIX
    node, address = ttft.start_node(600 << 20)
    try:
        print("| layout | values | hash the blocks | batch_is_exist | submit the load | wait for it |")
        print("|---|---|---|---|---|---|")
        with kvasir.KvStore(address, transport="shm") as store:
            for name in ("block", "layer8", "layer"):
                kv = ttft.Kv(store, ttft.Layout(name, "keys", LAYERS), "shm")
                src = ttft.PagedCache(model, len(prompt))
                src.all.normal_()
                kv.save(prefix, src)
                dst = ttft.PagedCache(model, len(prompt))
                kv.host(dst)
                rows = []
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    keys = kv.layout.block_keys(prompt)
                    t1 = time.perf_counter()
                    hit = kv.hit_blocks(keys)
                    t2 = time.perf_counter()
                    wait = kv.load(keys[:hit], dst)
                    t3 = time.perf_counter()
                    wait()
                    rows.append((t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3))
                if hit != TOKENS // ttft.BLOCK_TOKENS or not dst.equal_blocks(src, hit):
                    raise RuntimeError(f"{name}: hit {hit} blocks, or the loaded blocks differ")
                cells = " | ".join(f"{statistics.median(r[i] for r in rows) * 1e3:.1f}" for i in range(4))
                print(f"| {name} | {hit * len(kv.layout.groups)} | {cells} |", flush=True)
                kv.remove(prefix)
                kv.forget(dst)
                kv.forget(src)
    finally:
        ttft.stop_node(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
