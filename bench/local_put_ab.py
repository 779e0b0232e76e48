#!/usr/bin/env python3
"""Local puts (``batch_put_from_local``), this tree's Python client against others, back to back in one process.

    /usr/bin/python3 bench/local_put_ab.py [--base main | --base DIR] [--variant NAME=SPEC[,CONST=SIZE...]]
        [--shapes 16384x4KiB,16384x128KiB] [--pieces N] [--rounds 7] [--copies off|on|dma:GBPS] [--device cpu|cuda]
        [--memory 2GiB] [--node-split KEYS] [--profile] [--json FILE]

One node (``KVASIR_BIN`` or .build/cli/kvasir.dll; ``--memory``), several clients loaded side by side: "new" is
python/kvasir of this tree, "base" the same package from a git ref (``git archive``) or a directory holding ``kvasir/``
or ``python/kvasir/`` (for machines without the repository's history), and each ``--variant`` one more (``worktree``: this
tree again), with local_put constants set (e.g. ``flat=worktree,_RAMP_UP=0,_RAMP_DOWN=0``). Each round stores every shape
once per client, each client first in turn, into keys removed before the call (free space). One call per store: all the
shape's keys, as an engine saving a request's blocks does; the address lists are built before the clock starts.
``--pieces N`` gathers each value from N layer-major pieces (``batch_put_from_multi_buffers_local``).

What is measured per call: wall time; the client process's CPU time (every thread: the caller's and the connection's
reader) and the caller thread's own; the node process's CPU time (every thread, from /proc/PID/task/*/schedstat, ns;
it includes the runtime's spinning while it waits for the next request, so it is an upper bound of the work).
Keys per second, and µs per key of each; the best round. ``--copies off`` (CPU only) stubs the host memcpys out, so
what is left is everything but the copy: ALLOC/COMMIT frames, replies, copy plans, budget, the node's per-key work.
``--copies dma:53`` replaces them by a fake copy engine of 53 GB/s (one stream: a chunk's copies take bytes / rate after
the previous chunk's, waited for where a GPU's event would be): the pipeline as on a GPU, with the time before the first
copy and after the last. ``--device cuda``: the source is one CUDA tensor (DMA into the arena), and a pinned
device-to-host copy of the same bytes is timed in the same rounds (the ceiling). Medians over the rounds; every key's
status is checked, and with copies on the stored bytes are read back and compared (outside the clock) after the first
and the last round. ``--node-split KEYS``: the node's ALLOC and COMMIT alone, in requests of KEYS keys.
``--profile``: one more call of each client under cProfile (caller thread only), the top entries by own time.
"""
import argparse
import cProfile
import glob
import importlib
import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402

from gpu_bench import start_node  # noqa: E402  (bench/ is the script's folder)


def size_of(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*(KiB|MiB|GiB|B)?", text.strip())
    if not m:
        raise SystemExit(f"bad size {text!r}: e.g. 4KiB, 128KiB, 1MiB")
    return int(m.group(1)) << {None: 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30}[m.group(2)]


def node_cpu_ns(pid: int) -> int:
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass   # a thread that ended meanwhile
    return total


def load_client(spec: str, name: str, scratch: str):
    """A client as package ``kvasir_NAME``: this tree's (``worktree``), from a git ref, or from a directory holding
    ``kvasir/`` (or ``python/kvasir/``)."""
    target = os.path.join(scratch, f"kvasir_{name}")
    if spec == "worktree":
        shutil.copytree(os.path.join(ROOT, "python", "kvasir"), target)
    elif os.path.isdir(os.path.join(spec, "kvasir")):
        shutil.copytree(os.path.join(spec, "kvasir"), target)
    elif os.path.isdir(os.path.join(spec, "python", "kvasir")):
        shutil.copytree(os.path.join(spec, "python", "kvasir"), target)
    else:
        tar = subprocess.run(["git", "-C", ROOT, "archive", spec, "python/kvasir"], capture_output=True, check=True).stdout
        os.makedirs(os.path.join(scratch, name))
        subprocess.run(["tar", "x", "-C", os.path.join(scratch, name)], input=tar, check=True)
        os.rename(os.path.join(scratch, name, "python", "kvasir"), target)
    if scratch not in sys.path:
        sys.path.insert(0, scratch)
    return importlib.import_module(f"kvasir_{name}")


def set_constants(pkg, settings) -> None:
    """``NAME=SIZE`` items: constants of the package's local_put (e.g. _FIRST_CHUNK_BYTES=64MiB, _RAMP_UP=1)."""
    mod = importlib.import_module(f"{pkg.__name__}.local_put")
    for item in settings:
        name, value = item.split("=", 1)
        if not hasattr(mod, name):
            raise SystemExit(f"{pkg.__name__}.local_put has no {name}")
        setattr(mod, name, size_of(value))


class FakeDma:
    """A copy engine that takes ``bytes / rate`` per batch of copies, one batch after another (as one CUDA stream), and
    costs the caller nothing: ``synchronize()`` sleeps until the batch's virtual end. Used for ``--copies dma:GBPS``."""

    def __init__(self, gbps: float):
        self.rate, self.end = gbps * 1e9, 0.0
        self.first = None   # when the first batch of a call was submitted (measure() resets it)

    def submit(self, nbytes: int):
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.end = max(now, self.end) + nbytes / self.rate
        end = self.end

        class Event:
            @staticmethod
            def synchronize():
                left = end - time.perf_counter()
                if left > 0:
                    time.sleep(left)
        return Event()


def stub_copies(pkg, dma=None) -> None:
    """No host memcpy in ``pkg``'s local puts (the copy plan is still built): what is left is the rest of the put.
    With ``dma`` each chunk's copies become one batch on that fake copy engine instead (its events are waited for
    where a GPU's would be)."""
    mod = importlib.import_module(f"{pkg.__name__}.local_load")

    def run_host(self):
        batch, self.host = self.host, []
        if dma is not None and batch:
            self.events.append(dma.submit(int(sum(int(n.sum()) for _, _, n in batch))))
    mod._Copies.run_host = run_host


class Case:
    def __init__(self, name, pkg, addr, src_ptr, src_len):
        self.name, self.pkg = name, pkg
        self.store = pkg.KvStore(addr, transport="shm", request_timeout=60)
        if src_ptr is not None:
            self.store.register_buffer(src_ptr, src_len)
        self.rows = {}   # shape -> list of per-call dicts


def put(case: Case, keys, ptrs, sizes):
    """``batch_put_from_local``, or with lists of pieces per key ``batch_put_from_multi_buffers_local``."""
    if ptrs and isinstance(ptrs[0], list):
        return case.store.batch_put_from_multi_buffers_local(keys, ptrs, sizes)
    return case.store.batch_put_from_local(keys, ptrs, sizes)


def measure(case: Case, keys, ptrs, sizes, node_pid: int, sync, dma=None) -> dict:
    case.store.batch_remove(keys)   # free space (the keys may not exist yet)
    sync()
    if dma is not None:
        dma.first = None
    r0, t0, n0 = time.process_time(), time.thread_time(), node_cpu_ns(node_pid)
    w0 = time.perf_counter()
    codes = put(case, keys, ptrs, sizes)
    sync()
    wall = time.perf_counter() - w0
    r1, t1, n1 = time.process_time(), time.thread_time(), node_cpu_ns(node_pid)
    bad = [i for i, c in enumerate(codes) if c != 0]
    if bad:
        raise SystemExit(f"{case.name}: {len(bad)} keys failed, first {keys[bad[0]]!r}: {codes[bad[0]]}")
    row = {"wall": wall, "client_cpu": r1 - r0, "caller_cpu": t1 - t0, "node_cpu": (n1 - n0) / 1e9}
    if dma is not None:   # before the first copy started, and after the last one ended
        row["head"], row["tail"] = dma.first - w0, w0 + wall - dma.end
    return row


def check_bytes(case: Case, keys, block: int, expect: np.ndarray) -> None:
    got = np.zeros(len(keys) * block, dtype=np.uint8)
    case.store.register_buffer(got.ctypes.data, got.nbytes)
    step = 1024
    for i in range(0, len(keys), step):
        n = min(step, len(keys) - i)
        lengths = case.store.batch_get_into(keys[i:i + n], [got.ctypes.data + (i + j) * block for j in range(n)], [block] * n)
        assert lengths == [block] * n, f"{case.name}: read back {lengths[:3]}"
    case.store.unregister_buffer(got.ctypes.data)
    if not np.array_equal(got, expect):
        raise SystemExit(f"{case.name}: stored bytes differ from the source")


def profile(case: Case, keys, ptrs, sizes, top: int) -> str:
    case.store.batch_remove(keys)
    prof = cProfile.Profile()
    w = time.perf_counter()
    prof.enable()
    codes = put(case, keys, ptrs, sizes)
    prof.disable()
    wall = time.perf_counter() - w
    assert codes == [0] * len(keys)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    body = text[text.find("ncalls"):] if "ncalls" in text else text
    return f"--- {case.name}: one call of {len(keys)} keys under cProfile, {wall * 1e3:.1f} ms wall ---\n{body}"


def node_split(store, node_pid: int, blocks: int, block: int, per_request: int, rounds: int) -> None:
    """The node's own time per key for ALLOC and for COMMIT, request by request (no copies, nothing in flight beside):
    ``blocks`` keys in requests of ``per_request``, each request's round trip and the node's CPU time over it."""
    from kvasir import local_load
    from kvasir import protocol as P
    from kvasir import shm
    conn = store._connection()
    store._negotiate(conn)
    _, alloc_dtype = local_load._dtypes()
    keys = [f"split/{i}".encode() for i in range(blocks)]
    rows = {"PING": [], "ALLOC": [], "COMMIT": []}

    def timed(what, n, fn):
        c0, t0 = node_cpu_ns(node_pid), time.perf_counter()
        out = fn()
        rows[what].append(((time.perf_counter() - t0) / n, (node_cpu_ns(node_pid) - c0) / 1e9 / n))
        return out

    for _ in range(rounds):
        store.batch_remove([k.decode() for k in keys])
        for a in range(0, blocks, per_request):
            part = keys[a:a + per_request]
            timed("PING", 1, lambda: conn.call(P.Opcode.PING, b""))
            flags, meta = shm.alloc_request(conn, part, [block] * len(part))
            reply = timed("ALLOC", len(part), lambda: conn.call_raw(P.Opcode.ALLOC, meta, flags=flags))
            e = local_load._entries(reply, alloc_dtype, len(part), "ALLOC")
            assert (e["status"] == 0).all(), "ALLOC refused keys: use a larger --memory"
            timed("COMMIT", len(part), lambda: conn.call_raw(P.Opcode.COMMIT, local_load._id_list(e["id"])))
    med = statistics.median
    print(f"\nnode per request of {per_request} keys ({blocks} keys x {rounds} rounds, medians): round trip and node CPU")
    for what, r in rows.items():
        unit = "per request" if what == "PING" else "per key"
        print(f"  {what:>6}: {med(x for x, _ in r) * 1e6:8.2f} µs wall, {med(y for _, y in r) * 1e6:8.2f} µs node CPU {unit}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="main", help="git ref, a directory holding kvasir/ (or python/kvasir/), or worktree")
    ap.add_argument("--set-new", action="append", default=[], metavar="NAME=SIZE",
                    help="a local_put constant for new (e.g. _FIRST_CHUNK_BYTES=64MiB, _RAMP_UP=1)")
    ap.add_argument("--set-base", action="append", default=[], metavar="NAME=SIZE", help="the same for base")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=SPEC[,CONST=SIZE...]",
                    help="one more client in the rotation, e.g. ramp=worktree,_RAMP_UP=1,_RAMP_DOWN=1")
    ap.add_argument("--shapes", default="16384x4KiB,16384x128KiB", help="BLOCKSxSIZE,...")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--copies", default="off", help="on | off | dma:GBPS (off, with a fake copy engine of that rate)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--memory", default="2GiB")
    ap.add_argument("--pieces", type=int, default=1,
                    help="each value gathered from this many pieces (batch_put_from_multi_buffers_local), layer-major")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--node-split", type=int, default=0, metavar="KEYS",
                    help="also time the node's ALLOC and COMMIT alone, in requests of KEYS keys (e.g. 2048)")
    ap.add_argument("--json")
    args = ap.parse_args()
    shapes = [(int(b), size_of(s)) for b, s in (x.split("x", 1) for x in args.shapes.split(","))]
    cuda = args.device == "cuda"
    if cuda and args.copies != "on":
        args.copies = "on"   # a DMA is never stubbed
    scratch = tempfile.mkdtemp(prefix="kvasir-put-ab-")
    node = None
    try:
        import kvasir
        clients = [("new", kvasir, args.set_new), ("base", load_client(args.base, "base", scratch), args.set_base)]
        for v in args.variant:
            name, spec = v.split("=", 1)
            spec, *settings = spec.split(",")
            clients.append((name, load_client(spec, name, scratch), settings))
        for _, pkg, settings in clients:
            set_constants(pkg, settings)
        dma = FakeDma(float(args.copies[4:])) if args.copies.startswith("dma:") else None
        if args.copies != "on":
            for _, pkg, _ in clients:
                stub_copies(pkg, dma)
        biggest = max(b * s for b, s in shapes)
        torch = None
        if cuda:
            import torch
            src_t = torch.randint(0, 256, (biggest,), dtype=torch.uint8, device="cuda")
            expect = src_t.cpu().numpy()
            src_ptr, src_len = None, None
            pinned = torch.empty(biggest, dtype=torch.uint8, pin_memory=True)
            sync = torch.cuda.synchronize
            base_ptr = src_t.data_ptr()
        else:
            # copies off: the source is never read, so its pages are never touched (np.empty costs no memory)
            src = np.empty(biggest, dtype=np.uint8)
            if args.copies == "on":
                src[:] = np.random.default_rng(5).integers(0, 256, biggest, dtype=np.uint8)
            expect = src
            src_ptr, src_len = src.ctypes.data, src.nbytes
            sync = lambda: None   # noqa: E731
            base_ptr = src_ptr
        node, addr = start_node(args.memory)
        cases = [Case(name, pkg, addr, src_ptr, src_len) for name, pkg, _ in clients]
        ceiling = {}
        plans = {}
        for blocks, block in shapes:
            keys = [f"blk/{block}/{i}" for i in range(blocks)]
            if args.pieces == 1:
                plans[(blocks, block)] = (keys, [base_ptr + j * block for j in range(blocks)], [block] * blocks)
                continue
            # layer-major, as a paged KV cache per layer: piece j of block i at layer j's tensor + i * piece
            piece = block // args.pieces
            if piece * args.pieces != block:
                raise SystemExit(f"--pieces {args.pieces} does not divide a block of {block} bytes")
            plans[(blocks, block)] = (keys, [[base_ptr + (j * blocks + i) * piece for j in range(args.pieces)] for i in range(blocks)],
                                      [[piece] * args.pieces for _ in range(blocks)])
        print(f"node {addr}, shapes {shapes}, copies {args.copies}, device {args.device}, clients "
              + ", ".join(f"{n}={'worktree' if n == 'new' else v}" for n, v in [("new", ""), ("base", args.base)] + [
                  tuple(x.split("=", 1)) for x in args.variant]), file=sys.stderr)
        for c in cases:   # warm-up: one call of each shape (JIT of the node, imports, CUDA registration)
            for shape, (keys, ptrs, sizes) in plans.items():
                measure(c, keys, ptrs, sizes, node.pid, sync, dma)
        for rnd in range(args.rounds):
            order = cases[rnd % len(cases):] + cases[:rnd % len(cases)]   # each client first in turn
            for shape, (keys, ptrs, sizes) in plans.items():
                for c in order:
                    c.rows.setdefault(shape, []).append(measure(c, keys, ptrs, sizes, node.pid, sync, dma))
                    if args.copies == "on" and rnd in (0, args.rounds - 1):
                        n = shape[0] * shape[1]
                        check_bytes(c, keys, shape[1], expect[:n] if args.pieces == 1 else
                                    expect[:n].reshape(args.pieces, shape[0], -1).transpose(1, 0, 2).reshape(-1))
                if cuda:
                    n = shape[0] * shape[1]
                    sync()
                    t = time.perf_counter()
                    pinned[:n].copy_(src_t[:n], non_blocking=True)
                    sync()
                    ceiling.setdefault(shape, []).append(n / (time.perf_counter() - t) / 1e9)
        med = statistics.median
        result = {"device": args.device, "copies": args.copies, "base": args.base, "variants": args.variant,
                  "rounds": args.rounds, "shapes": []}
        if cuda:
            result["device_name"] = torch.cuda.get_device_name(0)
        print(f"\n{'shape':>16} {'client':>6} {'keys/s':>9} {'GB/s':>7} {'vs ceiling':>10} {'best ms':>8} {'wall µs/key':>11} "
              f"{'client CPU µs/key':>17} {'caller µs/key':>13} {'node CPU µs/key':>15}")
        for shape in plans:
            blocks, block = shape
            row = {"blocks": blocks, "block_bytes": block}
            ceiling_gbps = med(ceiling[shape]) if cuda else dma.rate / 1e9 if dma is not None else None
            if ceiling_gbps is not None:
                row["ceiling_gbps"] = ceiling_gbps   # pinned D2H of the same bytes, or the fake copy engine's rate
            for c in cases:
                rs = c.rows[shape]
                wall = med(r["wall"] for r in rs)
                stats = {
                    "keys_per_s": blocks / wall, "gbps": blocks * block / wall / 1e9,
                    "best_ms": min(r["wall"] for r in rs) * 1e3,
                    "wall_us_per_key": wall / blocks * 1e6,
                    "client_cpu_us_per_key": med(r["client_cpu"] for r in rs) / blocks * 1e6,
                    "caller_cpu_us_per_key": med(r["caller_cpu"] for r in rs) / blocks * 1e6,
                    "node_cpu_us_per_key": med(r["node_cpu"] for r in rs) / blocks * 1e6,
                    "rounds_wall_ms": [round(r["wall"] * 1e3, 2) for r in rs],
                }
                if ceiling_gbps is not None:
                    stats["vs_ceiling"] = stats["gbps"] / ceiling_gbps
                if dma is not None:
                    stats["head_ms"] = med(r["head"] for r in rs) * 1e3
                    stats["tail_ms"] = med(r["tail"] for r in rs) * 1e3
                    stats["best_head_ms"] = min(r["head"] for r in rs) * 1e3
                    stats["best_tail_ms"] = min(r["tail"] for r in rs) * 1e3
                stats["base_over_this_wall"] = None
                row[c.name] = stats
            for c in cases:
                stats = row[c.name]
                stats["base_over_this_wall"] = row["base"]["wall_us_per_key"] / stats["wall_us_per_key"]
                vs = f"{stats['vs_ceiling']:.2f}" if ceiling_gbps is not None else "-"
                print(f"{blocks:>7}x{block >> 10:>5}KiB {c.name:>6} {stats['keys_per_s']:>9.0f} {stats['gbps']:>7.2f} {vs:>10} "
                      f"{stats['best_ms']:>8.1f} {stats['wall_us_per_key']:>11.2f} {stats['client_cpu_us_per_key']:>17.2f} "
                      f"{stats['caller_cpu_us_per_key']:>13.2f} {stats['node_cpu_us_per_key']:>15.2f}")
            if ceiling_gbps is not None:
                print(f"{'':>16} ceiling: {'pinned D2H' if cuda else 'fake copy engine'} {ceiling_gbps:.2f} GB/s")
            if dma is not None:
                print(f"{'':>16} ms before the first copy / after the last, median (best): " + ", ".join(
                    f"{c.name} {row[c.name]['head_ms']:.2f} ({row[c.name]['best_head_ms']:.2f}) / {row[c.name]['tail_ms']:.2f} "
                    f"({row[c.name]['best_tail_ms']:.2f})" for c in cases))
            for c in cases:
                print(f"{'':>16} {c.name}: base/{c.name} wall {row[c.name]['base_over_this_wall']:.2f}x, rounds (ms) "
                      f"{row[c.name]['rounds_wall_ms']}")
            result["shapes"].append(row)
        if args.node_split:
            blocks, block = shapes[-1]
            node_split(cases[0].store, node.pid, blocks, block, args.node_split, args.rounds)
        if args.profile:
            for shape, (keys, ptrs, sizes) in plans.items():
                for c in cases:
                    print(profile(c, keys, ptrs, sizes, args.top))
        for c in cases:
            c.store.close()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    finally:
        if node is not None:
            node.terminate()
            node.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
