#!/usr/bin/python3
"""Node CPU seconds per GB of shared-memory stores, before and after the arena proof (issue 21 item 2), in one run.

One node (1 GiB arena in /dev/shm); the Python client stores 256 MiB of 128 KiB blocks from host memory with
``batch_put_from_local`` (the GPU path's code, with host pointers) in three modes, rounds back to back:
  zeroed  the connection sends no arena proof: the node zeroes each ALLOC and computes every CRC at COMMIT (before)
  mapped  MAPPED with the proof, no CRCs on COMMIT: no zeroing, CRCs owed to the first read (after: GPU stores)
  mapped+crc  MAPPED and COMMIT_CRC with CRCs given by the caller (as the .NET client sends them; checked at first read)
The node process's CPU time (utime + stime from /proc) is measured around each store, and around the first read of
the same keys back (``batch_get_into`` over shm), which is where an owed or claimed CRC is computed.
    /usr/bin/python3 bench/shm_put_cpu.py [--rounds 3] [--megabytes 256]
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402

import kvasir  # noqa: E402
from kvasir import protocol as P  # noqa: E402
from kvasir import shm  # noqa: E402

BLOCK = 128 << 10


def node_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--megabytes", type=int, default=256)
    args = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "kvasir"), "--help"], check=True, capture_output=True)
    port = free_port()
    node = subprocess.Popen(["dotnet", os.path.join(ROOT, ".build", "cli", "kvasir.dll"), "serve", "--port", str(port),
                             "--memory", "1GiB", "--admin-port", "off", "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise SystemExit("the node did not open its port within 60 s")
                time.sleep(0.2)
        n = (args.megabytes << 20) // BLOCK
        src = np.random.default_rng(1).integers(0, 256, n * BLOCK, dtype=np.uint8)
        dst = np.zeros_like(src)
        crcs = [P.crc32c(memoryview(src[i * BLOCK:(i + 1) * BLOCK])) for i in range(n)] if n <= 4096 else None
        results = {}
        with kvasir.KvStore(f"127.0.0.1:{port}", transport="shm") as s:
            s.register_buffer(src.ctypes.data, src.nbytes)
            s.register_buffer(dst.ctypes.data, dst.nbytes)
            conn = s._connection()
            s._negotiate(conn)
            proof = conn.arena_proof
            assert proof is not None, "the node granted no arena proof"
            ptrs = [src.ctypes.data + i * BLOCK for i in range(n)]
            outs = [dst.ctypes.data + i * BLOCK for i in range(n)]
            modes = ("zeroed", "mapped", "mapped+crc")
            for r in range(-1, args.rounds):   # round 0 warms the arena's pages up and is not counted
                for mode in modes[r % 3:] + modes[:r % 3]:   # each round starts with another mode
                    keys = [f"cpu/{mode}/{r}/{i}" for i in range(n)]
                    conn.arena_proof = None if mode == "zeroed" else proof
                    before = node_cpu(node.pid)
                    t = time.perf_counter()
                    if mode == "mapped+crc":
                        codes = _put_with_crcs(s, conn, keys, src, crcs)
                    else:
                        codes = s.batch_put_from_local(keys, ptrs, [BLOCK] * n)
                    wall = time.perf_counter() - t
                    put_cpu = node_cpu(node.pid) - before
                    assert codes == [0] * n, codes[:4]
                    before = node_cpu(node.pid)
                    assert s.batch_get_into(keys, outs, [BLOCK] * n) == [BLOCK] * n
                    read_cpu = node_cpu(node.pid) - before
                    assert np.array_equal(src, dst)
                    dst[:] = 0
                    assert s.batch_remove(keys) == [0] * n   # nothing is evicted in later rounds
                    gb = n * BLOCK / 1e9
                    if r < 0:
                        continue
                    results.setdefault(mode, []).append((put_cpu / gb, read_cpu / gb, gb / wall))
                    print(f"round {r + 1} {mode:>10}: store node CPU {put_cpu / gb:.3f} s/GB ({gb / wall:.2f} GB/s), "
                          f"first read node CPU {read_cpu / gb:.3f} s/GB", flush=True)
            conn.arena_proof = proof
        base = statistics.median(x[0] for x in results["zeroed"])
        print("\nmedians over rounds (machine shared: compare within this run)")
        print("| mode | store: node CPU s/GB | vs zeroed | first read: node CPU s/GB | store GB/s |")
        print("| --- | --- | --- | --- | --- |")
        for mode in modes:
            rows = results[mode]
            put = statistics.median(x[0] for x in rows)
            print(f"| {mode} | {put:.3f} | {put / base:.2f} | {statistics.median(x[1] for x in rows):.3f} | "
                  f"{statistics.median(x[2] for x in rows):.2f} |")
    finally:
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()


def _put_with_crcs(s, conn, keys, src, crcs):
    """ALLOC (MAPPED) + copy + COMMIT with COMMIT_CRC, the CRCs given (as a writer that has them sends them)."""
    n = len(keys)
    codes = []
    step = 1024
    for a in range(0, n, step):
        idx = list(range(a, min(n, a + step)))
        flags, meta = shm.alloc_request(conn, [keys[i].encode() for i in idx], [BLOCK] * len(idx))
        reply = conn.call(P.Opcode.ALLOC, meta, flags=flags)
        ids = []
        for i, e in zip(idx, reply.entries):
            assert e.status == 0
            s._shm.view[e.offset:e.offset + BLOCK] = memoryview(src[i * BLOCK:(i + 1) * BLOCK])
            ids.append(e.reservation_id)
        statuses = conn.call(P.Opcode.COMMIT, P.encode_commit(ids, [crcs[i] for i in idx]), flags=int(P.Flag.COMMIT_CRC)).statuses
        codes += [int(x) for x in statuses]
    return codes


if __name__ == "__main__":
    main()
