"""The registry URL forms in the Python client against real servers: rediss:// with a CA file, an ACL
user, and redis+sentinel:// across a master failover (the nodes are real `kvasir serve` processes)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest

import kvasir
from kvasir.errors import KvasirError

from conftest import Node, wait_until

# Sentinel calls the master down after 1 s and promotes within seconds; nodes and clients need a few more.
FAILOVER_BOUND = 30.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """redis-server (or, with a config file, a sentinel) on a free loopback port, killed by pid. The plain
    port always answers: for the readiness check and for the test's own commands."""

    def __init__(self, *extra, config=None):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="kvasir-py-redis-")   # a replica writes the RDB it is sent here
        head = [binary, config, "--sentinel"] if config else [binary, "--save", "", "--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen([*head, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no",
                                      "--loglevel", "warning", *extra], cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16)[:1] in (b"+", b"-"):   # +PONG, or -NOAUTH: up either way
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server {' '.join(extra)} did not start")
            time.sleep(0.02)

    def client(self, **kw):
        import redis as redis_py
        return redis_py.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _name():
    return f"py{os.getpid()}{int(time.monotonic() * 1000) % 100000}"


def _node(url, name):
    return Node("--memory", "64MiB", "--redis", url, "--cluster", name, "--heartbeat-ttl", "1")


def _store(url, name):
    return kvasir.KvStore(redis_url=url, cluster=name, membership_poll=0.1, connect_timeout=2.0, request_timeout=10.0)


def _routes_to(store, nodes, what):
    """Waits (bounded) until the store lists exactly these nodes, then stores and reads back one value through its routing."""
    want = sorted(n.address for n in nodes)
    wait_until(lambda: sorted(n["addr"] for n in store.nodes) == want, f"the client to discover {want} {what}", timeout=FAILOVER_BOUND)
    value = np.frombuffer(os.urandom(4096), dtype=np.uint8).copy()
    out = np.zeros_like(value)
    store.register_buffer(value.ctypes.data, value.nbytes)
    store.register_buffer(out.ctypes.data, out.nbytes)
    key = f"py/{what}/{time.monotonic_ns()}"
    assert store.batch_put_from([key], [value.ctypes.data], [value.nbytes]) == [0]
    assert store.batch_get_into([key], [out.ctypes.data], [out.nbytes]) == [out.nbytes]
    assert np.array_equal(out, value)


def test_rediss_with_the_ca_in_the_url_discovers_a_node_and_another_ca_is_refused(cli, certs):
    tls_port = _free_port()
    redis = Server("--tls-port", str(tls_port), "--tls-cert-file", certs["server"], "--tls-key-file", certs["key"],
                   "--tls-ca-cert-file", certs["ca"], "--tls-auth-clients", "no")
    name = _name()
    url = f"rediss://127.0.0.1:{tls_port}?ca={certs['ca']}"
    node = None
    try:
        node = _node(url, name)   # the same URL form through the .NET node
        with _store(url, name) as store:
            _routes_to(store, [node], "over-tls")
        with pytest.raises(KvasirError, match="certificate verify failed"):
            _store(f"rediss://127.0.0.1:{tls_port}?ca={certs['other-ca']}", name)
        with pytest.raises(KvasirError, match="a CA file applies to TLS only"):
            _store(f"redis://127.0.0.1:{redis.port}?ca={certs['ca']}", name)
    finally:
        if node:
            node.stop()
        redis.stop()


def test_an_acl_user_discovers_with_its_password_and_a_wrong_one_is_refused(cli):
    redis = Server("--requirepass", "admin-pw")
    admin = redis.client(password="admin-pw")
    assert admin.execute_command("ACL", "SETUSER", "kvpy", "on", ">py-pw", "~kvasir:*", "&kvasir:*", "+@all") in (b"OK", "OK", True)
    admin.close()
    name = _name()
    node = None
    try:
        node = _node(f"redis://kvpy:py-pw@127.0.0.1:{redis.port}", name)
        with _store(f"redis://kvpy:py-pw@127.0.0.1:{redis.port}", name) as store:
            _routes_to(store, [node], "as-acl-user")
        with _store(f"redis://:admin-pw@127.0.0.1:{redis.port}", name) as store:   # password only: the default user
            _routes_to(store, [node], "password-only")
        with pytest.raises(KvasirError, match="WRONGPASS") as wrong:
            _store(f"redis://kvpy:not-it@127.0.0.1:{redis.port}", name)
        assert "not-it" not in str(wrong.value)
    finally:
        if node:
            node.stop()
        redis.stop()


def test_sentinel_discovery_follows_a_killed_master_to_the_promoted_replica(cli):
    master = Server()
    replica = Server("--replicaof", "127.0.0.1", str(master.port))
    conf = tempfile.NamedTemporaryFile("w", prefix="kvasir-py-sentinel-", suffix=".conf", delete=False)
    conf.write(f"sentinel monitor kvpy 127.0.0.1 {master.port} 1\nsentinel down-after-milliseconds kvpy 1000\n"
               "sentinel failover-timeout kvpy 5000\n")
    conf.close()
    sentinel = Server(config=conf.name)
    nodes = []
    try:
        watcher = sentinel.client()
        wait_until(lambda: watcher.execute_command("SENTINEL", "REPLICAS", "kvpy"), "the sentinel to learn of the replica", timeout=30)
        def synced():
            r = replica.client()
            try:
                return r.info("replication").get("master_link_status") == "up"
            finally:
                r.close()
        wait_until(synced, "the replica to sync", timeout=15)
        name = _name()
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/kvpy"
        nodes.append(_node(url, name))
        with _store(url, name) as store:
            _routes_to(store, nodes, "first-master")
            master.stop()
            wait_until(lambda: watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "kvpy")[1] == str(replica.port).encode(),
                       "the sentinel to promote the replica", timeout=FAILOVER_BOUND)
            nodes.append(_node(url, name))   # joins through the promoted replica
            _routes_to(store, nodes, "after-failover")
        watcher.close()
    finally:
        for n in nodes:
            n.stop()
        sentinel.stop()
        replica.stop()
        master.stop()
        os.unlink(conf.name)
