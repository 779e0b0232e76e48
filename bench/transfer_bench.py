#!/usr/bin/python3
"""Python transfer engine throughput: one-sided WRITE and READ by message size and lane count.

    /usr/bin/python3 bench/transfer_bench.py [--seconds 1] [--sizes 64KiB,1MiB,16MiB,256MiB]
        [--lanes 1,2,4,8] [--netns] [--delay-ms 1] [--shm]

The target is the interop peer (`python -m kvasir.transfer.peer`, docs/transfer.md § Interop peer) in
its own process, so the two engines do not share a GIL; the driver (this process) connects with
`lanes` lanes (ncpus=1, nconn_per_cpu=lanes) and writes (then reads) one message at a time into the
peer's advertised 256 MiB region for --seconds per cell. Reports GB/s of payload (10^9 B/s), median
of 3 rounds. Every cell's last write is checked byte for byte by the peer's SHA-256.

--shm gives the peer a region in /dev/shm (alloc_shared), so the engine's same-host path moves each message
with one memcpy (and a zero-length completion WRITE for writes); it reports those rates beside a plain memcpy of
the same bytes between two buffers of this process, in the same run, and their ratio.

--shm --cuda makes the driver's buffers CUDA tensors: each message is one DMA between GPU memory and the peer's
mapped window; the baseline is torch's pinned host -> GPU copy of the same bytes (PCIe).

--cuda without --shm does the same over the lanes: each slice goes through its lane's pinned buffers
(docs/transfer.md § GPU memory); run it with and without --cuda to see the staging's cost.

--gpu-target makes the peer's region GPU memory (same host): each cell runs twice in the same run, over the lanes
(the peer started with --no-gpu-staging: each slice through its lane's pinned ring) and through the connection's
staging file (docs/transfer.md § GPU memory on the same host: one DMA per piece at the peer), then prints both with
their ratio and torch's pinned host -> GPU copy of the same bytes. With --cuda the driver's buffers are GPU memory too.

--netns runs the peer in a fresh network namespace behind a veth pair (needs root) and, where the
kernel has sch_netem, delays the link by --delay-ms each way; the namespace is removed at the end.
"""
import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
from delay_line import VethPair  # noqa: E402
from kvasir.transfer import Engine  # noqa: E402

REGION = 256 << 20


def size(text):
    m = re.fullmatch(r"(\d+)(MiB|KiB)?", text)
    if not m:
        raise SystemExit(f"bad size {text!r}: use e.g. 64KiB or 16MiB")
    return int(m.group(1)) << {"MiB": 20, "KiB": 10, None: 0}[m.group(2)]


def human(n):
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


class Link:
    """A namespace behind a veth pair, optionally delayed with netem; removed on close."""

    def __init__(self, delay_ms):
        self.ns, self.host_if, self.ns_if = "kvx-bench", "kvxhb", "kvxnb"
        sh("ip", "netns", "add", self.ns)
        try:
            self._pair = VethPair(self.ns, self.host_if, self.ns_if, "10.231.78", delay_ms)
        except BaseException:
            sh("ip", "netns", "del", self.ns, check=False)
            raise
        self.delay = delay_ms if self._pair.delayed else None
        if delay_ms and not self._pair.delayed:
            print(f"# netem unavailable ({self._pair.netem_error}): the link has no added delay", flush=True)

    def close(self):
        self._pair.close()
        sh("ip", "netns", "del", self.ns, check=False)


def start_peer(host, netns, shared=False, extra=()):
    cmd = [sys.executable, "-m", "kvasir.transfer.peer", "--host", host, "--region-bytes", str(REGION), *extra]
    if shared:
        cmd.append("--shared-region")
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python")),
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    ev = json.loads(p.stdout.readline())
    if ev.get("event") != "listening":
        raise SystemExit(f"peer did not start: {ev}")
    return p, bytes.fromhex(ev["metadata"])


def notif(eng, what):
    got = eng.wait_notifs(60)
    if not got:
        raise SystemExit(f"timed out waiting for {what}")
    return got[0][1]


def cell(eng, conn, op, mr, src, n, blob, seconds):
    fn = eng.write if op == "write" else eng.read
    ptr = src.data_ptr() if hasattr(src, "data_ptr") else src.ctypes.data

    def once():
        if not fn(conn, mr, ptr, n, blob):
            raise SystemExit(f"{op} failed: {eng.last_error}")
    return timed_rate(once, n, seconds)


def timed_rate(once, n, seconds):
    """GB/s of calling ``once`` (which moves n bytes) back to back for ``seconds``: the median of 3 rounds."""
    rates = []
    for _ in range(3):
        moved, t0 = 0, time.perf_counter()
        while True:
            once()
            moved += n
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        rates.append(moved / dt / 1e9)
    return statistics.median(rates)


def memcpy_rate(src, n, seconds):
    """GB/s of np.copyto of n bytes between two buffers of this process (median of 3 rounds)."""
    dst = np.empty(n, dtype=np.uint8)
    dst[:] = 1   # touched: no page faults inside the timed loop
    return timed_rate(lambda: np.copyto(dst, src[:n]), n, seconds)


def pcie_rate(n, seconds):
    """GB/s of torch's pinned host -> GPU copy of n bytes (median of 3 rounds): the PCIe baseline."""
    import torch
    host = torch.empty(n, dtype=torch.uint8).pin_memory()
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")

    def once():
        dev.copy_(host)
        torch.cuda.synchronize()
    return timed_rate(once, n, seconds)


def run_shm(sizes, seconds, gpu=False):
    src = np.frombuffer(np.random.default_rng(1).bytes(max(sizes)), dtype=np.uint8).copy()
    host_src = src
    if gpu:
        import torch
        src = torch.from_numpy(src).cuda()
    peer, meta = start_peer("127.0.0.1", None, shared=True)
    base = "pinned H2D" if gpu else "memcpy"
    print(f"| message | {base} GB/s | shm write GB/s | shm read GB/s | write / {base} | read / {base} |", flush=True)
    try:
        with Engine("lo", 1, 1, 0) as eng:
            ok, conn = eng.add_remote_endpoint(meta)
            if not ok:
                raise SystemExit(eng.last_error)
            blob = notif(eng, "the advertisement")[len(b"advert:"):]
            _, mr = eng.reg(src)
            for n in sizes:
                before = eng.shm_transfers
                w = cell(eng, conn, "write", mr, src, n, blob, seconds)
                eng.send_notif(conn, f"sha:0:{n}".encode())
                if notif(eng, "sha") != b"sha:" + hashlib.sha256(host_src[:n].tobytes()).hexdigest().encode():
                    raise SystemExit(f"verify failed: {n} bytes")
                back = torch.empty(n, dtype=torch.uint8, device="cuda") if gpu else np.empty(n, dtype=np.uint8)
                _, bmr = eng.reg(back)
                r = cell(eng, conn, "read", bmr, back, n, blob, seconds)
                got = back.cpu().numpy() if gpu else back
                if not np.array_equal(got, host_src[:n]):
                    raise SystemExit(f"read verify failed: {n} bytes")
                if eng.shm_transfers == before:
                    raise SystemExit("the same-host path was not taken (no shared-memory transfer counted)")
                eng.dereg(bmr)
                m = pcie_rate(n, seconds) if gpu else memcpy_rate(src, n, seconds)
                print(f"| {human(n)} | {m:.2f} | {w:.2f} | {r:.2f} | {w / m:.2f} | {r / m:.2f} |", flush=True)
            eng.send_notif(conn, b"bye")
    finally:
        try:
            peer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            peer.terminate()
            peer.wait(timeout=10)


_SINK = r"""
import socket, sys, threading
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(n)
print(srv.getsockname()[1], flush=True)
def drain(c):
    buf = memoryview(bytearray(1 << 22))
    while c.recv_into(buf):
        pass
ts = [threading.Thread(target=drain, args=(srv.accept()[0],)) for _ in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
"""


def socket_rate(streams, seconds):
    """GB/s of plain TCP over loopback with ``streams`` connections (sendall of 4 MiB from one thread each, a
    receiving process draining each with recv_into): iperf3 -P streams in spirit, for machines without it."""
    import socket
    import threading
    sink = subprocess.Popen([sys.executable, "-c", _SINK, str(streams)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(streams)]
        chunk = memoryview(bytearray(1 << 22))
        moved = [0] * streams
        t0 = time.perf_counter()

        def pump(i):
            while time.perf_counter() - t0 < seconds:
                conns[i].sendall(chunk)
                moved[i] += len(chunk)
        threads = [threading.Thread(target=pump, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        for c in conns:
            c.close()
        return sum(moved) / dt / 1e9
    finally:
        sink.wait(timeout=30)


def run(host_if, peer_host, netns, sizes, lanes_list, seconds, baseline=False, gpu=False, peer_args=(), staged=None):
    """``staged``: True/False checks that every cell went through a staging file / over the lanes (--gpu-target)."""
    rows = []
    src = np.frombuffer(np.random.default_rng(1).bytes(max(sizes)), dtype=np.uint8).copy()
    src_host = src
    if gpu:   # the driver's buffers in GPU memory: every slice staged through its lane's pinned buffers
        import torch
        src = torch.from_numpy(src).cuda()
    for lanes in lanes_list:
        peer, meta = start_peer(peer_host, netns, extra=peer_args)
        try:
            with Engine(host_if, 1, lanes, 0) as eng:
                ok, conn = eng.add_remote_endpoint(meta)
                if not ok:
                    raise SystemExit(eng.last_error)
                blob = notif(eng, "the advertisement")[len(b"advert:"):]
                _, mr = eng.reg(src)
                for n in sizes:
                    w = cell(eng, conn, "write", mr, src, n, blob, seconds)
                    eng.send_notif(conn, f"sha:0:{n}".encode())
                    if notif(eng, "sha") != b"sha:" + hashlib.sha256(src_host[:n].tobytes()).hexdigest().encode():
                        raise SystemExit(f"verify failed: {n} bytes, {lanes} lanes")
                    back = torch.empty(n, dtype=torch.uint8, device="cuda") if gpu else np.empty(n, dtype=np.uint8)
                    _, bmr = eng.reg(back)
                    r = cell(eng, conn, "read", bmr, back, n, blob, seconds)
                    if not np.array_equal(back.cpu().numpy() if gpu else back, src_host[:n]):
                        raise SystemExit(f"read verify failed: {n} bytes, {lanes} lanes")
                    eng.dereg(bmr)
                    if staged is not None and (eng.shm_transfers > 0) != staged:
                        raise SystemExit(f"{eng.shm_transfers} transfers went through a staging file; expected "
                                         f"{'all' if staged else 'none'}")
                    rows.append((lanes, n, w, r))
                    extra = ""
                    if baseline:
                        tcp = statistics.median(socket_rate(lanes, seconds) for _ in range(3))
                        extra = f" {tcp:.2f} | {w / tcp:.2f} | {r / tcp:.2f} |"
                    print(f"| {lanes} | {human(n)} | {w:.2f} | {r:.2f} |{extra}", flush=True)
                eng.send_notif(conn, b"bye")
        finally:
            try:
                peer.wait(timeout=30)   # it exits after `bye`, or once the closed engine dropped its connection
            except subprocess.TimeoutExpired:
                peer.terminate()
                peer.wait(timeout=10)
    return rows


def run_gpu_target(sizes, lanes, seconds, gpu):
    """Same host, the peer's region in GPU memory: the lanes against the staging file, cell by cell, in one run."""
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("--gpu-target needs a CUDA device (the peer's region is GPU memory); this machine has none")
    src = "GPU" if gpu else "host"
    tables = {}
    for staged in (False, True):
        how = "through the staging file" if staged else "over the lanes (peer --no-gpu-staging)"
        print(f"## same host, {src} memory -> the peer's GPU memory, {how}: GB/s\n\n"
              "| lanes | message | write | read |\n| ---: | ---: | ---: | ---: |", flush=True)
        args = ("--cuda-region",) if staged else ("--cuda-region", "--no-gpu-staging")
        tables[staged] = run("lo", "127.0.0.1", None, sizes, lanes, seconds, gpu=gpu, peer_args=args, staged=staged)
        print(flush=True)
    print("## staging file / lanes, same run\n\n| lanes | message | write ratio | read ratio | pinned H2D GB/s |\n"
          "| ---: | ---: | ---: | ---: | ---: |", flush=True)
    pcie = {n: pcie_rate(n, seconds) for n in sizes}
    for (l, n, lw, lr), (_, _, sw, sr) in zip(tables[False], tables[True]):
        print(f"| {l} | {human(n)} | {sw / lw:.2f} | {sr / lr:.2f} | {pcie[n]:.2f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--sizes", default="64KiB,1MiB,16MiB,256MiB")
    ap.add_argument("--lanes", default="1,2,4,8")
    ap.add_argument("--netns", action="store_true")
    ap.add_argument("--delay-ms", type=float, default=1.0)
    ap.add_argument("--shm", action="store_true", help="same host through shared memory, against memcpy")
    ap.add_argument("--tcp-baseline", action="store_true", help="beside each loopback cell, plain TCP with as many "
                    "streams (sendall / recv_into of 4 MiB, iperf3 -P in spirit), median of 3, in the same run")
    ap.add_argument("--gpu-target", action="store_true", help="the peer's region is GPU memory: over the lanes and "
                    "through the staging file in the same run, beside torch's pinned host -> GPU copy")
    ap.add_argument("--cuda", action="store_true", help="the driver's buffers are CUDA tensors: with --shm one DMA "
                    "to or from the mapped window, against torch's pinned host -> GPU copy; over the lanes each slice "
                    "staged through pinned buffers")
    a = ap.parse_args()
    sizes = [size(s) for s in a.sizes.split(",")]
    if max(sizes) > REGION:
        raise SystemExit(f"sizes above the peer's region of {human(REGION)}")
    if a.shm:
        print("## same host, shared memory (peer region in /dev/shm)\n", flush=True)
        run_shm(sizes, a.seconds, a.cuda)
        return
    lanes = [int(x) for x in a.lanes.split(",")]
    if a.gpu_target:
        run_gpu_target(sizes, lanes, a.seconds, a.cuda)
        return
    if a.tcp_baseline:
        print("## loopback (127.0.0.1): GB/s, beside plain TCP with as many streams\n\n"
              "| lanes | message | write | read | plain TCP | write / TCP | read / TCP |\n"
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    else:
        print("## loopback (127.0.0.1): GB/s\n\n| lanes | message | write | read |\n| ---: | ---: | ---: | ---: |", flush=True)
    run("lo", "127.0.0.1", None, sizes, lanes, a.seconds, a.tcp_baseline, a.cuda)
    if a.netns:
        link = Link(a.delay_ms)
        try:
            what = f"netem {link.delay:g} ms each way" if link.delay else "no added delay"
            print(f"\n## veth between namespaces ({what}): GB/s\n\n| lanes | message | write | read |\n"
                  "| ---: | ---: | ---: | ---: |", flush=True)
            run(link.host_if, "10.231.78.2", link.ns, sizes, lanes, a.seconds)
        finally:
            link.close()


if __name__ == "__main__":
    main()
