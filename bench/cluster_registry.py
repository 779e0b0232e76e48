#!/usr/bin/python3
"""Redis cost of Kvasir's cluster registry: the three scripts nodes and clients run, measured with
redis-benchmark against a throwaway redis-server holding a 100-node membership.

    /usr/bin/python3 bench/cluster_registry.py [--nodes 100]

Prints requests/s for: heartbeat (what every node runs every TTL/4), poll (what every client runs
every membership_poll) and read (the full membership, what a client reads after a change).
"""
import argparse
import json
import os
import csv
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from kvasir import cluster as C  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    args = ap.parse_args()
    import redis
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--loglevel", "warning"],
                              stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = redis.Redis(port=port)
        sha = {"heartbeat": r.script_load(C.registry_script("heartbeat")),
               "poll": r.script_load(C._POLL), "read": r.script_load(C._READ)}
        keys = ["kvasir:{b}:members", "kvasir:{b}:records", "kvasir:{b}:down", "kvasir:{b}:epoch"]
        record = None
        for i in range(args.nodes):
            addr = f"10.0.{i // 250}.{i % 250}:7380"
            record = json.dumps({"id": addr, "addr": addr, "capacity": 512 << 30, "version": "0.1.0",
                                 "started_ms": int(time.time() * 1000), "kind": "node"}, separators=(",", ":"))
            r.evalsha(sha["heartbeat"], 4, *keys, addr, record, 600000, "kvasir:{b}:events")
        reply = r.evalsha(sha["read"], 3, keys[0], keys[1], keys[3])
        print(f"{args.nodes} nodes registered; a full read returns {sum(len(x) for x in reply if isinstance(x, bytes))} bytes", flush=True)
        commands = {
            "heartbeat": ["evalsha", sha["heartbeat"], "4", *keys, json.loads(record)["id"], record, "600000", "kvasir:{b}:events", "1"],
            "poll": ["evalsha", sha["poll"], "2", keys[0], keys[3]],
            "read": ["evalsha", sha["read"], "3", keys[0], keys[1], keys[3]],
        }
        for name, cmd in commands.items():
            out = subprocess.run(["redis-benchmark", "-p", str(port), "-n", "100000", "-c", "32", "-P", "8", "-q", "--csv", *cmd],
                                 capture_output=True, text=True, timeout=300).stdout
            row = next(csv.reader([out.strip().splitlines()[-1]]))
            rps = row[-7]   # the test name (the command) is not quoted safely; the 7 numbers end the row
            print(f"{name:10s} {float(rps):>10.0f} requests/s")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
