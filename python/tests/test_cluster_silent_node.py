"""A cluster node that stops answering without closing anything (a network partition, a stopped process) is skipped
after its first timeout, as a node that refuses connections is (found by bench/chaos.py --partition-every: every
request to a partitioned node's keys waited the whole request timeout, 5-10 s each, until its registration
expired)."""
import os
import signal
import time

import kvasir

from conftest import Node, wait_until
from test_cluster import Redis, _live


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_node_that_lets_a_request_time_out_is_skipped_for_its_backoff_like_one_that_refuses(cli):
    redis = Redis()
    name = f"silent{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
    # A long heartbeat TTL: the stopped node stays in the view for the whole test, as a partitioned one does until
    # its registration expires.
    nodes = [Node("--memory", "64MiB", "--redis", redis.url, "--cluster", name, "--heartbeat-ttl", "120") for _ in range(3)]
    stopped = None
    try:
        wait_until(lambda: len(_live(redis.url, name)) == 3, "3 live nodes")
        with kvasir.KvStore(redis_url=redis.url, cluster=name, replicas=2, membership_poll=0.1, connect_timeout=1.0,
                            request_timeout=1.0) as store:
            wait_until(lambda: len(store.nodes) == 3, "the client to see 3 nodes")
            by_addr = {n["addr"]: n["id"] for n in store.nodes}
            stopped = nodes[0]
            silent = by_addr[stopped.address]
            key = next(f"silent/{i}" for i in range(100) if silent in store.placement(f"silent/{i}"))
            assert store.put(key, b"before") == 0
            stopped.proc.send_signal(signal.SIGSTOP)   # its sockets stay open; nothing it receives is answered
            wait_until(lambda: _state(stopped.proc.pid) == "T", "the node's threads to stop")
            assert store.put(key, b"after") == 0       # acknowledged by the other replica, after the timeout on this one
            slot = store._router._slots[silent]
            assert slot.down_until > 0.0, "a node whose request timed out was not marked down: the next request waits again"
            assert store.get(key) == b"after"
    finally:
        if stopped is not None:
            stopped.proc.send_signal(signal.SIGCONT)
        for n in nodes:
            n.stop()
        redis.stop()
