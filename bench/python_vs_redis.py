#!/usr/bin/python3
"""Python client path, in one run: 32 x 256 KiB batch GET into a preallocated buffer through
kvasir.KvStore.batch_get_into, versus redis-py MGET of the same data (hiredis parser), over each
transport and thread count asked for; with ``--base DIR`` also a second copy of the client (e.g. main's
``python/`` from ``git archive main python | tar x -C DIR``) against the same node, so before and after
share one run.

Starts redis-server and a Kvasir node on free loopback ports and stops both by pid. Each measurement runs
in its own process (a client copy is imported alone), ``--threads`` threads sharing one KvStore (or one
redis.Redis and its connection pool) for ``--seconds``; the configurations are interleaved ``--repeats``
times so drift hits all alike, and medians are printed.
Usage: bench/python_vs_redis.py [--seconds S] [--repeats N] [--transports tcp,shm] [--threads 1,8] [--base DIR]
(Debian's /usr/bin/python3; needs python3-numpy, python3-redis, python3-hiredis and redis-server)."""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def _keys():
    return [f"py-bench-{i}" for i in range(KEYS)]


def _source():
    import numpy as np  # noqa: PLC0415
    return np.random.default_rng(1).integers(0, 256, size=(KEYS, SIZE), dtype=np.uint8)


def worker(args):
    """One measurement: prints {"gbps": ...} (batches of every thread in the timed window)."""
    sys.path.insert(0, args.client or os.path.join(ROOT, "python"))
    import numpy as np  # noqa: PLC0415
    keys, src = _keys(), _source()
    if args.worker == "kvasir":
        from kvasir import KvStore  # noqa: PLC0415
        client = KvStore(servers=f"127.0.0.1:{args.port}", transport=args.transport)

        def make():
            dst = np.zeros_like(src)
            client.register_buffer(dst.ctypes.data, dst.nbytes)
            ptrs, sizes = [dst[i].ctypes.data for i in range(KEYS)], [SIZE] * KEYS
            assert client.batch_get_into(keys, ptrs, sizes) == [SIZE] * KEYS and np.array_equal(src, dst)
            return lambda _keep=dst: client.batch_get_into(keys, ptrs, sizes)   # _keep: dst lives as long as the call
    else:
        import redis  # noqa: PLC0415
        client = redis.Redis(host="127.0.0.1", port=args.port, max_connections=64)

        def make():
            assert all(v == src[i].tobytes() for i, v in enumerate(client.mget(keys)))
            return lambda: client.mget(keys)

    calls = [make() for _ in range(args.threads)]   # checked: each thread's path returns the right bytes
    counts = [0] * args.threads
    start_evt, stop = threading.Event(), [False]

    def run(t):
        fn = calls[t]
        start_evt.wait()
        while not stop[0]:
            fn()
            counts[t] += 1

    threads = [threading.Thread(target=run, args=(t,)) for t in range(args.threads)]
    for t in threads:
        t.start()
    for fn in calls:   # warm-up
        fn()
    start_evt.set()
    time.sleep(0.2)
    base, t0 = sum(counts), time.perf_counter()
    time.sleep(args.seconds)
    n, t1 = sum(counts) - base, time.perf_counter()
    stop[0] = True
    for t in threads:
        t.join(60)
    print(json.dumps({"gbps": n * KEYS * SIZE / 1e9 / (t1 - t0)}))


def measure(kind, port, transport, threads, seconds, client=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--port", str(port), "--transport", transport,
           "--threads", str(threads), "--seconds", str(seconds)] + (["--client", client] if client else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=seconds + 120).stdout
    return json.loads(out.strip().splitlines()[-1])["gbps"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--transports", default="auto", help="comma-separated: tcp, shm, auto (default auto: shm on this host)")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts sharing one client, e.g. 1,8")
    ap.add_argument("--base", help="a directory holding another copy of the client's python/ (measured beside this one)")
    ap.add_argument("--worker", choices=["kvasir", "redis"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--transport", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker(args)
        return
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    thread_counts = [int(t) for t in args.threads.split(",")]
    base = os.path.join(os.path.abspath(args.base), "python") if args.base else None
    if base and not os.path.isdir(os.path.join(base, "kvasir")):
        raise SystemExit(f"--base {args.base}: no python/kvasir under it")

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
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import redis  # noqa: PLC0415
        from kvasir import KvStore  # noqa: PLC0415
        keys, src = _keys(), _source()
        with KvStore(servers=f"127.0.0.1:{kp}", transport="tcp") as store:
            store.register_buffer(src.ctypes.data, src.nbytes)
            assert store.batch_put_from(keys, [src[i].ctypes.data for i in range(KEYS)], [SIZE] * KEYS) == [0] * KEYS
        redis.Redis(host="127.0.0.1", port=rp).mset({k: src[i].tobytes() for i, k in enumerate(keys)})

        configs = []   # (label, kind, port, transport, threads, client)
        for threads in thread_counts:
            for transport in transports:
                configs.append((f"kvasir {transport} x{threads}", "kvasir", kp, transport, threads, None))
                if base:
                    configs.append((f"kvasir-base {transport} x{threads}", "kvasir", kp, transport, threads, base))
            configs.append((f"redis MGET x{threads}", "redis", rp, "tcp", threads, None))
        results = {c[0]: [] for c in configs}
        for _ in range(args.repeats):   # interleaved, so drift hits every configuration alike
            for label, kind, port, transport, threads, client in configs:
                results[label].append(measure(kind, port, transport, threads, args.seconds, client))
        med = {label: statistics.median(v) for label, v in results.items()}
        print(f"32 x 256 KiB batch GET, GB/s, medians of {args.repeats} interleaved {args.seconds:g} s runs"
              f" (min-max); ratio to redis-py MGET at the same thread count" + ("; base: " + args.base if base else ""))
        for label, kind, port, transport, threads, client in configs:
            v = results[label]
            ratio = med[label] / med[f"redis MGET x{threads}"]
            extra = ""
            if client:
                extra = f"  after/base {med[f'kvasir {transport} x{threads}'] / med[label]:.2f}x"
            print(f"  {label:<24} {med[label]:6.2f}  ({min(v):.2f}-{max(v):.2f})  {ratio:5.2f}x redis{extra}")
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
