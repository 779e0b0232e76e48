#!/usr/bin/python3
"""Python client over TCP: one batch_put_from / batch_get_into of KEYS x SIZE at a time, with each stripe size asked for
(``KvStore(stripe_bytes=...)``; 0 = one request on one connection), against one node this script starts.

    bench/py_stripe_bench.py --bin PATH [--keys 16] [--size 1MiB] [--stripes 0,1MiB] [--connections 4]
                             [--rounds 5] [--seconds 1.0] [--memory 2GiB] [--chain]

``--chain``: every PUT declares its keys a chain (``chain=True``, as the connectors save a request's blocks); striped
only where the node grants LATE_PARENT. ``--bin``: a kvasir binary (``./kvasir publish DIR`` -> DIR/kvasir, no .NET needed) or a kvasir.dll (run with dotnet).
The node listens on a free loopback port and is stopped by pid at the end. One store per stripe size, all open at once
(their connections opened before the first round); rounds rotate the order of the stripe sizes, and within a round each
store runs PUT for ``--seconds`` then GET for ``--seconds``, one batch in flight. Prints one JSON line per measurement
(``"kind": "measurement"``: GB/s, the client's CPU seconds per GB from process_time, and the node's requests per
batch from its STATS: 1 when not striped) and, at the end, one per op and
stripe size with the medians and the ratio to the first stripe size listed (``"kind": "median"``).
Needs numpy; the client is this checkout's python/ (plain /usr/bin/python3 or python3)."""

import argparse
import json
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

from kvasir import KvStore  # noqa: E402
from kvasir.config import parse_size  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(binary: str, memory: str, max_value: int):
    port = free_port()
    cmd = ["dotnet", binary] if binary.endswith(".dll") else [binary]
    proc = subprocess.Popen(cmd + ["serve", "--port", str(port), "--memory", memory, "--max-value", str(max_value),
                                   "--admin-port", "off", "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the node did not start on port {port} (exit {proc.poll()})")
            time.sleep(0.1)


def timed(call, seconds: float, nbytes: int):
    """Runs ``call`` (one batch) until ``seconds`` have passed: (GB/s, client CPU s/GB, batches)."""
    call()   # warm: the first batch of a round may open connections
    n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    while True:
        call()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    gb = n * nbytes / 1e9
    return gb / elapsed, (time.process_time() - cpu0) / gb, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="kvasir binary, or kvasir.dll")
    ap.add_argument("--keys", type=int, default=16)
    ap.add_argument("--size", default="1MiB")
    ap.add_argument("--stripes", default="0,1MiB", help="stripe sizes, comma-separated (0 = off)")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--memory", default="2GiB")
    ap.add_argument("--chain", action="store_true", help="PUTs declare their keys a chain, as the connectors' saves do")
    args = ap.parse_args()
    value = parse_size(args.size, "--size")
    stripes = [parse_size(s, "--stripes") for s in args.stripes.split(",")]
    nbytes = args.keys * value
    proc, port = start_node(args.bin, args.memory, max(value, 1 << 20))
    stores = []
    try:
        src = np.random.default_rng(1).integers(0, 256, size=(args.keys, value), dtype=np.uint8)
        dst = np.zeros_like(src)
        keys = [f"py-stripe-{i}" for i in range(args.keys)]
        ptrs_src = [src.ctypes.data + i * value for i in range(args.keys)]
        ptrs_dst = [dst.ctypes.data + i * value for i in range(args.keys)]
        sizes = [value] * args.keys
        for stripe in stripes:
            store = KvStore(f"127.0.0.1:{port}", transport="tcp", stripe_bytes=stripe, connections_per_node=args.connections)
            store.register_buffer(src.ctypes.data, src.nbytes)
            store.register_buffer(dst.ctypes.data, dst.nbytes)
            if store.batch_put_from(keys, ptrs_src, sizes, chain=args.chain) != [0] * args.keys:
                raise SystemExit("a PUT failed")
            stores.append((stripe, store))
        rows = []
        for r in range(args.rounds):
            order = stores[r % len(stores):] + stores[:r % len(stores)]
            for stripe, store in order:
                for op, call in (("put", lambda s=store: s.batch_put_from(keys, ptrs_src, sizes, chain=args.chain)),
                                 ("get", lambda s=store: s.batch_get_into(keys, ptrs_dst, sizes))):
                    requests = store.stats()[f"requests_{op}"]
                    gbps, cpu, n = timed(call, args.seconds, nbytes)
                    requests = store.stats()[f"requests_{op}"] - requests
                    row = {"kind": "measurement", "round": r, "op": op, "chain": args.chain, "stripe_bytes": stripe, "connections": args.connections,
                           "keys": args.keys, "value_bytes": value, "batches": n, "gbps": round(gbps, 3),
                           "client_cpu_s_per_gb": round(cpu, 4), "requests_per_batch": round(requests / (n + 1), 2)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        if not np.array_equal(src, dst):
            raise SystemExit("GET returned bytes that differ from the PUT's")
        for op in ("put", "get"):
            base = statistics.median(x["gbps"] for x in rows if x["op"] == op and x["stripe_bytes"] == stripes[0])
            for stripe in stripes:
                mine = [x for x in rows if x["op"] == op and x["stripe_bytes"] == stripe]
                gbps = statistics.median(x["gbps"] for x in mine)
                print(json.dumps({"kind": "median", "op": op, "chain": args.chain, "stripe_bytes": stripe, "connections": args.connections,
                                  "keys": args.keys, "value_bytes": value, "rounds": len(mine), "gbps": round(gbps, 3),
                                  "gbps_min": min(x["gbps"] for x in mine), "gbps_max": max(x["gbps"] for x in mine),
                                  "client_cpu_s_per_gb": round(statistics.median(x["client_cpu_s_per_gb"] for x in mine), 4),
                                  "ratio_to_first": round(gbps / base, 3), "cores": os.cpu_count()}), flush=True)
    finally:
        for _, store in stores:
            store.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
