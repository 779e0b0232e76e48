#!/usr/bin/python3
"""Batch GET into registered buffers: shared memory vs TCP vs a plain memcpy of the same bytes.

    /usr/bin/python3 bench/shm_bench.py [--seconds 3] [--sizes 1MiB,16MiB]

Starts its own node (./kvasir serve, 1 GiB, /dev/shm arena), writes a 256 MiB key space per value
size, then for each size runs batch_get_into of 16 values (1 MiB) or 4 values (16 MiB) for
--seconds over each transport, and numpy.copyto of as many bytes from a 256 MiB in-process buffer in the same rotation
(the memcpy ceiling), all in one run. Prints GB/s medians of 5 rounds and the ratios.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import kvasir  # noqa: E402


def size(text):
    m = re.fullmatch(r"(\d+)(MiB|KiB)?", text)
    return int(m.group(1)) << {"MiB": 20, "KiB": 10, None: 0}[m.group(2)]


def rate(fn, nbytes, seconds):
    rounds = []
    for _ in range(5):
        t0, moved = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / 5:
            fn()
            moved += nbytes
        rounds.append(moved / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rounds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--sizes", default="1MiB,16MiB")
    args = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "kvasir"), "--help"], check=True, capture_output=True)
    node = subprocess.Popen(["dotnet", os.path.join(ROOT, ".build", "cli", "kvasir.dll"), "serve", "--port", "0", "--memory", "1GiB",
                             "--max-value", "64MiB", "--admin-port", "off", "--log-level", "warning"], stdout=subprocess.PIPE, text=True)
    try:
        line = node.stdout.readline()
        addr = re.search(r"serving on (\S+:\d+)", line).group(1)
        print(line.strip())
        stores = {t: kvasir.KvStore(addr, transport=t) for t in ("shm", "tcp")}
        for n in (size(s) for s in args.sizes.split(",")):
            batch = 16 if n <= 1 << 20 else 4
            keys_total = (256 << 20) // n
            src = np.random.default_rng(1).integers(0, 256, n * batch, dtype=np.uint8)
            dst = np.zeros_like(src)
            for s in stores.values():
                s.register_buffer(src.ctypes.data, src.nbytes)
                s.register_buffer(dst.ctypes.data, dst.nbytes)
            keys = [f"bench/{n}/{i}" for i in range(keys_total)]
            w = stores["shm"]
            for i in range(0, keys_total, batch):
                assert w.batch_put_from(keys[i:i + batch], [src.ctypes.data + j * n for j in range(batch)], [n] * batch) == [0] * batch
            ptrs = [dst.ctypes.data + j * n for j in range(batch)]
            state = {"i": 0}

            def get(store):
                i = state["i"]
                state["i"] = (i + batch) % keys_total
                r = store.batch_get_into(keys[i:i + batch], ptrs, [n] * batch)
                assert r == [n] * batch, r

            results = {t: rate(lambda t=t: get(stores[t]), n * batch, args.seconds) for t in stores}
            # The memcpy ceiling reads from a 256 MiB buffer in the same rotation as the node's key space,
            # so neither side is served from the CPU cache.
            big = np.random.default_rng(2).integers(0, 256, keys_total * n, dtype=np.uint8)
            mstate = {"i": 0}

            def copy():
                i = mstate["i"]
                mstate["i"] = (i + batch) % keys_total
                np.copyto(dst, big[i * n:(i + batch) * n])

            results["memcpy"] = rate(copy, n * batch, args.seconds)
            label = f"{n >> 20} MiB x{batch}"
            print(f"{label}: shm {results['shm']:.2f} GB/s, tcp {results['tcp']:.2f} GB/s, memcpy {results['memcpy']:.2f} GB/s; "
                  f"shm/memcpy {results['shm'] / results['memcpy']:.2f}, shm/tcp {results['shm'] / results['tcp']:.2f}")
        for s in stores.values():
            s.close()
    finally:
        node.terminate()
        node.wait(timeout=30)


if __name__ == "__main__":
    main()
