"""Versioned replicas and read repair (docs/cluster.md § Versions) against real `kvasir serve` nodes: a replica that
missed an overwrite and came back with its old copy from its disk tier ranks first, yet readers get the newest copy
and the stale replica is repaired."""
import os
import shutil
import time
import tempfile
import threading

import kvasir
from kvasir import protocol as P
from kvasir.placement import Ring

from conftest import Node

SIZE = 3000
QUIET = ("--log-level", "warning", "--admin-port", "off")


def _value(key: str, version: int) -> bytes:
    return (f"{key}@{version}|".encode() * (SIZE // 8 + 1))[:SIZE]


def _store(a, b, versions: bool):
    return kvasir.KvStore([a.address, b.address], replicas=2, replica_versions=versions, connect_timeout=2.0, request_timeout=10.0)


def _put_all(store, keys, version):
    codes = store._put([k.encode() for k in keys], [[memoryview(_value(k, version))] for k in keys])
    assert codes == [0] * len(keys), f"put of version {version}: {codes}"


def test_a_replica_that_missed_an_overwrite_never_serves_the_old_value_and_is_repaired(cli):
    disk = tempfile.mkdtemp(prefix="kvasir-py-stale-")
    disk_args = ("--memory", "64MiB", "--disk", disk, "--disk-capacity", "64MiB", *QUIET)
    a = Node(*disk_args)
    b = Node("--memory", "64MiB", *QUIET)
    try:
        ring = Ring([a.address, b.address])
        keys = [k for k in (f"py-mutable/{i}" for i in range(400)) if ring.place(k.encode(), 1)[0] == a.address][:30]
        assert len(keys) == 30
        with _store(a, b, versions=True) as writer:
            _put_all(writer, keys, 1)
            a.proc.kill()   # SIGKILL: a keeps version 1 on its disk
            a.stop()
            _put_all(writer, keys, 2)   # acknowledged by b alone
        a = Node(*disk_args, port=a.port)

        with _store(a, b, versions=False) as rank_order:   # today's reader: first hit in rank order
            stale = [k for k in keys if rank_order.get(k) == _value(k, 1)]
        assert stale, "no key read stale without versions: the scenario did not reproduce"

        with _store(a, b, versions=True) as reader:
            for k in keys:
                got = reader.get(k)
                assert got == _value(k, 2), f"{k}: " + ("STALE (version 1)" if got == _value(k, 1) else "wrong bytes or missing")
            assert reader._router.read_repairs > 0

        with kvasir.KvStore(a.address, transport="tcp") as direct:   # read repair wrote version 2 back to a
            missing = [k for k in keys if direct.get(k) != _value(k, 2)]
        assert not missing, f"{len(missing)} keys still old or missing on a: {missing[:5]}"
    finally:
        a.stop()
        b.stop()
        shutil.rmtree(disk, ignore_errors=True)


def test_the_node_grants_versions_and_returns_the_version_a_put_carried(cli):
    n = Node("--memory", "64MiB", *QUIET)
    try:
        with kvasir.KvStore(n.address, transport="tcp") as store:
            assert store._conn.versions
            version = (1_700_000_000_000 << 16) | 7
            assert store._put([b"v/1"], [[memoryview(b"abc")]], versions=[version]) == [0]
            got = [0]
            codes, values = store._get([b"v/1"], [None], got)
            assert codes == [3] and bytes(values[0]) == b"abc" and got == [version]
            # An older version is superseded (acknowledged, not stored); a newer one replaces it.
            assert store._put([b"v/1"], [[memoryview(b"old")]], versions=[version - 1]) == [0]
            assert store.get("v/1") == b"abc"
            assert store._put([b"v/1"], [[memoryview(b"new")]], versions=[version + 1]) == [0]
            assert store.get("v/1") == b"new"
            # Without a version the node's clock (a hybrid logical clock too) orders the write after what it saw.
            assert store.put("v/1", b"own") == 0
            codes, _ = store._get([b"v/1"], [None], got)
            assert store.get("v/1") == b"own" and got[0] > version + 1
            assert P.FEATURE_VERSIONS == 0x4 and P.Flag.VERSION == 0x10
    finally:
        n.stop()


def test_a_key_written_with_the_clusters_replicas_is_read_after_a_node_dies_by_a_client_that_did_not_say_r(cli):
    """Cluster settings (docs/cluster.md § Cluster settings): `kvasir cluster set replicas=2`; neither the writer
    nor the reader says replicas, and a node's death loses nothing."""
    import subprocess
    import time
    from test_cluster import Redis, _live
    from conftest import REPO, wait_until
    redis = Redis()
    name = f"pyset{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
    nodes = [Node("--memory", "64MiB", "--redis", redis.url, "--cluster", name, "--heartbeat-ttl", "1", *QUIET) for _ in range(3)]
    try:
        wait_until(lambda: len(_live(redis.url, name)) == 3, "3 live nodes")
        r = subprocess.run([*cli, "cluster", "set", "replicas=2", "--redis", redis.url, "--cluster", name],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout == "replicas=2\n", r.stderr
        keys = [f"py-settings/{i}" for i in range(60)]
        with kvasir.KvStore(redis_url=redis.url, cluster=name, membership_poll=0.1, connect_timeout=2.0, request_timeout=10.0) as writer:
            assert writer.replicas == 2 and len(writer.placement(keys[0])) == 2
            assert writer._put([k.encode() for k in keys], [[memoryview(_value(k, 1))] for k in keys]) == [0] * len(keys)
        nodes[0].proc.kill()   # SIGKILL: each key it held is on one other node too
        with kvasir.KvStore(redis_url=redis.url, cluster=name, membership_poll=0.1, connect_timeout=2.0, request_timeout=10.0) as reader:
            assert reader.replicas == 2
            for k in keys:
                assert reader.get(k) == _value(k, 1), f"{k} after {nodes[0].address} died"
        with kvasir.KvStore(redis_url=redis.url, cluster=name, replicas=1, membership_poll=0.1) as overridden:
            assert overridden.replicas == 1   # a client's own setting wins
    finally:
        for n in nodes:
            n.stop()
        redis.stop()


def _direct(node, key: str):
    with kvasir.KvStore(node.address, transport="tcp", connect_timeout=2.0, request_timeout=10.0) as direct:
        return direct.get(key)


def test_a_replica_restarted_at_its_address_gets_the_next_put_and_a_read_without_the_other_replica_is_not_stale(cli):
    """bench/chaos.py --seed 8's stale reads: the client's connection to a node that restarted is dead; the first put
    after the restart failed on it, the node was marked down, the put was acknowledged by the other replica alone, and
    a read while that one was down (or in backoff) returned the restarted node's older copy."""
    disk = tempfile.mkdtemp(prefix="kvasir-py-restart-")
    disk_args = ("--memory", "64MiB", "--disk", disk, "--disk-capacity", "64MiB", *QUIET)
    a = Node(*disk_args)
    b = Node("--memory", "64MiB", *QUIET)
    key = "py-restart/1"
    try:
        with _store(a, b, versions=True) as store:
            _put_all(store, [key], 1)   # both replicas connected and holding version 1
            a.proc.kill()   # SIGKILL, then back at the same address with version 1 from its disk; no request between
            a.stop()
            a = Node(*disk_args, port=a.port)
            _put_all(store, [key], 2)
            assert _direct(a, key) == _value(key, 2), "the restarted replica missed the first put after its restart"
            b.stop()
            got = store.get(key)
            assert got == _value(key, 2), "STALE (version 1)" if got == _value(key, 1) else "wrong bytes or missing"
    finally:
        a.stop()
        b.stop()
        shutil.rmtree(disk, ignore_errors=True)


def test_a_replica_that_came_back_is_used_again_while_requests_keep_coming(cli):
    """A request that skipped a node in its backoff marked it down again, so under steady traffic a node that had
    failed once was never asked again, even long after it was back (its puts acknowledged by the other replica alone)."""
    a = Node("--memory", "64MiB", *QUIET)
    b = Node("--memory", "64MiB", *QUIET)
    key = "py-backoff/1"
    back, restart = {}, None
    try:
        with _store(a, b, versions=True) as store:
            _put_all(store, [key], 1)
            a.stop()
            # Restarted at its address while puts keep coming, one every few milliseconds (steadier than any backoff).
            restart = threading.Thread(target=lambda: back.setdefault("a", Node("--memory", "64MiB", *QUIET, port=a.port)))
            restart.start()
            version = [2]

            def puts():
                for _ in range(20):
                    _put_all(store, [key], version[0])
                version[0] += 1
            while restart.is_alive():
                puts()
            assert "a" in back, "the node did not start again"
            deadline = time.monotonic() + 15   # once it serves, its backoff (at most 4 s) is all that may keep it out
            while _direct(back["a"], key) is None:
                assert time.monotonic() < deadline, "a node back at its address got no put in 15 s of steady puts after it served again"
                puts()
    finally:
        if restart is not None:
            restart.join(timeout=60)   # the node's start is bounded (30 s) in Node
        a.stop()
        b.stop()
        if "a" in back:
            back["a"].stop()


def test_a_read_repair_copy_keeps_the_winners_time_to_live(cli):
    """GET carries no TTL: read repair wrote its copies without one, so the copy outlived the value; the repair now
    asks the winner's node (INFO) and writes the copy with what is left of its TTL."""
    a = Node("--memory", "64MiB", *QUIET)
    b = Node("--memory", "64MiB", *QUIET)
    try:
        with _store(a, b, versions=True) as store:
            assert store.put("ttl/short", _value("ttl/short", 1), ttl=60) == 0
            assert store.put("ttl/never", _value("ttl/never", 1)) == 0
            with kvasir.KvStore(a.address, transport="tcp") as direct:   # each key now lives on b alone
                assert direct.batch_remove(["ttl/short", "ttl/never"]) == [0, 0]
            assert store.get("ttl/short") == _value("ttl/short", 1)
            assert store.get("ttl/never") == _value("ttl/never", 1)
            assert store._router.read_repairs == 2
            with kvasir.KvStore(a.address, transport="tcp") as direct:
                short, never = direct.info(["ttl/short", "ttl/never"])
            assert short.status == 0 and 0 < short.ttl_ms <= 60_000, f"the repaired copy's TTL is {short.ttl_ms} ms, the value's at most 60 s"
            assert never.status == 0 and never.ttl_ms == 0, f"a value without a TTL was repaired with one ({never.ttl_ms} ms)"
    finally:
        a.stop()
        b.stop()
