#!/usr/bin/python3
"""Checks a published kvasir binary (./kvasir publish [--jit] DIR) from outside, as an operator runs it, and
optionally compares two builds (docs/deploy.md § Native AOT or JIT).

  bench/publish_check.py BIN                 every check below; exit 1 naming the first that failed
  bench/publish_check.py BIN --compare BIN2  then startup to the first PING served, idle RSS and a bench of both
                                             (--bench-seconds S --bench-warmup W), alternated (--rounds N), medians
                                             and ratios BIN/BIN2

What the checks run (real processes on 127.0.0.1, free ports, a throwaway directory): --version; serve from a YAML
config file; put/get over TCP and shared memory; the admin port's /metrics, /v1/status, /v1/health, /v1/cluster and
the dashboard; the status (text and --json), stats and bench (--json) verbs; a node registered in a real Redis
(redis-server) and seen by `status --redis`; a TLS data port (a throwaway CA made with openssl) with put/get through
--tls-ca; `stats demo|visualize` (PNG). Uses /usr/bin/python3's standard library and the repository's Python client.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
import kvasir  # noqa: E402  (the repository's client, for the PING timing)

SERVING = re.compile(r"kvasir: serving on (\S+):(\d+) ")
ADMIN = re.compile(r"admin on (http://\S+?)/")


class CheckFailed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(binary, *args, env=None, timeout=60, stdin=None):
    """Runs a verb; fails naming the command when it exits non-zero."""
    r = subprocess.run([binary, *args], capture_output=True, timeout=timeout, env=env, input=stdin)
    if r.returncode != 0:
        raise CheckFailed(f"{' '.join(args)} exited {r.returncode}: {r.stderr.decode(errors='replace')[-800:]}")
    return r.stdout


def node_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("KVASIR_")}


class Node:
    """`BIN serve ARGS` with its output in a file; waits (30 s at most) for the line naming its data port."""

    def __init__(self, binary, *args, workdir):
        self.log_path = os.path.join(workdir, f"node-{time.monotonic_ns()}.log")
        self.log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([binary, "serve", *args], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=node_env(), cwd=workdir)
        deadline = time.monotonic() + 30
        while True:
            text = self.text()
            m = SERVING.search(text)
            if m:
                self.address = f"{m.group(1)}:{m.group(2)}"
                a = ADMIN.search(text)
                self.admin = a.group(1) if a else None
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CheckFailed(f"serve {' '.join(args)} did not start: {text[-1500:]}")
            time.sleep(0.02)

    def text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def http(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def check_version(binary, work):
    out = run(binary, "--version").decode()
    expect(out.startswith("kvasir ") and "linux-x64" in out, f"--version printed {out!r}")
    return out.strip()


def check_serve(binary, work):
    """YAML config, TCP and shm put/get, admin endpoints, status/stats/bench verbs."""
    config = os.path.join(work, "node.yaml")
    with open(config, "w", encoding="ascii") as f:
        f.write("node:\n  port: 0\n  admin_port: 0\n  memory: 64MiB\n  max_value: 4MiB\n  eviction: lru\n")
    n = Node(binary, "--config", config, workdir=work)
    try:
        expect("/dev/shm/" in n.text(), "the YAML-configured node has no shared-memory arena")
        value = os.urandom(300_000)
        src = os.path.join(work, "value.bin")
        with open(src, "wb") as f:
            f.write(value)
        for transport in ("tcp", "shm"):
            run(binary, "put", "--server", n.address, "--transport", transport, f"k-{transport}", src)
            for read_over in ("tcp", "shm"):
                got = run(binary, "get", "--server", n.address, "--transport", read_over, f"k-{transport}")
                expect(got == value, f"get over {read_over} of a value put over {transport} returned other bytes")
        expect(n.admin is not None, "the node printed no admin address")
        status, metrics = http(n.admin + "/metrics")
        expect(status == 200 and b"kvasir_build_info{" in metrics and b"kvasir_hits_total" in metrics,
               "/metrics lacks kvasir_build_info or kvasir_hits_total")
        st = json.loads(http(n.admin + "/v1/status")[1])
        expect(st["config"]["capacity_bytes"] == 64 << 20 and st["config"]["max_value_bytes"] == 4 << 20
               and st["config"]["eviction"] == "lru", f"/v1/status config is not the YAML's: {st['config']}")
        expect(st["keys"] == 2 and st["tiers"]["dram"]["hits"] >= 4 and "put" in st["ops"], f"/v1/status: {st}")
        expect(json.loads(http(n.admin + "/v1/health")[1])["status"] == "healthy", "/v1/health is not healthy")
        expect(json.loads(http(n.admin + "/v1/cluster")[1])["members"][0]["self"] is True, "/v1/cluster lacks self")
        status, page = http(n.admin + "/")
        expect(status == 200 and b"<html" in page.lower(), "the dashboard page did not come")
        text = run(binary, "status", "--server", n.address).decode()
        row = next((line.split() for line in text.splitlines() if n.address in line), [])
        expect("up" in row, f"status lists no up row for {n.address}: {text}")
        rows = json.loads(run(binary, "status", "--server", n.address, "--json"))
        expect(rows[0]["state"] == "up" and rows[0]["stats"]["keys"] == 2, f"status --json: {rows}")
        expect(b"capacity_bytes\t67108864" in run(binary, "stats", "--server", n.address), "stats lacks the capacity")
        line = run(binary, "bench", "--server", n.address, "--op", "get", "--value-size", "64KiB", "--duration", "1",
                   "--warmup", "0", "--key-space", "8MiB", "--json", "--no-progress", timeout=120).decode().strip()
        b = json.loads(line.splitlines()[-1])
        expect(b["errors"] == 0 and b["verify_failures"] == 0 and b["values"] > 0, f"bench: {line}")
    finally:
        n.stop()
    expect(n.proc.returncode == 0, f"the node exited {n.proc.returncode} on SIGTERM: {n.text()[-800:]}")


def check_redis(binary, work):
    """A node registered in a real Redis, seen by status --redis and by its own /v1/cluster."""
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                              "no", "--dir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n = None
    try:
        url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            expect(time.monotonic() < deadline, "redis-server did not answer PING in 10 s")
            time.sleep(0.05)
        n = Node(binary, "--port", "0", "--admin-port", "0", "--memory", "32MiB", "--redis", url, "--cluster", "aot",
                 workdir=work)
        deadline = time.monotonic() + 15
        while True:
            r = subprocess.run([binary, "status", "--redis", url, "--cluster", "aot", "--json"], capture_output=True,
                               timeout=30)
            if r.returncode == 0 and json.loads(r.stdout)[0]["addr"] == n.address:
                break
            expect(time.monotonic() < deadline, f"status --redis never listed the node: {r.stderr[-500:]!r}")
            time.sleep(0.2)
        members = json.loads(http(n.admin + "/v1/cluster")[1])
        expect(members["cluster"] == "aot" and members["error"] is None and members["members"][0]["addr"] == n.address,
               f"/v1/cluster: {members}")
        run(binary, "put", "--redis", url, "--cluster", "aot", "ck", "-", stdin=b"through the registry")
        expect(run(binary, "get", "--redis", url, "--cluster", "aot", "ck") == b"through the registry",
               "get through the registry returned other bytes")
    finally:
        if n:
            n.stop()
        redis.terminate()
        redis.wait(timeout=10)


def check_tls(binary, work):
    """A TLS data port (a throwaway CA signs the node's certificate) with put/get through --tls-ca."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=kvasir publish check CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=node")
    with open(os.path.join(work, "server.cnf"), "w", encoding="ascii") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.pem", "-days", "1", "-extfile", "server.cnf")
    n = Node(binary, "--port", "0", "--admin-port", "off", "--memory", "32MiB", "--tls-cert",
             os.path.join(work, "server.pem"), "--tls-key", os.path.join(work, "server.key"), workdir=work)
    try:
        ca = os.path.join(work, "ca.pem")
        run(binary, "put", "--server", n.address, "--tls-ca", ca, "--transport", "tcp", "tk", "-", stdin=b"over tls")
        expect(run(binary, "get", "--server", n.address, "--tls-ca", ca, "--transport", "tcp", "tk") == b"over tls",
               "get over TLS returned other bytes")
        r = subprocess.run([binary, "get", "--server", n.address, "--transport", "tcp", "tk"], capture_output=True,
                           timeout=30)
        expect(r.returncode != 0 and b"TLS" in r.stderr, f"a plaintext get of a TLS node: {r.returncode} {r.stderr!r}")
    finally:
        n.stop()


def check_plots(binary, work):
    data = os.path.join(work, "access.json")
    run(binary, "stats", "demo", "--num-accesses", "500", "--output", data)
    run(binary, "stats", "visualize", "--input", data, "--output", os.path.join(work, "plot.png"))
    with open(os.path.join(work, "plot.png"), "rb") as f:
        expect(f.read(8) == b"\x89PNG\r\n\x1a\n", "stats visualize wrote no PNG")


CHECKS = [check_version, check_serve, check_redis, check_tls, check_plots]


def startup_to_ping(binary, work):
    """Seconds from exec to the first PING answered on a fixed free port (HELLO, then PING), and idle RSS 1 s later."""
    port = free_port()
    log = open(os.path.join(work, "startup.log"), "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--port", str(port), "--admin-port", "0", "--memory", "64MiB"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=node_env(), cwd=work)
    try:
        while True:
            try:
                with kvasir.KvStore(f"127.0.0.1:{port}", transport="tcp", connect_timeout=1, request_timeout=5) as s:
                    s.ping(b"x")
                break
            except (OSError, kvasir.KvasirError):
                if proc.poll() is not None or time.monotonic() - t0 > 30:
                    raise CheckFailed("the node did not answer PING within 30 s")
                time.sleep(0.002)
        seconds = time.monotonic() - t0
        time.sleep(1.0)
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
        return seconds, rss
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


def bench_gbps(binary, work, seconds, warmup):
    """One node of this build and its own bench verb: 64 KiB GETs over TCP for SECONDS after WARMUP; GB/s."""
    n = Node(binary, "--port", "0", "--admin-port", "off", "--memory", "256MiB", workdir=work)
    try:
        line = run(binary, "bench", "--server", n.address, "--transport", "tcp", "--op", "get", "--value-size", "64KiB",
                   "--duration", str(seconds), "--warmup", str(warmup), "--key-space", "64MiB", "--json", "--no-progress", timeout=120)
        return json.loads(line.decode().strip().splitlines()[-1])["gbps"]
    finally:
        n.stop()


def compare(a, b, rounds, work, bench_seconds, bench_warmup):
    results = {a: {"start": [], "rss": [], "gbps": []}, b: {"start": [], "rss": [], "gbps": []}}
    for _ in range(rounds):
        for binary in (a, b):
            s, rss = startup_to_ping(binary, work)
            results[binary]["start"].append(s)
            results[binary]["rss"].append(rss)
    for _ in range(max(1, rounds // 2)):
        for binary in (a, b):
            results[binary]["gbps"].append(bench_gbps(binary, work, bench_seconds, bench_warmup))
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in results.items()}
    for binary in (a, b):
        m = med[binary]
        print(f"{binary}: {os.path.getsize(binary) / 1e6:.1f} MB, start to first PING {m['start'] * 1000:.0f} ms, "
              f"idle RSS {m['rss'] / 1024:.1f} MiB, bench get 64KiB tcp {bench_seconds} s {m['gbps']:.2f} GB/s "
              f"(medians of {rounds}, {rounds}, {len(results[binary]['gbps'])})")
    print(f"ratios {os.path.basename(os.path.dirname(a)) or a}/{os.path.basename(os.path.dirname(b)) or b}: "
          f"start {med[a]['start'] / med[b]['start']:.2f}, RSS {med[a]['rss'] / med[b]['rss']:.2f}, "
          f"GB/s {med[a]['gbps'] / med[b]['gbps']:.2f}")
    print("raw: " + json.dumps({k: v for k, v in results.items()}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("binary")
    p.add_argument("--compare", metavar="BIN2", help="also time BIN against BIN2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bench-seconds", type=int, default=3, help="measured seconds of each bench run")
    p.add_argument("--bench-warmup", type=int, default=1, help="unmeasured seconds before each bench run")
    p.add_argument("--skip-checks", action="store_true", help="only the comparison")
    args = p.parse_args()
    binary = os.path.abspath(args.binary)
    for tool in ("redis-server", "redis-cli", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"publish_check: {tool} not found (apt-get install redis-server openssl)")
    work = tempfile.mkdtemp(prefix="kvasir-publish-check-")
    try:
        if not args.skip_checks:
            for check in CHECKS:
                t0 = time.monotonic()
                try:
                    note = check(binary, work)
                except (CheckFailed, subprocess.TimeoutExpired, OSError, ValueError, KeyError, IndexError) as e:
                    print(f"FAILED {check.__name__}: {e}")
                    return 1
                print(f"ok {check.__name__} ({time.monotonic() - t0:.1f} s){': ' + note if note else ''}")
        if args.compare:
            compare(binary, os.path.abspath(args.compare), args.rounds, work, args.bench_seconds, args.bench_warmup)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
