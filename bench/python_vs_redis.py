#!/usr/bin/python3
"""Python client path, in one run: 32 x 256 KiB batch GET into a preallocated buffer through
kvasir.KvStore.batch_get_into, versus redis-py MGET of the same data (hiredis parser).

Starts redis-server and a Kvasir node on free loopback ports and stops both by pid.
Usage: bench/python_vs_redis.py [--seconds S] [--repeats N]   (Debian's /usr/bin/python3;
needs python3-numpy, python3-redis, python3-hiredis and redis-server)."""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402
import redis  # noqa: E402

from kvasir import KvStore  # noqa: E402

KEYS, SIZE = 32, 256 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def rate(fn, seconds):
    """Batches per second of fn over `seconds`, after a short warm-up."""
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    subprocess.run([os.path.join(ROOT, "kvasir"), "--help"], check=True, stdout=subprocess.DEVNULL)
    rp, kp = free_port(), free_port()
    procs = [
        subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(rp), "--save", "", "--appendonly", "no"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["dotnet", os.path.join(ROOT, ".build/cli/kvasir.dll"), "serve", "--port", str(kp),
                          "--memory", "256MiB", "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_port(rp)
        wait_port(kp)
        keys = [f"py-bench-{i}" for i in range(KEYS)]
        src = np.random.default_rng(1).integers(0, 256, size=(KEYS, SIZE), dtype=np.uint8)
        dst = np.zeros_like(src)

        store = KvStore(servers=f"127.0.0.1:{kp}")
        store.register_buffer(src.ctypes.data, src.nbytes)
        store.register_buffer(dst.ctypes.data, dst.nbytes)
        ptrs_src = [src[i].ctypes.data for i in range(KEYS)]
        ptrs_dst = [dst[i].ctypes.data for i in range(KEYS)]
        sizes = [SIZE] * KEYS
        assert store.batch_put_from(keys, ptrs_src, sizes) == [0] * KEYS
        r = redis.Redis(host="127.0.0.1", port=rp)
        r.mset({k: src[i].tobytes() for i, k in enumerate(keys)})

        # Both paths return the right bytes before anything is timed.
        assert store.batch_get_into(keys, ptrs_dst, sizes) == [SIZE] * KEYS and np.array_equal(src, dst)
        assert all(v == src[i].tobytes() for i, v in enumerate(r.mget(keys)))

        kv, rd = [], []
        for _ in range(args.repeats):   # interleaved, so drift hits both alike
            kv.append(rate(lambda: store.batch_get_into(keys, ptrs_dst, sizes), args.seconds))
            rd.append(rate(lambda: r.mget(keys), args.seconds))
        gb = KEYS * SIZE / 1e9
        k_med, r_med = statistics.median(kv) * gb, statistics.median(rd) * gb
        print(f"32 x 256 KiB batch GET, medians of {args.repeats} interleaved {args.seconds:g} s runs:")
        print(f"  kvasir batch_get_into (into a preallocated numpy buffer): {k_med:.2f} GB/s")
        print(f"  redis-py MGET (hiredis, returns new bytes objects):        {r_med:.2f} GB/s")
        print(f"  ratio: {k_med / r_med:.2f}x")
        store.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
