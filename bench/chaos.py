#!/usr/bin/python3
"""Chaos round for a Kvasir cluster (issue 16): 3 nodes with disk tiers registered in a real redis-server, a client
writing and reading checksummed values with replicas=2, while nodes are killed with SIGKILL and restarted and Redis
itself is restarted (or, with --sentinel, its master killed and a replica promoted). It reports, and fails (exit 1) on:

* wrong bytes: a read that returned bytes belonging to no version ever written of that key;
* stale reads: a read that returned an older acknowledged version than the last acknowledged one;
* lost values: an acknowledged value missing from the cluster once every node is back;
* nodes that did not come back (serving and registered) within --recovery-limit seconds;
* nodes that did not register again within --recovery-limit seconds after the Redis restart (or, with --sentinel, the
  failover to the replica).

It prints recovery times and the nodes' peak RSS. One node is down at a time. A PUT is acknowledged when one replica
stored it (docs/cluster.md § What a replicated cluster promises), so a value written while its other replica was down
has no live copy while its one holder is down: reads then miss (counted, not a failure); once every node is back each
acknowledged value must read back. Everything it starts is stopped by pid when it ends.

    /usr/bin/python3 bench/chaos.py [--duration 60] [--kill-every 8] [--seed N] [--keys 400] [--write-once]
                                    [--soak-minutes N] [--max-live 6000] [--report-every 60] [--sentinel]
                                    [--node-log-level information] [--view-log]
                                    [--partition-every S --partition-for S] [--client-timeout 5]

--write-once writes every key once, as an inference engine does (a KV block's key is a hash of its token prefix, so
its value never changes). Without it keys are overwritten; replicas carry versions and reads take the newest
(docs/cluster.md § Versions). The loop sends no request while a node is down (it waits for the node to serve and be
registered again), so every node is up at every request: no value is acknowledged by one replica because its
partner was down, and any stale read is a client defect (docs/cluster.md § What a replicated cluster promises).
--view-log explains each stale read: every node's copy of the key, the client's backoffs and the key's per-node puts.

--soak-minutes N runs N minutes (in place of --duration) and prints, every --report-every seconds, the counts so far
and each node's RSS. With --write-once, at most --max-live acknowledged keys are kept: past that the oldest is
removed (and no longer checked), so a long run stays inside the nodes' memory and disk tiers and a miss still means a
lost value rather than an evicted one.

--partition-every S (needs root, `ip` and `tc`; bench/netns.py, bench/chaos_partition.py) runs each node in its own
network namespace joined to the root namespace by a veth pair (10.233.S.0/30 addresses that exist only on this host;
Redis listens on the root side of each link, the client stays in the root namespace) and every S seconds cuts one
node's link for --partition-for seconds (a silent drop both ways, as a real partition), while the load goes on. The cut
node can neither serve nor heartbeat: it leaves the client's view when its registration expires, and comes back after
the heal. For each partition it prints the longest operation while cut, when the node's keys were served by the other
replica, when the node left the view, and after the heal when it was registered and seen again and first answered a
request; it fails if a healed node is not asked again within --recovery-limit. A partition starts only if it heals
before the load ends. One fault at a time: no kill or Redis
restart while a partition is under way. --kill-every 0 runs partitions alone. Requests do go on while a node is
cut, so puts are acknowledged by one replica; with overwrites and kills, a kill of that replica before a read repaired
the other could then read an older version, which the promise allows for overwritten keys (counted as stale all the
same; none seen so far: docs/reliability.md § Network partitions). Where namespaces cannot be made it exits
2 with the one-line reason. Its namespaces (kvchaos-PID-I), links and processes are removed when it ends, on Ctrl-C
and on SIGTERM; namespaces left by a run that was killed (SIGKILL), and the nodes in them, are removed by the next partition run
(its redis-server is not).
"""
import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from kvasir import KvStore  # noqa: E402

import netns  # noqa: E402 - bench/netns.py, beside this script
from chaos_partition import Partitions  # noqa: E402

CLI = os.path.join(ROOT, ".build", "cli", "kvasir.dll")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def value(key: int, version: int) -> bytes:
    """The bytes of (key, version): 1..32 KiB derived from a hash, so any read can be attributed or refuted."""
    seed = hashlib.sha256(f"{key}/{version}".encode()).digest()
    n = 1 + int.from_bytes(seed[:2], "little") % (32 * 1024)
    out = bytearray()
    block = seed
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def wait_for(cond, what, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def live_members(port: int) -> int:
    """Nodes of cluster "chaos" registered and unexpired in the Redis on ``port`` (by Redis's clock); -1 if it cannot say."""
    import redis  # noqa: PLC0415 - Debian's python3-redis, as the client's cluster mode
    try:
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        try:
            sec, usec = r.time()
            return r.zcount("kvasir:{chaos}:members", sec * 1000 + usec // 1000, "+inf")
        finally:
            r.close()
    except (redis.RedisError, OSError):
        return -1


class Cluster:
    """3 nodes registered in a redis-server, or (``sentinel``) in a master with a replica behind one sentinel."""

    def __init__(self, workdir: str, nodes: int, log_level: str = "warning", sentinel: bool = False, links=None):
        self.workdir = workdir
        self.links = links              # partition mode: bench/netns.py's Links, a namespace per node
        self.hosts = list(links.addrs) if links else ["127.0.0.1"] * nodes
        self.log_level = log_level
        self.redis_port = free_port()   # the master's port (it moves on a failover)
        self.redis = None               # the master's process
        self.standby = None             # sentinel mode: the replica's process and port
        self.standby_port = free_port()
        self.sentinel = None
        self.sentinel_port = free_port() if sentinel else None
        self.ports = [free_port() for _ in range(nodes)]
        self.procs = [None] * nodes
        self.logs = [os.path.join(workdir, f"node{i}.log") for i in range(nodes)]
        self.peak_rss = [0.0] * nodes
        try:   # a start that fails half way stops what it started
            self._start(nodes, sentinel)
        except BaseException:
            self.stop()
            raise

    def _start(self, nodes: int, sentinel: bool):
        self.start_redis()
        if sentinel:
            self.standby = self._redis_server(self.standby_port, "--replicaof", "127.0.0.1", str(self.redis_port))
            conf = os.path.join(self.workdir, "sentinel.conf")
            with open(conf, "w") as f:   # quorum 1, the master down after 1 s of silence
                f.write(f"sentinel monitor chaos 127.0.0.1 {self.redis_port} 1\n"
                        "sentinel down-after-milliseconds chaos 1000\nsentinel failover-timeout chaos 5000\n")
            self.sentinel = subprocess.Popen(["redis-server", conf, "--sentinel", "--port", str(self.sentinel_port), "--bind", "127.0.0.1"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: redis_ping(self.sentinel_port), "redis sentinel to answer", 10)
            wait_for(lambda: self.master_port() == self.redis_port, "the sentinel to name the master", 10)
        for i in range(nodes):
            self.start_node(i)

    @property
    def redis_url(self):
        if self.sentinel is not None:
            return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/chaos"
        return f"redis://127.0.0.1:{self.redis_port}"

    def _redis_server(self, port: int, *extra):
        # Partition mode: Redis also listens on the root side of each node's link (private addresses that exist only
        # on this host), and protected mode (loopback clients only, without a password) is off to admit the nodes.
        binds = ["127.0.0.1", *(self.links.gateways if self.links else [])]
        if self.links:
            binds += ["--protected-mode", "no"]
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", *binds, "--save", "", "--appendonly", "no",
                                 "--dir", self.workdir, *extra],   # a replica's full sync writes its snapshot there
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: redis_ping(port), f"redis-server on port {port} to answer", 10)
        except BaseException:
            proc.kill()
            proc.wait(5)
            raise
        return proc

    def start_redis(self):
        self.redis = self._redis_server(self.redis_port)

    def master_port(self) -> int:
        """The port the sentinel names as master now (0 when it cannot say)."""
        import redis  # noqa: PLC0415
        try:
            r = redis.Redis(host="127.0.0.1", port=self.sentinel_port, socket_timeout=1, socket_connect_timeout=1)
            try:
                addr = r.sentinel_get_master_addr_by_name("chaos")
                return int(addr[1]) if addr else 0
            finally:
                r.close()
        except (redis.RedisError, OSError, ValueError):
            return 0

    def fail_over(self) -> int:
        """Kills the master with SIGKILL; once the sentinel has promoted the replica, starts the old master again as a
        replica of the new one (so a later failover has somewhere to go). Returns the new master's port."""
        old_port, old = self.redis_port, self.redis
        old.kill()
        old.wait(5)
        wait_for(lambda: self.master_port() not in (0, old_port), "the sentinel to promote the replica", 30)
        self.redis_port, self.redis = self.standby_port, self.standby
        self.standby_port = old_port
        self.standby = self._redis_server(old_port, "--replicaof", "127.0.0.1", str(self.redis_port))
        return self.redis_port

    def start_node(self, i: int):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVASIR_")}
        disk = os.path.join(self.workdir, f"disk{i}")
        os.makedirs(disk, exist_ok=True)
        log = open(self.logs[i], "a")
        # Partition mode: the node runs in its namespace, listens on its link's address and reaches Redis over the link.
        where = self.links.exec_prefix(i) if self.links else []
        redis_url = f"redis://{self.links.gateways[i]}:{self.redis_port}" if self.links else self.redis_url
        self.procs[i] = subprocess.Popen(
            [*where, "dotnet", CLI, "serve", "--host", self.hosts[i], "--port", str(self.ports[i]), "--memory", "64MiB", "--max-value", "1MiB",
             "--disk", disk, "--disk-capacity", "256MiB", "--redis", redis_url, "--cluster", "chaos",
             "--node-id", f"chaos-{i}", "--admin-port", "off", "--shm", "off", "--log-level", self.log_level],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def serving(self, i: int) -> bool:
        try:
            with socket.create_connection((self.hosts[i], self.ports[i]), timeout=0.5):
                return True
        except OSError:
            return False

    def sample_rss(self):
        for i, p in enumerate(self.procs):
            if p and p.poll() is None:
                self.peak_rss[i] = max(self.peak_rss[i], rss_mib(p.pid))

    def kill_node(self, i: int):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for r in (self.redis, self.standby, self.sentinel):
            if r and r.poll() is None:
                r.kill()
                r.wait(5)


def interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--soak-minutes", type=float, default=None, help="run this long instead of --duration, reporting as it goes")
    ap.add_argument("--report-every", type=float, default=60, help="seconds between progress lines (RSS over time)")
    ap.add_argument("--max-live", type=int, default=6000, help="write-once: acknowledged keys kept; older ones are removed")
    ap.add_argument("--kill-every", type=float, default=8)
    ap.add_argument("--keys", type=int, default=400)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--recovery-limit", type=float, default=30)
    ap.add_argument("--write-once", action="store_true", help="never overwrite a key (the KV-cache model)")
    ap.add_argument("--sentinel", action="store_true",
                    help="Redis as a master, a replica and a sentinel; half way the master is killed (a failover) instead of restarted")
    ap.add_argument("--node-log-level", default="warning", help="the nodes' --log-level (information shows registration)")
    ap.add_argument("--view-log", action="store_true", help="print the client's membership view whenever it changes")
    ap.add_argument("--partition-every", type=float, default=0,
                    help="seconds between network partitions of one node (each node in its own network namespace; needs root); 0: none")
    ap.add_argument("--partition-for", type=float, default=10, help="seconds each partition lasts")
    ap.add_argument("--client-timeout", type=float, default=5.0, help="the client's connect and request timeouts (seconds)")
    args = ap.parse_args()
    if args.kill_every < 0 or args.partition_every < 0 or args.partition_for <= 0 or args.client_timeout <= 0:
        ap.error("--kill-every and --partition-every must be >= 0 (0: none); --partition-for and --client-timeout > 0")
    if args.soak_minutes is not None:
        args.duration = args.soak_minutes * 60
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    if not os.path.exists(CLI):
        subprocess.run([os.path.join(ROOT, "kvasir"), "--help"], check=True, stdout=subprocess.DEVNULL)
    links = None
    if args.partition_every:
        if args.sentinel:
            print("chaos: --partition-every cannot go with --sentinel: the sentinel names masters at 127.0.0.1, which a node "
                  "in its own network namespace cannot reach", flush=True)
            return 2
        why = netns.unavailable()
        if why:
            print(f"chaos: partition mode unavailable: {why}", flush=True)
            return 2
    workdir = tempfile.mkdtemp(prefix="kvasir-chaos-")
    print(f"chaos: seed {seed}, {args.duration:.0f} s, {f'a kill every {args.kill_every:.0f} s' if args.kill_every else 'no kills'}"
          f"{f', a {args.partition_for:.0f} s partition every {args.partition_every:.0f} s' if args.partition_every else ''}, "
          f"workdir {workdir}", flush=True)
    if args.sentinel and shutil.which("redis-server") is None:
        print("chaos: --sentinel skipped: no redis-server on PATH", flush=True)
        args.sentinel = False
    # Ctrl-C and SIGTERM both unwind through the finally below, which stops every process and removes every namespace.
    # SIGINT is set here too: a process started in the background of a script inherits it ignored (Python then keeps
    # it so), and Ctrl-C or a test's SIGINT would otherwise leave the round running to its end.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    cluster = store = partitions = None
    problems, recoveries, redis_recovery = [], [], None
    acked, written, acked_keys, acked_at = {}, {}, [], {}   # key -> last acknowledged version; key -> highest version ever sent
    counts = {"puts": 0, "acked": 0, "reads": 0, "hits": 0, "misses": 0, "errors": 0, "wrong": 0, "stale": 0}
    try:
        if args.partition_every:
            links = netns.Links(3)
        cluster = Cluster(workdir, 3, args.node_log_level, args.sentinel, links)
        for i in range(3):
            wait_for(lambda i=i: cluster.serving(i), f"node {i} to serve", 60)
        store = KvStore(redis_url=cluster.redis_url, cluster="chaos", replicas=2, connect_timeout=args.client_timeout,
                        request_timeout=args.client_timeout)
        wait_for(lambda: len(store.nodes) == 3, "the client to see 3 nodes", 30)
        history = {}   # --view-log: key -> [(t, node, what)] of every per-node put and skipped/failed call
        if args.view_log:
            router = store._router
            port_node = {f"{h}:{p}": f"chaos-{i}" for i, (h, p) in enumerate(zip(cluster.hosts, cluster.ports))}
            opener = router._open_store

            def open_logged(addr, tls=False):
                s = opener(addr, tls)
                put = s._put

                def logged_put(keys, values, *a, **kw):
                    codes = put(keys, values, *a, **kw)
                    t = time.monotonic() - start
                    for key, c in zip(keys, codes):
                        history.setdefault(key, []).append((round(t, 2), port_node.get(addr, addr), f"put {c} v{(kw.get('versions') or [0])[0]}"))
                    return codes
                s._put = logged_put
                return s
            router._open_store = open_logged
            run = router._run

            def logged_run(slot, count, call, force=False):
                skipped = not force and time.monotonic() < slot.down_until
                codes = run(slot, count, call, force)
                if skipped or (count and all(c == -18 for c in codes)):
                    history.setdefault(b"*", []).append((round(time.monotonic() - start, 2), slot.id, "skipped" if skipped else "failed"))
                return codes
            router._run = logged_run

        probes = {}

        def probe(i, k):
            if i not in probes:
                probes[i] = KvStore(f"{cluster.hosts[i]}:{cluster.ports[i]}", request_timeout=5.0)
            return probes[i].is_exist(f"chaos/{k}") == 1

        def explain(k):
            """Where each node stands on key k now: the version it holds (by its bytes) and its stamp, and the client's backoff."""
            now = time.monotonic()
            out = [f"placed on {store.placement(f'chaos/{k}'.encode(), 2)}"]
            for i in range(3):
                try:
                    if i not in probes:
                        probes[i] = KvStore(f"{cluster.hosts[i]}:{cluster.ports[i]}", request_timeout=2.0)
                    stamps = [0]
                    codes, vals = probes[i]._get([f"chaos/{k}".encode()], [None], stamps)
                    got = vals[0]
                    which = next((v for v in range(written.get(k, 0), 0, -1) if got is not None and bytes(got) == value(k, v)), None)
                    out.append(f"chaos-{i}: {'miss' if got is None else f'v{which} stamp {stamps[0]}'}")
                except Exception as ex:  # noqa: BLE001 - a node down
                    probes.pop(i, None)
                    out.append(f"chaos-{i}: {type(ex).__name__}")
            for sl in store._router._view()[1]:
                out.append(f"slot {sl.id} down for {max(0.0, sl.down_until - now):.2f} s (backoff {sl.backoff})")
            return "; ".join(out)

        def check_read(k, got):
            counts["reads"] += 1
            if got is None:
                counts["misses"] += 1
                return
            counts["hits"] += 1
            if got == value(k, acked.get(k, 0)):
                return
            for v in range(written.get(k, 0), 0, -1):
                if got == value(k, v):
                    if v < acked.get(k, 0):
                        counts["stale"] += 1
                        if counts["stale"] <= 3:
                            problems.append(f"stale read at t={time.monotonic() - start:.2f} s: key {k} returned version {v}, "
                                            f"last acknowledged {acked[k]} (at t={acked_at.get(k, 0):.2f} s)")
                        if args.view_log and counts["stale"] <= 10:
                            print(f"chaos: stale key {k} v{v} (acked v{acked[k]} at t={acked_at.get(k, 0):.2f} s): {explain(k)}", flush=True)
                            print(f"chaos:   puts of key {k}: {history.get(f'chaos/{k}'.encode(), [])[-30:]}", flush=True)
                            print(f"chaos:   skipped/failed calls: {history.get(b'*', [])[-40:]}", flush=True)
                    return   # a newer, unacknowledged write that landed: allowed
            counts["wrong"] += 1
            if counts["wrong"] <= 3:
                problems.append(f"wrong bytes: key {k} returned {len(got)} bytes of no version written")

        start = time.monotonic()
        next_report = start + args.report_every
        removed = 0
        last_view = None
        next_kill = start + args.kill_every if args.kill_every else float("inf")
        if links:
            partitions = Partitions(links, store, [f"chaos-{i}" for i in range(3)], args.partition_every, args.partition_for,
                                    args.recovery_limit, rng, start, start + args.duration)
            partitions.start()
        redis_restart_at = start + args.duration / 2
        while time.monotonic() - start < args.duration:
            if args.write_once:   # a new key, or a read of one already acknowledged
                put = rng.random() < 0.4 or not acked_keys
                k = len(written) if put else rng.choice(acked_keys)
            else:
                k = rng.randrange(args.keys)
                put = rng.random() < 0.4 or k not in acked
            began, ok = time.monotonic(), False
            try:
                if put:
                    v = written.get(k, 0) + 1
                    written[k] = v
                    counts["puts"] += 1
                    if store.put(f"chaos/{k}", value(k, v)) == 0:
                        if k not in acked:
                            acked_keys.append(k)
                            if args.write_once and len(acked_keys) > args.max_live:
                                old = acked_keys.pop(0)
                                del acked[old]
                                store.remove(f"chaos/{old}")   # a replica that is down keeps its copy: never read again
                                removed += 1
                        acked[k] = v
                        acked_at[k] = time.monotonic() - start
                        counts["acked"] += 1
                        ok = True
                else:
                    got = store.get(f"chaos/{k}")
                    ok = got is not None
                    check_read(k, got)
            except Exception as ex:  # a node dying under a request: counted, never fatal
                counts["errors"] += 1
                if counts["errors"] <= 2:
                    print(f"chaos: client error (expected while a node restarts): {type(ex).__name__}: {ex}", flush=True)
            cluster.sample_rss()
            now = time.monotonic()
            if partitions:
                partitions.op(f"chaos/{k}".encode(), ok, began, now, "put" if put else "get")
            if now >= next_report:
                next_report = now + args.report_every
                rss = [rss_mib(p.pid) if p and p.poll() is None else 0.0 for p in cluster.procs]
                print(f"chaos: t={now - start:7.0f} s {counts['puts']} puts ({counts['acked']} acknowledged, {removed} removed), "
                      f"{counts['reads']} reads ({counts['misses']} misses), {counts['wrong']} wrong, {counts['stale']} stale, "
                      f"{counts['errors']} client errors, {len(recoveries)} restarts; node RSS {', '.join(f'{r:.0f}' for r in rss)} MiB",
                      flush=True)
            if args.view_log:
                view = [n["id"] for n in store.nodes]
                if view != last_view:
                    print(f"chaos: t={now - start:6.2f} s client view {view}", flush=True)
                    last_view = view
            # One fault at a time: no kill or Redis restart while a partition is under way, and no partition meanwhile.
            if now >= next_kill and (partitions is None or partitions.pause()):
                victim = rng.randrange(3)
                if args.view_log:
                    print(f"chaos: t={now - start:6.2f} s kill -9 node {victim}", flush=True)
                cluster.kill_node(victim)
                time.sleep(rng.uniform(0.2, 1.5))
                restarted = time.monotonic()
                cluster.start_node(victim)
                try:
                    wait_for(lambda: cluster.serving(victim) and live_members(cluster.redis_port) == 3 and len(store.nodes) == 3,
                             f"node {victim} to serve, be registered and be seen again", args.recovery_limit)
                    recoveries.append(time.monotonic() - restarted)
                except RuntimeError as ex:
                    problems.append(str(ex))
                next_kill = time.monotonic() + args.kill_every
            if redis_restart_at and now >= redis_restart_at and (partitions is None or partitions.pause()):
                redis_restart_at = None
                if args.view_log:
                    print(f"chaos: t={now - start:6.2f} s {'fail over Redis' if args.sentinel else 'restart Redis'}", flush=True)
                restarted = time.monotonic()
                try:
                    if args.sentinel:
                        cluster.fail_over()
                        promoted = time.monotonic() - restarted
                    else:
                        cluster.redis.kill()
                        cluster.redis.wait(5)
                        restarted = time.monotonic()
                        cluster.start_redis()
                    # Nodes register again on their next heartbeat (in the new master); the client keeps its view meanwhile.
                    wait_for(lambda: live_members(cluster.redis_port) == 3, "3 nodes registered again in the (new) master",
                             args.recovery_limit)
                    redis_recovery = time.monotonic() - restarted
                    if args.sentinel:
                        print(f"chaos: sentinel failover: replica promoted after {promoted:.2f} s, 3 nodes registered in it "
                              f"after {redis_recovery:.2f} s", flush=True)
                except RuntimeError as ex:
                    problems.append(str(ex))
            if partitions:
                partitions.resume()

        if partitions:
            partitions.end()   # no new partition; one under way is healed now
        if partitions and partitions.busy():   # the run ended inside a partition: wait for its node
            try:
                wait_for(lambda: live_members(cluster.redis_port) == 3 and len(store.nodes) == 3,
                         "the last partitioned node to be registered and seen again", args.recovery_limit)
            except RuntimeError as ex:
                problems.append(str(ex))
        # Every node back: each acknowledged value must be readable, as its last acknowledged version.
        for i in range(3):
            if cluster.procs[i].poll() is not None:
                problems.append(f"node {i} exited on its own (log: {cluster.logs[i]})")
        lost = 0
        for k, v in sorted(acked.items()):
            got = store.get(f"chaos/{k}")
            if got is None:
                lost += 1
                if lost <= 3:
                    problems.append(f"lost: key {k} version {v} was acknowledged and is missing")
                if args.view_log and lost <= 20:
                    print(f"chaos: lost key {k} acknowledged at t={acked_at[k]:.2f} s, placed on {store.placement(f'chaos/{k}'.encode(), 2)}, "
                          f"present on {[f'chaos-{i}' for i in range(3) if probe(i, k)]}, get per node "
                          f"{[None if probes[i].get(f'chaos/{k}') is None else 'hit' for i in range(3)]}, slots "
                          f"{[(sl.id, sl.addr) for sl in store._router._view()[1]]}, ports {cluster.ports}", flush=True)
            else:
                check_read(k, got)
        if partitions:
            try:   # the final reads may have been the healed node's first requests: the thread notes them within 50 ms
                wait_for(lambda: not partitions.busy(), "the last partitioned node's return to be timed", 5)
            except RuntimeError:
                pass
            partitions.stop()
            if partitions.busy():   # not a failure: the load that would have asked it was over (the final reads skip
                # a node in its backoff when the other replica has the key)
                print(f"chaos: the last partition (node {partitions.active['node']}) was cut short by the end of the load: "
                      "healed, its return not timed", flush=True)
            problems.extend(partitions.problems)
            print(partitions.summary(), flush=True)
        print(f"chaos: {counts['puts']} puts ({counts['acked']} acknowledged), {counts['reads']} reads ({counts['hits']} hits, "
              f"{counts['misses']} misses), {counts['errors']} client errors; {len(recoveries)} kill -9 + restarts, recovery "
              f"median {sorted(recoveries)[len(recoveries) // 2] if recoveries else 0:.2f} s, max {max(recoveries, default=0):.2f} s; "
              f"{'Redis failover' if args.sentinel else 'Redis restart'}: nodes registered again after {redis_recovery if redis_recovery is not None else float('nan'):.2f} s; "
              f"peak node RSS {', '.join(f'{r:.0f}' for r in cluster.peak_rss)} MiB", flush=True)
        print(f"chaos: {counts['wrong']} wrong reads, {counts['stale']} stale reads, {lost} lost of {len(acked)} acknowledged keys"
              f"{f' ({removed} older ones removed)' if removed else ''}", flush=True)
    except KeyboardInterrupt:
        problems = None   # interrupted: nothing to keep the scratch dir for
        raise
    finally:
        if partitions is not None:
            partitions.stop()
        if store is not None:
            store.close()
        if cluster is not None:
            cluster.stop()
        if links is not None:
            left = links.close()
            if left:
                print(f"chaos: could not remove network namespaces {left} (remove with: ip netns del NAME)", flush=True)
        if problems is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        for p in problems:
            print(f"chaos: FAILED: {p}", flush=True)
        print(f"chaos: reproduce with --seed {seed}; node logs in {workdir}", flush=True)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"chaos: ok (seed {seed})", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as ex:   # Ctrl-C or SIGTERM: main's finally has stopped and removed everything
        print(f"chaos: interrupted ({ex or 'Ctrl-C'}); every process it started is stopped, every namespace and its scratch dir removed", flush=True)
        sys.exit(130)
