#!/usr/bin/python3
"""The .NET transfer engine across a delayed link: throughput by lane count, and iperf3 over the same link.

    sudo bench/transfer_netns.py [--kvasir CMD] [--delay-ms 1] [--lanes 1,2,4,8] [--sizes 64MiB] [--duration 3]
                                 [--line] [--socket-buffer auto|0|SIZE]

A network namespace joined to this one by a link delayed --delay-ms each way: netem on a veth pair where the kernel
has sch_netem, else (or with --line) python/tests/delay_line.py's tun pair and forwarder process, which holds every
packet that long but moves only ~0.3-2 GB/s (a Python process), so there the figures show what lanes do over a
latency, not wire speed. `kvasir transfer-bench --listen` runs inside the namespace, `--connect` outside (two
processes, as across two hosts); then `iperf3 -P N` over the same link where iperf3 is on PATH. The namespace and
the link are removed at the end. --kvasir: the command that runs the CLI (default: ./kvasir).
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python", "tests"))
from delay_line import DelayLine, VethPair   # noqa: E402


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvasir", default=os.path.join(REPO, "kvasir"))
    ap.add_argument("--delay-ms", type=float, default=1.0)
    ap.add_argument("--lanes", default="1,2,4,8")
    ap.add_argument("--sizes", default="64MiB")
    ap.add_argument("--duration", default="3")
    ap.add_argument("--line", action="store_true", help="the tun delay line even where netem exists")
    ap.add_argument("--socket-buffer", default="auto", help="transfer-bench --socket-buffer for both engines (auto: by the path)")
    a = ap.parse_args()
    kvasir = shlex.split(a.kvasir)
    ns = f"kvb-{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    link = line = target = iperf = None
    try:
        if not a.line:
            link = VethPair(ns, "kvbh0", "kvbn0", "10.231.79", a.delay_ms)
            if not link.delayed:
                print(f"# no netem here ({link.netem_error}): using the tun delay line", flush=True)
                link.close()
                link = None
        if link is None:
            line = DelayLine(ns, a.delay_ms, tag="b0", subnet="10.231.80").__enter__()
        host_ip, ns_ip = (link or line).host_ip, (link or line).ns_ip
        kind = f"netem {a.delay_ms:g} ms each way" if link else f"tun delay line {a.delay_ms:g} ms each way"
        target = subprocess.Popen(["ip", "netns", "exec", ns, *kvasir, "transfer-bench", "--listen", f"{ns_ip}:0", "--sizes", a.sizes,
                                   "--socket-buffer", a.socket_buffer],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = target.stdout.readline()
        m = re.search(r"listening on (\S+),", first)
        if not m:
            raise SystemExit(f"the target did not start: {first}")
        print(f"# link: {kind}; target {m.group(1)} (in {ns}), initiator in this namespace at {host_ip}", flush=True)
        r = subprocess.run([*kvasir, "transfer-bench", "--connect", m.group(1), "--sizes", a.sizes, "--lanes", a.lanes,
                            "--duration", a.duration, "--socket-buffer", a.socket_buffer, "--json"], capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise SystemExit(f"transfer-bench --connect failed: {r.stderr.strip()}")
        cells = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        iperf3 = {}
        if shutil.which("iperf3"):
            iperf = subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-s", "-B", ns_ip, "-p", "5231"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            for n in sorted({c["lanes"] for c in cells}):
                out = subprocess.run(["iperf3", "-c", ns_ip, "-p", "5231", "-P", str(n), "-t", a.duration, "-J"],
                                     capture_output=True, text=True, timeout=120).stdout
                try:
                    iperf3[n] = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 8 / 2**30
                except (ValueError, KeyError):
                    iperf3[n] = None
        print(f"{'size':>10} {'lanes':>5} {'GiB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'iperf3 -P N':>12} {'x iperf3':>9}")
        for c in cells:
            ip3 = iperf3.get(c["lanes"])
            print(f"{c['size']:>10} {c['lanes']:>5} {c['gib_s_wall']:>8.3f} {c['p50_ms']:>8.2f} {c['p99_ms']:>8.2f} "
                  + (f"{ip3:>12.3f} {c['gib_s_wall'] / ip3:>9.2f}" if ip3 else f"{'-':>12} {'-':>9}"))
    finally:
        for p in (target, iperf):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:   # never skip the link and namespace cleanup below
                    p.kill()
                    p.wait(timeout=10)
        if line is not None:
            line.close()
        if link is not None:
            link.close()
        sh("ip", "netns", "del", ns, check=False)


if __name__ == "__main__":
    main()
