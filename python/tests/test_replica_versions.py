"""Versioned replicas and read repair (docs/cluster.md § Versions) against real `kvasir serve` nodes: a replica that
missed an overwrite and came back with its old copy from its disk tier ranks first, yet readers get the newest copy
and the stale replica is repaired."""
import os
import shutil
import tempfile

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
