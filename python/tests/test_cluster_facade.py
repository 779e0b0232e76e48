"""What a cluster store says about itself, against a real redis-server and real `kvasir serve` nodes: the one line a
store of a cluster with no node up gives (which cluster and Redis it looked at, which clusters have nodes there; issue 19
item 3), and ``store.transport`` / ``transport_reason`` over its members (issue 18)."""
import contextlib
import logging
import os
import subprocess

import pytest

import kvasir
from kvasir import errors as E

from conftest import Node, wait_until
from test_cluster import Redis, _live, _round_trip


def _store(url, name, **kw):
    return kvasir.KvStore(redis_url=url, cluster=name, membership_poll=0.1, connect_timeout=2.0, request_timeout=10.0, **kw)


def _member(redis, name, *extra):
    return Node("--memory", "32MiB", *extra, "--redis", redis.url, "--cluster", name, "--heartbeat-ttl", "1")


@contextlib.contextmanager
def _cluster(tag, count):
    """A redis-server and ``count`` live nodes in cluster ``py-TAG-PID``: yields (redis, name, nodes); the test may
    append nodes; every one is stopped after."""
    redis, name, nodes = Redis(), f"py-{tag}-{os.getpid()}", []
    try:
        nodes += [_member(redis, name) for _ in range(count)]
        wait_until(lambda: len(_live(redis.url, name)) == count, f"{count} live nodes")
        yield redis, name, nodes
    finally:
        for n in nodes:
            n.stop()
        redis.stop()


class _SecretRedis(Redis):
    """A redis-server that wants a password: the line must show the URL redacted."""

    password = "zero-node-secret"

    def __init__(self):
        super().__init__()
        import redis as redis_py
        r = redis_py.Redis(host="127.0.0.1", port=self.port)
        try:
            r.config_set("requirepass", self.password)
        finally:
            r.close()
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}"
        self.shown = f"redis://:***@127.0.0.1:{self.port}"


def test_a_store_of_a_cluster_with_no_node_up_names_the_cluster_the_redis_and_the_clusters_there(cli, caplog):
    redis = _SecretRedis()
    node = None
    try:
        node = _member(redis, "prod")
        wait_until(lambda: len(_live(redis.url, "prod")) == 1, "the node to register in cluster prod")
        line = f"no node is up in cluster 'nope' at {redis.shown}; clusters with nodes there: prod (pass cluster=NAME)"
        with caplog.at_level(logging.WARNING, logger="kvasir"):
            with _store(redis.url, "nope") as store:
                # per-key codes stay as they are; the line goes to the log, once per store
                assert [store.put(f"k{i}", b"abc") for i in range(3)] == [E.UNAVAILABLE] * 3
                assert store.batch_is_exist(["k0"]) == [-1]   # -1: an error (1 present, 0 absent)
                with pytest.raises(kvasir.KvasirError) as got:
                    store.get("k0")
                assert str(got.value) == f"get failed: UNAVAILABLE: {line}"
                for call, what in ((store.ping, "ping"), (store.scan, "scan"), (store.remove_all, "remove by prefix")):
                    with pytest.raises(kvasir.KvasirError) as failed:
                        call()
                    assert str(failed.value) == f"{what}: {line}"
        said = [r.getMessage() for r in caplog.records if "no node is up" in r.getMessage()]
        assert said == [f"kvasir: {line}"], said
        assert redis.password not in caplog.text
        with _store(redis.url, "prod") as right:   # the name the line suggests works
            assert right.put("k0", b"abc") == 0 and right.get("k0") == b"abc"
    finally:
        if node is not None:
            node.stop()
        redis.stop()


def test_a_cluster_stores_transport_is_that_of_its_members(cli):
    """Members on this host are reached over shared memory (issue 18): the store says "shm", not "tcp"; with a member
    whose node has no arena it says "mixed" and its reason names that member; transport="tcp" says "tcp"."""
    with _cluster("transport", 2) as (redis, name, nodes):
        keys = [f"py/transport/{i}" for i in range(40)]
        with _store(redis.url, name) as store:
            owners = _round_trip(store, keys, 4096)
            assert len(set(owners)) == 2, "every member must have been reached"
            assert (store.transport, store.transport_reason) == ("shm", None)
        with _store(redis.url, name, transport="tcp") as store:
            _round_trip(store, [k + "/tcp" for k in keys], 4096)
            assert (store.transport, store.transport_reason) == ("tcp", None)

        nodes.append(_member(redis, name, "--shm", "off"))
        wait_until(lambda: len(_live(redis.url, name)) == 3, "3 live nodes")
        with _store(redis.url, name) as store:
            owners = _round_trip(store, [k + "/mixed" for k in keys], 4096)
            assert nodes[2].address in owners, "the member without an arena must have been reached"
            assert store.transport == "mixed"
            assert store.transport_reason.startswith(f"{nodes[2].address}: "), store.transport_reason
            assert "no shared-memory arena" in store.transport_reason
            assert nodes[0].address not in store.transport_reason


def test_a_running_store_that_did_not_say_r_follows_cluster_set_and_one_that_did_keeps_its_own(cli):
    """Cluster settings (docs/cluster.md § Cluster settings) are re-read on every membership poll: `kvasir cluster set
    replicas=2` reaches a store that is already running (before, only a store opened afterwards saw it)."""
    with _cluster("follow", 3) as (redis, name, _):
        with _store(redis.url, name) as following, _store(redis.url, name, replicas=1) as own:
            assert len(following.placement("follow")) == 1

            def cluster_set(value):
                done = subprocess.run([*cli, "cluster", "set", f"replicas={value}", "--redis", redis.url, "--cluster", name],
                                      capture_output=True, text=True, timeout=60)
                assert done.returncode == 0, done.stderr

            cluster_set(2)
            wait_until(lambda: len(following.placement("follow")) == 2, "the running store to take the cluster's replicas=2")
            assert following.replicas == 2 and len(own.placement("follow")) == 1
            assert following.put("follow", b"x" * 100) == 0
            assert following.stats()["keys"] == 2   # two copies
            cluster_set("")
            wait_until(lambda: len(following.placement("follow")) == 1, "the running store to go back to 1 replica")
