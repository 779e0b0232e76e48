#!/usr/bin/python3
"""Resource attacks against a real `kvasir serve` process (issue 16), each beside a well-behaved witness client:
node RSS before, at peak and after each attack, against the arena's capacity, and whether the witness was served
throughout. Every attack is bounded in time and connections; everything started is stopped by pid.

    /usr/bin/python3 bench/attacks.py [--memory-mib 256] [--seconds 15]

Attacks: LEASE without RELEASE (reconnecting when cut), 4,096 connections from 4 addresses holding half-sent
headers, 200 connections each sending 8 MiB - 1 of an 8 MiB GET batch, an ALLOC of 4 x 64 MiB, and, for reference,
4 ordinary writers with mixed value sizes.
"""
import argparse
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from kvasir import KvStore  # noqa: E402
from kvasir.messages import HelloRequest  # noqa: E402
from kvasir.protocol import Opcode, encode_alloc_request, encode_key_batch, encode_meta, pack_header  # noqa: E402

CLI = os.path.join(ROOT, ".build", "cli", "kvasir.dll")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def frame(opcode, request_id, meta=b"", payload_length=0):
    return pack_header(opcode, 0, request_id, 0, len(meta), payload_length) + meta


HELLO = frame(Opcode.HELLO, 1, encode_meta(HelloRequest(1, 1, 0, "attacks")))


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def read_frame(s):
    h = recv_exact(s, 32)
    meta_len, payload_len = struct.unpack_from("<IQ", h, 20)
    status = struct.unpack_from("<H", h, 16)[0]
    meta = recv_exact(s, meta_len)
    if payload_len:
        recv_exact(s, payload_len)
    return status, meta


def connect(port, source="127.0.0.1", hello=True):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    if hello:
        s.sendall(HELLO)
        read_frame(s)
    return s


class Witness:
    """Round trips of 64 KiB values from 127.0.0.1 while an attack runs: the longest wait and any failure."""

    def __init__(self, port):
        self.store = KvStore(f"127.0.0.1:{port}", transport="tcp", request_timeout=10.0)
        self.worst, self.failures, self.ops = 0.0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        i = 0
        while not self._stop.is_set():
            i += 1
            value = os.urandom(64 * 1024)
            t = time.monotonic()
            try:
                ok = self.store.put(f"witness/{i % 64}", value) == 0 and self.store.get(f"witness/{i % 64}") == value
            except Exception:
                ok = False
            self.worst = max(self.worst, time.monotonic() - t)
            self.ops += 1
            self.failures += 0 if ok else 1
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join(15)
        self.store.close()


def attack_leases(port, seconds):
    """One client leasing one value 8,192 times per request, never releasing; reconnecting when the node cuts it."""
    store = KvStore(f"127.0.0.1:{port}", transport="tcp")
    store.put("leased", b"x" * 4096)
    store.close()
    meta = encode_key_batch([b"leased"] * 8192)
    deadline, cuts, leases = time.monotonic() + seconds, 0, 0
    while time.monotonic() < deadline:
        s = connect(port)
        try:
            for i in range(1000):
                s.sendall(frame(Opcode.LEASE, 10 + i, meta))
                status, _ = read_frame(s)
                if status:
                    cuts += 1
                    break
                leases += 8192
        except (ConnectionError, OSError):
            cuts += 1
        finally:
            s.close()
    return f"{leases:,} leases taken, cut {cuts} times"


def attack_half_headers(port, seconds):
    """4,096 connections (1,024 from each of 127.0.0.2-5) that say HELLO and then send 10 bytes of a header."""
    socks, refused = [], 0
    for a in range(2, 6):
        for _ in range(1024):
            try:
                s = connect(port, f"127.0.0.{a}")
                s.sendall(frame(Opcode.PING, 2)[:10])
                socks.append(s)
            except (ConnectionError, OSError):
                refused += 1
    time.sleep(seconds)
    alive = 0
    for s in socks:
        try:
            s.setblocking(False)
            alive += 1 if s.recv(1) is None else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    return f"{len(socks)} opened ({refused} refused at once), {alive} still open after {seconds} s"


def attack_metadata(port, seconds):
    """200 connections from 4 addresses each announcing 8 MiB of GET metadata and sending all but its last byte."""
    socks, body = [], b"\0" * ((8 << 20) - 1)
    threads = []

    def one(a):
        try:
            s = connect(port, f"127.0.0.{a}")
            socks.append(s)
            s.sendall(pack_header(Opcode.GET, 0, 3, 0, 8 << 20, 0))
            s.sendall(body)
        except (ConnectionError, OSError):
            pass
    for i in range(200):
        t = threading.Thread(target=one, args=(2 + i % 4,), daemon=True)
        t.start()
        threads.append(t)
    time.sleep(seconds)
    for s in list(socks):
        s.close()
    for t in threads:
        t.join(5)
    return f"{len(socks)} connections"


def attack_alloc(port, seconds):
    """An ALLOC of 4 x 64 MiB from one connection, held; counts the witness values still readable after."""
    store = KvStore(f"127.0.0.1:{port}", transport="tcp")
    for i in range(100):
        store.put(f"keep/{i}", bytes([i]) * 65536)
    s = connect(port)
    s.sendall(frame(Opcode.ALLOC, 4, encode_alloc_request([f"giant/{i}".encode() for i in range(4)], [64 << 20] * 4)))
    _, meta = read_frame(s)
    granted = sum(1 for i in range(4) if meta[4 + i * 17] == 0)
    time.sleep(seconds)
    kept = sum(1 for i in range(100) if store.get(f"keep/{i}") == bytes([i]) * 65536)
    s.close()
    store.close()
    return f"{granted} of 4 reservations granted, {kept} of 100 stored values still there"


def ordinary_writers(port, seconds):
    """4 writers, values of 4 KiB to 4 MiB, over the arena's capacity several times."""
    sizes = [4 << 10, 64 << 10, 1 << 20, 4 << 20]
    puts = [0] * 4

    def one(w):
        store = KvStore(f"127.0.0.1:{port}", transport="tcp")
        deadline, i = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            size = sizes[(w + i) % 4]
            store.put(f"w{w}/{i % 512}", os.urandom(size))
            puts[w] += 1
            i += 1
        store.close()
    ts = [threading.Thread(target=one, args=(w,)) for w in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return f"{sum(puts):,} PUTs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memory-mib", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))
    if not os.path.exists(CLI):
        subprocess.run([os.path.join(ROOT, "kvasir"), "--help"], check=True, stdout=subprocess.DEVNULL)
    rows = []
    for name, attack in [("LEASE without RELEASE", attack_leases), ("4,096 half-sent headers", attack_half_headers),
                         ("200 x 8 MiB metadata, 1 byte short", attack_metadata), ("ALLOC 4 x 64 MiB", attack_alloc),
                         ("4 ordinary writers, 4 KiB-4 MiB", ordinary_writers)]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVASIR_")}
        node = subprocess.Popen(["dotnet", CLI, "serve", "--port", str(port), "--memory", f"{args.memory_mib}MiB",
                                 "--max-value", "64MiB", "--admin-port", "off", "--log-level", "error", "--frame-timeout", "10"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            time.sleep(0.5)
            before = rss_mib(node.pid)
            witness = Witness(port)
            peak = [before]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_mib(node.pid))
                    time.sleep(0.2)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            what = attack(port, args.seconds)
            time.sleep(12)   # frame timeout (10 s) and lease sweep: what the attack held is released
            stop.set()
            sampler.join()
            after = rss_mib(node.pid)
            witness.stop()
            alive = node.poll() is None
            rows.append((name, what, before, peak[0], after, witness, alive))
            print(f"attacks: {name}: {what}; RSS {before:.0f} -> peak {peak[0]:.0f} -> {after:.0f} MiB; witness {witness.ops} round trips, "
                  f"{witness.failures} failed, worst {witness.worst * 1000:.0f} ms; node {'alive' if alive else 'DEAD'}", flush=True)
        finally:
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
                try:
                    node.wait(20)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait(5)
    cap = args.memory_mib
    print(f"\n| attack ({cap} MiB arena) | what it did | RSS before | peak | after | peak / capacity | witness round trips (failed), worst |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for name, what, before, peak, after, w, alive in rows:
        print(f"| {name} | {what} | {before:.0f} MiB | {peak:.0f} MiB | {after:.0f} MiB | {peak / cap:.2f} | {w.ops} ({w.failures}), {w.worst * 1000:.0f} ms |")
    return 0 if all(r[6] and r[5].failures == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
