"""Cluster mode of the Python client against a real redis-server and real `kvasir serve` nodes."""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest

import kvasir
from kvasir import errors as E
from kvasir.placement import Ring, hash64, mix64

from conftest import CLI_DLL, REPO, Node, wait_until

VECTORS = os.path.join(REPO, "tests", "vectors", "rendezvous.json")


def test_placement_matches_the_shared_vectors():
    with open(VECTORS, encoding="utf-8") as f:
        v = json.load(f)
    for c in v["hashes"]:
        assert hash64(bytes.fromhex(c["data"])) == int(c["hash"])
    for c in v["mix64"]:
        assert mix64(int(c["in"])) == int(c["out"])
    assert len(v["placements"]) >= 100
    for c in v["placements"]:
        ring = Ring(c["nodes"])
        for r in range(1, len(c["nodes"]) + 1):
            assert ring.place(bytes.fromhex(c["key"]), r) == c["ranking"][:r]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A real redis-server on a free loopback port (./test.sh installs it), killed by pid; :meth:`restart` starts it
    again, empty, on the same port."""

    def __init__(self):
        self.port = _free_port()
        self.restart()
        self.url = f"redis://127.0.0.1:{self.port}"

    def restart(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture()
def cluster(cli):
    redis = Redis()
    name = f"py{os.getpid()}{int(time.monotonic() * 1000) % 100000}"
    nodes = [Node("--memory", "64MiB", "--redis", redis.url, "--cluster", name, "--heartbeat-ttl", "1") for _ in range(3)]
    try:
        wait_until(lambda: len(_live(redis.url, name)) == 3, "3 live nodes")
        yield redis, name, nodes
    finally:
        for n in nodes:
            n.stop()
        redis.stop()


def _live(url, name):
    import redis as redis_py
    r = redis_py.Redis.from_url(url)
    try:
        return [m.decode() for m in r.zrangebyscore(f"kvasir:{{{name}}}:members", int(time.time() * 1000) - 100, "+inf")]
    finally:
        r.close()


def _value(key: str, size: int) -> np.ndarray:
    seed = int.from_bytes(key.encode()[-4:].rjust(4, b"\0"), "little") ^ len(key)
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _store(redis, name, **kw):
    return kvasir.KvStore(redis_url=redis.url, cluster=name, membership_poll=0.1, connect_timeout=2.0, request_timeout=10.0, **kw)


def test_keys_spread_over_the_nodes_and_read_back_exact(cluster):
    redis, name, nodes = cluster
    keys = [f"py/spread/{i}" for i in range(900)]
    buf = np.concatenate([_value(k, 256) for k in keys])
    with _store(redis, name) as store:
        assert store.is_cluster and len(store.nodes) == 3
        store.register_buffer(buf.ctypes.data, buf.nbytes)
        ptrs = [buf.ctypes.data + i * 256 for i in range(len(keys))]
        assert store.batch_put_from(keys, ptrs, [256] * len(keys)) == [0] * len(keys)
        out = np.zeros_like(buf)
        store.register_buffer(out.ctypes.data, out.nbytes)
        assert store.batch_get_into(keys, [out.ctypes.data + i * 256 for i in range(len(keys))], [256] * len(keys)) == [256] * len(keys)
        assert np.array_equal(out, buf)
        owners = [store.placement(k)[0] for k in keys]
        # Each node holds exactly what placement says; 900 keys over 3 nodes: sd 14 keys, ±75 is > 5 sd.
        for node, stats, error in store.node_stats():
            assert error is None
            assert stats["keys"] == owners.count(node["id"])
            assert 300 - 75 <= stats["keys"] <= 300 + 75
        assert store.stats()["keys"] == len(keys)


def test_python_and_dotnet_clients_place_a_key_on_the_same_node(cluster, cli):
    redis, name, _ = cluster
    with _store(redis, name) as store:
        for i in range(5):
            key = f"cross/{i}"
            path = os.path.join(REPO, ".build", f"cross-{os.getpid()}-{i}")
            with open(path, "wb") as f:
                f.write(b"x" * 10)
            try:
                r = subprocess.run([*cli, "put", "--redis", redis.url, "--cluster", name, "--replicas", "2", key, path],
                                   capture_output=True, text=True, timeout=60)
            finally:
                os.unlink(path)
            assert r.returncode == 0, r.stderr
            dotnet_nodes = r.stderr.strip().rsplit("stored on ", 1)[1].split(", ")
            assert dotnet_nodes == store.placement(key, 2)


def test_two_replicas_survive_a_killed_node_without_a_miss(cluster):
    redis, name, nodes = cluster
    keys = [f"py/r2/{i}" for i in range(300)]
    with _store(redis, name, replicas=2) as store:
        for k in keys:
            assert store.put(k, _value(k, 1000).tobytes()) == 0
        nodes[1].proc.kill()
        nodes[1].proc.wait(timeout=10)
        for k in keys:
            assert store.get(k) == _value(k, 1000).tobytes()
        assert store.batch_is_exist(keys) == [1] * len(keys)
        wait_until(lambda: len(store.nodes) == 2, "the store to drop the dead node")
        assert all(store.get(k) == _value(k, 1000).tobytes() for k in keys)


def test_a_value_on_one_live_replica_is_read_although_that_node_just_restarted_and_the_other_replica_misses(cli, tmp_path):
    # The write-once loss bench/chaos.py found: a PUT acknowledged by one replica alone (its partner was down) sits on
    # that node's disk; the node is killed and restarted. The client's first request to it fails on the dead
    # connection, the node is skipped for a backoff, and the other replica says "not found": the key read as a miss
    # though a live replica has it. A key whose other replicas missed must be asked of every replica that could not
    # answer, once more, before it is a miss.
    a = Node("--memory", "64MiB", "--disk", str(tmp_path / "a"), "--disk-capacity", "64MiB", "--admin-port", "off")
    b = Node("--memory", "64MiB", "--admin-port", "off")   # admin off: a restart at the old port needs no port + 1
    keys = [f"py/one-replica/{i}" for i in range(40)]
    try:
        with kvasir.KvStore([a.address, b.address], replicas=2, connect_timeout=2.0, request_timeout=10.0) as store:
            b_port = b.port
            b.proc.kill()
            b.proc.wait(timeout=10)
            b.stop()
            for k in keys:   # acknowledged by a alone
                assert store.put(k, _value(k, 3000).tobytes()) == 0
            b = Node("--memory", "64MiB", "--admin-port", "off", port=b_port)   # back, empty
            a_port = a.port
            a.proc.kill()
            a.proc.wait(timeout=10)
            a.stop()
            a = Node("--memory", "64MiB", "--disk", str(tmp_path / "a"), "--disk-capacity", "64MiB", "--admin-port", "off", port=a_port)
            missed = [k for k in keys if store.get(k) != _value(k, 3000).tobytes()]
            assert missed == []
            assert store.batch_is_exist(keys) == [1] * len(keys)
    finally:
        a.stop()
        b.stop()


def test_a_registry_that_lost_its_state_does_not_shrink_the_view_while_nodes_register_again(cluster):
    # A Redis restarted without persistence (here FLUSHALL) forgets every node until its next heartbeat; the client
    # keeps the nodes it knew meanwhile, so keys are never placed on a partial membership (found by bench/chaos.py).
    import redis as redis_py
    redis, name, nodes = cluster
    keys = [f"py/reset/{i}" for i in range(100)]
    with _store(redis, name, replicas=2) as store:
        wait_until(lambda: len(store.nodes) == 3, "the store to see 3 nodes")
        for k in keys:
            assert store.put(k, _value(k, 500).tobytes()) == 0
        r = redis_py.Redis.from_url(redis.url)
        try:
            r.flushall()
        finally:
            r.close()
        fewest, deadline = 3, time.monotonic() + 3   # several heartbeats: every node registers again meanwhile
        while time.monotonic() < deadline:
            fewest = min(fewest, len(store.nodes))
            time.sleep(0.005)
        assert fewest == 3
        wait_until(lambda: len(_live(redis.url, name)) == 3, "3 nodes registered again")
        assert all(store.get(k) == _value(k, 500).tobytes() for k in keys)


def test_one_replica_turns_a_killed_nodes_keys_into_per_key_misses(cluster):
    redis, name, nodes = cluster
    keys = [f"py/r1/{i}" for i in range(300)]
    buf = np.concatenate([_value(k, 128) for k in keys])
    with _store(redis, name) as store:
        store.register_buffer(buf.ctypes.data, buf.nbytes)
        ptrs = [buf.ctypes.data + i * 128 for i in range(len(keys))]
        assert store.batch_put_from(keys, ptrs, [128] * len(keys)) == [0] * len(keys)
        victim = nodes[2].address
        on_victim = [store.placement(k)[0] == victim for k in keys]
        assert any(on_victim)
        nodes[2].proc.kill()
        nodes[2].proc.wait(timeout=10)
        out = np.zeros_like(buf)
        store.register_buffer(out.ctypes.data, out.nbytes)
        codes = store.batch_get_into(keys, [out.ctypes.data + i * 128 for i in range(len(keys))], [128] * len(keys))
        for i, code in enumerate(codes):
            if on_victim[i]:
                assert code in (E.NOT_FOUND, E.UNAVAILABLE)
            else:
                assert code == 128 and np.array_equal(out[i * 128:(i + 1) * 128], buf[i * 128:(i + 1) * 128])


def test_replicas_per_call_override_the_stores_setting(cluster):
    redis, name, _ = cluster
    buf = np.arange(64, dtype=np.uint8)
    with _store(redis, name) as store:
        store.register_buffer(buf.ctypes.data, buf.nbytes)
        assert store.batch_put_from(["per-call/3"], [buf.ctypes.data], [64], replicas=3) == [0]
        assert store.batch_put_from(["per-call/1"], [buf.ctypes.data], [64]) == [0]
        held = {node["id"]: stats["keys"] for node, stats, _ in store.node_stats()}
    assert sorted(held.values()) == [1, 1, 2]   # per-call/3 on every node, per-call/1 on one


def test_a_remove_reaches_every_replica_and_an_absent_key_is_not_found(cluster):
    redis, name, _ = cluster
    with _store(redis, name, replicas=2) as store:
        assert store.put("py/rm/1", b"v") == 0
        holders = store.placement("py/rm/1")
        assert len(holders) == 2
        for addr in holders:
            with kvasir.KvStore(addr) as direct:
                assert direct.is_exist("py/rm/1") == 1
        assert store.remove("py/rm/1") == 0
        assert store.is_exist("py/rm/1") == 0
        for addr in holders:
            with kvasir.KvStore(addr) as direct:
                assert direct.is_exist("py/rm/1") == 0, addr
        assert store.remove("py/rm/absent") == E.NOT_FOUND


def test_a_static_server_list_routes_without_redis(cluster):
    _, _, nodes = cluster
    with kvasir.KvStore([n.address for n in nodes]) as store:
        assert store.is_cluster
        assert store.put("static-list", b"v") == 0
        assert store.get("static-list") == b"v"
        assert store.placement("static-list")[0] in [n.address for n in nodes]


def test_an_embedded_node_lends_memory_and_registers_as_embedded(cluster):
    redis, name, _ = cluster
    with _store(redis, name, capacity="32MiB", client_id="py-rank-0") as store:
        assert store.node_id == "py-rank-0"
        ids = [n["id"] for n in store.nodes]
        assert "py-rank-0" in ids and len(ids) == 4
        import redis as redis_py
        r = redis_py.Redis.from_url(redis.url)
        record = json.loads(r.hget(f"kvasir:{{{name}}}:records", "py-rank-0"))
        r.close()
        assert record["kind"] == "embedded" and record["capacity"] == 32 << 20
        local = [k for k in (f"emb/{i}" for i in range(100)) if store.placement(k)[0] == "py-rank-0"]
        assert local
        for k in local:
            assert store.put(k, k.encode()) == 0
        with _store(redis, name) as other:
            wait_until(lambda: len(other.nodes) == 4, "the other store to see the embedded node")
            assert all(other.get(k) == k.encode() for k in local)
    # Closing the store stopped its node, which left the cluster.
    wait_until(lambda: "py-rank-0" not in _live(redis.url, name), "the embedded node to leave")


def _value_bytes(nodes):
    """Per node address: value bytes the node stored ("in") and served ("out") by transport, from its /metrics
    (tcp: PUT/GET frames; shm: COMMIT/LEASE, the bytes the client copied through the arena; docs/operations.md)."""
    out = {}
    for n in nodes:
        with urllib.request.urlopen(n.admin + "/metrics", timeout=10) as reply:
            text = reply.read().decode()
        got = {(d, t): 0.0 for d in ("in", "out") for t in ("tcp", "shm")}
        for m in re.finditer(r'^kvasir_value_(received|sent)_bytes_total\{([^}]*)\} (\S+)$', text, re.M):
            transport = re.search(r'transport="(\w+)"', m.group(2)).group(1)
            key = ("in" if m.group(1) == "received" else "out", transport)
            if key in got:
                got[key] += float(m.group(3))
        out[n.address] = got
    return out


def _round_trip(store, keys, size):
    buf = np.concatenate([_value(k, size) for k in keys])
    out = np.zeros_like(buf)
    store.register_buffer(buf.ctypes.data, buf.nbytes)
    store.register_buffer(out.ctypes.data, out.nbytes)
    assert store.batch_put_from(keys, [buf.ctypes.data + i * size for i in range(len(keys))], [size] * len(keys)) == [0] * len(keys)
    assert store.batch_get_into(keys, [out.ctypes.data + i * size for i in range(len(keys))], [size] * len(keys)) == [size] * len(keys)
    assert np.array_equal(out, buf)
    return [store.placement(k)[0] for k in keys]


def _moved(nodes, store, keys, size):
    """Puts and reads back ``keys`` through ``store``; per node: (values it holds, value bytes moved by direction and transport)."""
    before = _value_bytes(nodes)
    owners = _round_trip(store, keys, size)
    after = _value_bytes(nodes)
    return {a: (owners.count(a), {k: after[a][k] - before[a][k] for k in after[a]}) for a in after}


def test_members_on_this_host_are_reached_over_shared_memory_and_over_tcp_when_asked(cluster):
    """The nodes listen on 127.0.0.1 with their arenas on this host: a cluster store's puts and gets to them go through
    the arenas (ALLOC/COMMIT, LEASE/RELEASE) and no value crosses a socket; transport="tcp" keeps them on TCP."""
    redis, name, nodes = cluster
    size, count = 64 << 10, 96   # 6 MiB over 3 nodes
    keys = [f"py/shm-members/{i}" for i in range(count)]
    with _store(redis, name) as store:
        moved = _moved(nodes, store, keys, size)
    assert len(moved) == 3
    for addr, (held, d) in moved.items():
        assert held > 0, f"no key placed on {addr}: the test would not look at it"
        assert d == {("in", "shm"): held * size, ("out", "shm"): held * size, ("in", "tcp"): 0, ("out", "tcp"): 0}, addr

    with _store(redis, name, transport="tcp") as store:
        moved = _moved(nodes, store, [k + "/tcp" for k in keys], size)
    for addr, (held, d) in moved.items():
        assert d == {("in", "shm"): 0, ("out", "shm"): 0, ("in", "tcp"): held * size, ("out", "tcp"): held * size}, addr


def test_the_nodes_the_dotnet_client_and_this_client_send_the_registry_script_files_unchanged(cluster, cli):
    """Redis caches a script by the SHA-1 of the bytes it was sent: after a SCRIPT FLUSH, a file's SHA-1 is cached again
    only when someone sent that file's exact text (tests/Kvasir.Cluster.Tests/RegistryScriptTests checks every script
    the .NET registry sends)."""
    import redis as redis_py
    redis, name, _ = cluster
    folder = os.path.join(REPO, "python", "kvasir", "registry_lua")
    sha = {}
    for n in ("heartbeat", "read", "poll"):
        with open(os.path.join(folder, n + ".lua"), "rb") as f:
            sha[n] = hashlib.sha1(f.read()).hexdigest()
    r = redis_py.Redis.from_url(redis.url)
    try:
        r.script_flush()
        # the nodes beat every quarter of their 1 s TTL (.NET, heartbeat.lua); none of them reads the membership
        wait_until(lambda: r.script_exists(sha["heartbeat"])[0], "a node's heartbeat to run heartbeat.lua")
        assert r.script_exists(sha["read"], sha["poll"]) == [False, False]
        with _store(redis, name) as store:   # reads at once (read.lua), then polls every 0.1 s (poll.lua)
            assert len(store.nodes) == 3
            assert r.script_exists(sha["read"])[0]
            wait_until(lambda: r.script_exists(sha["poll"])[0], "this client's poll to run poll.lua")
        r.script_flush()
        path = os.path.join(REPO, ".build", f"scripts-{os.getpid()}")
        with open(path, "wb") as f:
            f.write(b"x" * 10)
        try:   # the .NET cluster client reads the membership (read.lua) before it places the key
            done = subprocess.run([*cli, "put", "--redis", redis.url, "--cluster", name, "scripts/key", path],
                                  capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(path)
        assert done.returncode == 0, done.stderr
        assert r.script_exists(sha["read"])[0]
    finally:
        r.close()


def test_bad_cluster_settings_are_clear_errors(cli):
    with pytest.raises(kvasir.KvasirError, match="cannot read cluster"):
        kvasir.KvStore(redis_url=f"redis://127.0.0.1:{_free_port()}", connect_timeout=0.5)
    with pytest.raises(kvasir.KvasirError, match="replicas"):
        kvasir.KvStore(redis_url="redis://127.0.0.1:1", replicas=0)
    with pytest.raises(kvasir.KvasirError, match="cluster name"):
        kvasir.KvStore(redis_url="redis://127.0.0.1:1", cluster="bad name")


def test_a_cluster_store_with_value_crc_sends_each_values_crc_to_its_members(cluster, monkeypatch):
    """value_crc=True on a cluster store reaches the per-node stores: each member's PUT carries the writer's CRC, which
    the node keeps instead of computing its own. Shown by sending wrong CRCs: the node drops every such value (a miss,
    counted in crc_mismatches), where a member that ignored value_crc would have stored and served it."""
    import kvasir.tcp
    redis, name, nodes = cluster
    monkeypatch.setattr(kvasir.tcp, "_crc_of_pieces", lambda pieces: 0x12345678)
    keys = [f"py/value-crc/{i}" for i in range(30)]
    with _store(redis, name, transport="tcp", value_crc=True) as store:
        assert all(store.put(k, _value(k, 4096).tobytes()) == 0 for k in keys)
        assert all(store.get(k) is None for k in keys)
        assert sum(s["crc_mismatches"] for _, s, _ in store.node_stats() if s) == len(keys)


def test_a_node_id_registered_again_at_a_new_address_is_followed_within_a_few_polls():
    # A node restarted under its stable id (--node-id, an embedded rank's client_id) at a new address while its old
    # registration is still live: the client polls the epoch every 0.1 s and must read the new address from it, not
    # keep routing to the old one until its 30 s full read.
    import redis as redis_py
    from kvasir._membership import registry_script
    server = Redis()
    name = f"moved{os.getpid()}"
    r = redis_py.Redis.from_url(server.url)
    keys = [f"kvasir:{{{name}}}:{k}" for k in ("members", "records", "down", "epoch")]

    def beat(addr):
        record = json.dumps({"id": "n1", "addr": addr, "started_ms": int(time.time() * 1000)})
        return r.eval(registry_script("heartbeat"), 4, *keys, "n1", record, 60000, f"kvasir:{{{name}}}:events")
    try:
        beat(f"127.0.0.1:{_free_port()}")
        with _store(server, name) as store:
            moved = f"127.0.0.1:{_free_port()}"
            assert beat(moved) == 1
            wait_until(lambda: [n["addr"] for n in store.nodes] == [moved], f"the client to read n1 at {moved}", timeout=5)
    finally:
        r.close()
        server.stop()


def test_a_joining_heartbeat_takes_a_live_id_whatever_the_clocks_and_the_displaced_nodes_renewal_is_refused():
    # The contract of heartbeat.lua that .NET nodes rely on (NodeRegistrar), decided by the order in which the
    # heartbeats reach Redis, never by the started_ms the nodes write from their own clocks: a node's first heartbeat
    # (no 5th argument) takes a live id, and a renewal (5th argument "1") from the incarnation it displaced is answered
    # with the holder's record, changing nothing. Before, the later started_ms kept the id: a node restarted on a host
    # whose clock is behind its dead predecessor's was refused until that registration expired.
    import redis as redis_py
    from kvasir._membership import registry_script
    server = Redis()
    name = f"clock{os.getpid()}"
    r = redis_py.Redis.from_url(server.url)
    keys = [f"kvasir:{{{name}}}:{k}" for k in ("members", "records", "down", "epoch")]
    now = int(time.time() * 1000)
    ahead = json.dumps({"id": "n1", "addr": f"127.0.0.1:{_free_port()}", "started_ms": now + 3600_000})
    behind = json.dumps({"id": "n1", "addr": f"127.0.0.1:{_free_port()}", "started_ms": now})

    def beat(record, *renewal):
        return r.eval(registry_script("heartbeat"), 4, *keys, "n1", record, 60000, f"kvasir:{{{name}}}:events", *renewal)
    try:
        assert beat(ahead) == 1
        assert beat(behind) == 1, "a node's first heartbeat was refused: the id is live with a record that started 'later'"
        assert r.hget(keys[1], "n1").decode() == behind
        epoch = int(r.get(keys[3]))
        assert beat(ahead, "1").decode() == behind, "the displaced node's renewal was not refused with the holder's record"
        assert beat(behind, "1") == 0
        assert int(r.get(keys[3])) == epoch and r.hget(keys[1], "n1").decode() == behind
    finally:
        r.close()
        server.stop()


def test_an_embedded_store_started_over_its_predecessors_live_record_routes_its_own_id_to_its_new_node(cli):
    # A rank restarted with its client_id before its predecessor's registration expired: the record still names the
    # old, dead address. The store must not start routing its own keys there: it waits for its node's own record.
    import redis as redis_py
    from kvasir._membership import registry_script
    server = Redis()
    name = f"restart{os.getpid()}"
    r = redis_py.Redis.from_url(server.url)
    keys = [f"kvasir:{{{name}}}:{k}" for k in ("members", "records", "down", "epoch")]
    dead = f"127.0.0.1:{_free_port()}"
    record = json.dumps({"id": "py-rank-0", "addr": dead, "started_ms": 1, "kind": "embedded"})
    r.eval(registry_script("heartbeat"), 4, *keys, "py-rank-0", record, 60000, f"kvasir:{{{name}}}:events")
    try:
        with _store(server, name, capacity="16MiB", client_id="py-rank-0") as store:
            assert [n["addr"] for n in store.nodes] != [dead], "the store routes its own id to its predecessor's address"
            assert store.put("own/0", b"x" * 100) == 0
            assert store.get("own/0") == b"x" * 100
    finally:
        r.close()
        server.stop()


def test_a_member_retired_by_another_calls_view_change_turns_its_keys_unavailable_and_is_not_reopened(node):
    # Two threads of one store: one has picked a member's store for its request, the other sees the member's address
    # change (or the member leave) and closes that store. The first request's keys are UNAVAILABLE, like a node that
    # went away, not a KvasirError out of the whole batch; and the retired slot never opens a store again (it was
    # reopened at the old address and never closed: a connection, and a mapping of the arena, kept for good).
    from kvasir import protocol as P
    store = kvasir.KvStore([node.address, f"127.0.0.1:{_free_port()}"], connect_timeout=2.0)
    try:
        router = store._router
        _, slots = router._view()
        slot = next(s for s in slots if s.id == node.address)
        moved = [dict(n) for n in router.membership.nodes]
        for n in moved:
            if n["id"] == node.address:
                n["addr"] = f"127.0.0.1:{_free_port()}"

        def call(member):
            router.membership.nodes = moved
            router._view()   # the other thread's call: it retires the slot this request is using
            return member._key_op(P.Opcode.EXISTS, [b"retired/0"])
        assert router._run(slot, 1, call) == [E.UNAVAILABLE]
        assert slot.get(router._open_store) is None, "a retired slot opened a store again"
    finally:
        store.close()


def test_a_cluster_store_reports_its_failed_membership_polls_while_redis_is_down_and_clears_the_error_once_it_is_back():
    # The membership thread's error and failure count were reachable only through the store's private router: a store
    # whose registry was down routed on a frozen view with nothing to show for it (and the count left out an
    # unreachable registry). The same names as the .NET KvStore.MembershipError / MembershipFailures.
    server = Redis()
    try:
        with _store(server, f"polls{os.getpid()}") as store:
            assert store.membership_error is None and store.membership_failures == 0, store.membership_error
            server.stop()
            wait_until(lambda: store.membership_failures >= 2 and store.membership_error is not None,
                       "the store to count its failed polls")
            assert str(server.port) in store.membership_error, store.membership_error
            server.restart()
            wait_until(lambda: store.membership_error is None, "the store's polls to succeed again", timeout=30)
            assert store.membership_failures >= 2, "the count went back: it counts every failed poll since the store connected"
    finally:
        server.stop()
    single = kvasir.KvStore([f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"], connect_timeout=2.0)
    try:
        assert single.membership_error is None and single.membership_failures == 0   # a static list has no polls
    finally:
        single.close()


def test_the_membership_thread_reports_a_damaged_registry_and_follows_again_once_it_is_repaired():
    # A non-number in the epoch key makes the poll script answer an empty list: the thread died on the unpacking, and
    # the client kept its view for good with no error to show for it.
    import redis as redis_py
    from kvasir._membership import RedisMembership
    server = Redis()
    name = f"damaged{os.getpid()}"
    r = redis_py.Redis.from_url(server.url)
    membership = RedisMembership(server.url, name, poll=0.05, timeout=2.0)
    try:
        epoch_key = f"kvasir:{{{name}}}:epoch"
        r.set(epoch_key, "not-a-number")
        wait_until(lambda: membership.error is not None, "the membership thread to report the damaged registry")
        assert membership.failures > 0, membership.error
        r.set(epoch_key, "1000")
        wait_until(lambda: membership.epoch == 1000 and membership.error is None,
                   "the membership thread to follow the repaired registry")
    finally:
        membership.close()
        r.close()
        server.stop()
