#!/usr/bin/env python3
"""KV blocks from a node into GPU memory and back, against a plain pinned-memory copy, in one run.

    KVASIR_BIN=/path/to/kvasir python3 bench/gpu_bench.py [--blocks 16384] [--block-size 131072] [--rounds 5] [--json FILE]

Starts a node (`kvasir serve`, shared-memory arena), stores N blocks from host memory, then:
  load:  batch_get_into_multi_buffers_submit_local into one GPU tensor (DMA from the arena on a
         CUDA stream, the arena cudaHostRegister'ed once), every byte checked on the GPU — once
         with blocks in key order (neighbouring copies merge) and once scattered over a random
         permutation of the tensor's blocks (a paged KV cache: no two copies merge);
  store: batch_put_from_local from GPU memory into new keys (device -> arena), read back and checked, in calls of
         1,024 blocks and as one call of all blocks (DMA of one chunk overlapping the next chunk's ALLOC); with the
         arena proof (no zeroing, CRCs owed to the first read) and, in the same run, without it (as before);
  ceiling: the same bytes copied host->device and device->host from a pinned torch tensor.
Medians over the rounds (each figure's rounds are listed too). Needs torch with CUDA and numpy.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))


def start_node(memory: str):
    cmd = os.environ.get("KVASIR_BIN", "").split() or ["dotnet", os.path.join(ROOT, ".build", "cli", "kvasir.dll")]
    node = subprocess.Popen([*cmd, "serve", "--port", "0", "--memory", memory, "--max-value", "64MiB", "--admin-port", "off",
                             "--log-level", "warning"], stdout=subprocess.PIPE, text=True)
    line = node.stdout.readline()
    m = re.search(r"serving on (\S+:\d+) .*shm (\S+)\)", line)
    if not m:
        node.kill()
        raise RuntimeError(f"node did not start with a shm arena: {line!r}")
    return node, m.group(1)


def stage(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(blocks: int, block: int, rounds: int = 3) -> dict:
    import numpy as np
    import torch
    import kvasir
    total = blocks * block
    stage("starting the node")
    node, addr = start_node(f"{(2 * total + (512 << 20)) >> 20}MiB")
    stage(f"node on {addr}")
    try:
        store = kvasir.KvStore(addr, transport="shm")
        src = np.random.default_rng(5).integers(0, 1 << 63, total // 8, dtype=np.uint64).view(np.uint8)
        store.register_buffer(src.ctypes.data, src.nbytes)
        keys = [f"blk/{i}" for i in range(blocks)]
        step = 1024
        t0 = time.perf_counter()
        for i in range(0, blocks, step):
            n = min(step, blocks - i)
            codes = store.batch_put_from(keys[i:i + n], [src.ctypes.data + (i + j) * block for j in range(n)], [block] * n)
            assert codes == [0] * n, codes[:5]
        host_put = total / (time.perf_counter() - t0) / 1e9
        stage(f"stored {total >> 20} MiB from the host at {host_put:.2f} GB/s")
        from kvasir import local_load
        stage(f"cuda helper: {local_load.cuda() is not None}")

        dst = torch.empty(total, dtype=torch.uint8, device="cuda")
        expect = torch.from_numpy(src).cuda()
        base = dst.data_ptr()

        perm = np.random.default_rng(11).permutation(blocks)

        submit_seconds = []

        sizes = [[block]] * blocks

        def destinations(slots):   # built before the clock starts: an engine has its block table at hand
            return [[base + int(s) * block] for s in slots]

        def load(dests):
            handles = []
            t = time.perf_counter()
            for i in range(0, blocks, step):
                handles.append(store.batch_get_into_multi_buffers_submit_local(keys[i:i + step], dests[i:i + step], sizes[i:i + step]))
            submit_seconds.append(time.perf_counter() - t)
            for h in handles:
                assert h.wait() == [block] * len(h.lengths)

        def timed(fn):
            torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            return total / (time.perf_counter() - t) / 1e9

        load_rates, scattered_rates = [], []
        in_order, scattered = destinations(range(blocks)), destinations(perm)
        first_load = timed(lambda: load(in_order))   # includes pinning the arena (cudaHostRegister, once)
        stage(f"first load (pins the arena) at {first_load:.2f} GB/s")
        submit_seconds.clear()
        stage(f"loading into the GPU (batched copies: {local_load.cuda().batched}, CUDA runtime {local_load.cuda().version})")
        for _ in range(rounds):
            dst.zero_()
            load_rates.append(timed(lambda: load(in_order)))
            assert torch.equal(dst, expect), "loaded bytes differ"
        where = torch.from_numpy(perm).cuda()
        for _ in range(rounds):
            dst.zero_()
            scattered_rates.append(timed(lambda: load(scattered)))
            assert torch.equal(dst.view(blocks, block)[where], expect.view(blocks, block)), "scattered bytes differ"

        pinned = torch.from_numpy(src).pin_memory()
        # The copy engine's own cost for the scattered case: the same 16,384 block copies from
        # pinned memory in one cudaMemcpyBatchAsync, no Kvasir in the way.
        c = local_load.cuda()
        blk = np.arange(blocks, dtype=np.uint64) * np.uint64(block)
        raw_dst, raw_src = np.uint64(base) + perm.astype(np.uint64) * np.uint64(block), np.uint64(pinned.data_ptr()) + blk
        raw_size = np.full(blocks, block, dtype=np.uint64)
        raw_scattered = [timed(lambda: c.copy(0, raw_dst, raw_src, raw_size).synchronize()) for _ in range(rounds)]
        h2d = [timed(lambda: dst.copy_(pinned, non_blocking=True)) for _ in range(rounds)]
        back = torch.empty(total, dtype=torch.uint8, pin_memory=True)
        d2h = [timed(lambda: back.copy_(dst, non_blocking=True)) for _ in range(rounds)]

        stage(f"loads {load_rates}, scattered {scattered_rates}, submit seconds {submit_seconds}, raw scattered {raw_scattered}, pinned h2d {h2d}, d2h {d2h}")
        keys2 = [f"from-gpu/{i}" for i in range(blocks)]

        def store_from_gpu():
            for i in range(0, blocks, step):
                n = min(step, blocks - i)
                codes = store.batch_put_from_local(keys2[i:i + n], [base + (i + j) * block for j in range(n)], [block] * n)
                assert codes == [0] * n, codes[:5]

        store_rates = [timed(store_from_gpu) for _ in range(rounds)]

        def store_from_gpu_one_call():
            # All 2 GiB in one call, as an engine saving a request's blocks does: the call overlaps each chunk's DMA
            # with the next chunk's ALLOC (separate calls of 1,024 blocks above cannot overlap one another).
            codes = store.batch_put_from_local(keys2, [base + j * block for j in range(blocks)], [block] * blocks)
            assert codes == [0] * blocks, codes[:5]

        one_call_rates = [timed(store_from_gpu_one_call) for _ in range(rounds)]
        # The same stores as a client without the arena proof makes them (feature 0x8 withheld on this connection): the
        # node zeroes every ALLOC and computes every CRC at COMMIT, as before issue 21's item 2. Same run, same node.
        conn = store._connection()
        proof, conn.arena_proof = conn.arena_proof, None
        zeroed_rates = [timed(store_from_gpu) for _ in range(rounds)]
        conn.arena_proof = proof
        stage(f"stores with the arena proof {store_rates} (one call: {one_call_rates}), without {zeroed_rates} (proof sent: {proof is not None})")
        check = np.zeros(total, dtype=np.uint8)
        store.register_buffer(check.ctypes.data, check.nbytes)
        for i in range(0, blocks, step):
            n = min(step, blocks - i)
            assert store.batch_get_into(keys2[i:i + n], [check.ctypes.data + (i + j) * block for j in range(n)], [block] * n) == [block] * n
        assert np.array_equal(check, src), "bytes stored from the GPU differ"
        store.close()
        med = statistics.median
        return {
            "device": torch.cuda.get_device_name(0), "blocks": blocks, "block_bytes": block, "total_bytes": total,
            "load_gbps": med(load_rates), "pinned_h2d_gbps": med(h2d), "load_vs_pinned": med(load_rates) / med(h2d),
            "scattered_load_gbps": med(scattered_rates), "scattered_vs_pinned": med(scattered_rates) / med(h2d),
            "pinned_scattered_batch_gbps": med(raw_scattered), "first_load_gbps": first_load,
            "submit_cpu_seconds_in_order": med(submit_seconds[:rounds]), "submit_cpu_seconds_scattered": med(submit_seconds[rounds:]),
            "batched_copies": local_load.cuda().batched, "cuda_runtime": local_load.cuda().version,
            "store_from_gpu_gbps": med(store_rates), "pinned_d2h_gbps": med(d2h), "store_vs_pinned": med(store_rates) / med(d2h),
            "store_one_call_gbps": med(one_call_rates), "store_one_call_vs_pinned": med(one_call_rates) / med(d2h),
            "store_one_call_rounds_gbps": one_call_rates,
            "store_without_proof_gbps": med(zeroed_rates), "store_without_proof_vs_pinned": med(zeroed_rates) / med(d2h),
            "store_without_proof_rounds_gbps": zeroed_rates, "arena_proof_sent": proof is not None,
            "load_rounds_gbps": load_rates, "scattered_rounds_gbps": scattered_rates, "store_rounds_gbps": store_rates,
            "host_put_gbps": host_put, "rounds": rounds, "verified_bytes": total * 3,
        }
    finally:
        node.terminate()
        node.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=16384)
    ap.add_argument("--block-size", type=int, default=128 << 10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    import faulthandler
    faulthandler.dump_traceback_later(120, exit=True)
    result = run(args.blocks, args.block_size, args.rounds)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
