"""TLS on the data plane: the Python client against real `kvasir serve --tls-cert/--tls-key` nodes."""
import logging
import os

import numpy as np
import pytest

import kvasir
from kvasir.errors import KvasirAuthError, KvasirError

from conftest import AUTH_KEY, Node, wait_until
from test_cluster import Redis


def _tls_node(certs, *extra):
    return Node("--memory", "64MiB", "--tls-cert", certs["server"], "--tls-key", certs["key"], *extra)


@pytest.fixture()
def tls_node(cli, certs):
    n = _tls_node(certs)
    yield n
    n.stop()


def _store(node, certs, **kw):
    kw.setdefault("transport", "tcp")
    return kvasir.KvStore(node.address, tls_ca=certs["ca"], connect_timeout=10, request_timeout=10, **kw)


def _node_log(node):
    with open(node.log.name, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_put_get_and_batches_round_trip_over_tls(tls_node, certs):
    sizes = [0, 1, 8 * 1024, 16 * 1024 + 7, 64 * 1024 - 1, 64 * 1024 + 1, 1 << 20, (1 << 20) + 3]
    with _store(tls_node, certs) as s:
        assert s.transport == "tcp"
        values = [os.urandom(n) for n in sizes]
        keys = [f"py-tls/{i}" for i in range(len(sizes))]
        for k, v in zip(keys, values):
            assert s.put(k, v) == 0
            assert s.get(k) == v
        srcs = [np.frombuffer(v, dtype=np.uint8).copy() if v else np.zeros(1, dtype=np.uint8) for v in values]
        for a in srcs:
            s.register_buffer(a.ctypes.data, a.nbytes)
        batch = [f"py-tls/batch/{i}" for i in range(len(sizes))]
        assert s.batch_put_from(batch, [a.ctypes.data for a in srcs], sizes) == [0] * len(sizes)
        outs = [np.zeros(max(n, 1), dtype=np.uint8) for n in sizes]
        for a in outs:
            s.register_buffer(a.ctypes.data, a.nbytes)
        assert s.batch_get_into(batch, [a.ctypes.data for a in outs], sizes) == sizes
        for v, out in zip(values, outs):
            assert bytes(out[:len(v)]) == v
        assert s.batch_is_exist([batch[2], "py-tls/absent"]) == [1, 0]


def test_tls_and_hmac_auth_work_together(cli, certs):
    n = _tls_node(certs, "--auth-key", AUTH_KEY)
    try:
        with _store(n, certs, auth_key=AUTH_KEY) as s:
            assert s.put("both", b"x" * 300_000) == 0
            assert s.get("both") == b"x" * 300_000
        with pytest.raises(KvasirAuthError, match="requires an auth key"):
            _store(n, certs)
    finally:
        n.stop()


def test_a_plaintext_client_is_refused_by_a_tls_node_saying_tls_is_required(tls_node, certs):
    with pytest.raises(KvasirError, match="requires TLS") as ex:
        kvasir.KvStore(tls_node.address, transport="tcp", connect_timeout=10)
    assert "\n" not in str(ex.value)
    wait_until(lambda: "requires TLS" in _node_log(tls_node), "the node to log the plaintext client")
    with _store(tls_node, certs) as s:   # still serving TLS clients
        assert s.put("after", b"ok") == 0


def test_a_tls_client_is_refused_by_a_plaintext_node_naming_what_to_drop(own_node, certs):
    with pytest.raises(KvasirError, match="does not speak TLS.*drop the TLS options"):
        _store(own_node, certs)


def test_a_wrong_ca_is_refused_with_the_certificate_reason(tls_node, certs):
    with pytest.raises(KvasirError, match="certificate was rejected: unable to get local issuer certificate"):
        kvasir.KvStore(tls_node.address, tls_ca=certs["other-ca"], transport="tcp", connect_timeout=10)


def test_a_wrong_server_name_is_refused_and_the_right_override_accepted(tls_node, certs):
    with pytest.raises(KvasirError, match="certificate was rejected.*tls_server_name"):
        _store(tls_node, certs, tls_server_name="not-the-node.test")
    with _store(tls_node, certs, tls_server_name="kvasir-node.test") as s:
        assert s.put("named", b"n") == 0


def test_a_node_requiring_client_certificates_refuses_none_and_foreign_ones(cli, certs):
    n = _tls_node(certs, "--tls-client-ca", certs["ca"])
    try:
        with pytest.raises(KvasirError, match="client certificate"):
            _store(n, certs)
        with pytest.raises(KvasirError, match=n.address):
            _store(n, certs, tls_cert=certs["other-client"], tls_key=certs["other-client-key"])
        with _store(n, certs, tls_cert=certs["client"], tls_key=certs["client-key"]) as s:
            assert s.put("cc", b"c" * 70_000) == 0
            assert s.get("cc") == b"c" * 70_000
        wait_until(lambda: "the client presented no certificate" in _node_log(n), "the node to log the missing client certificate")
    finally:
        n.stop()


def test_shared_memory_still_works_on_a_tls_node(tls_node, certs):
    with _store(tls_node, certs, transport="shm") as s:
        assert s.transport == "shm"
        value = os.urandom(2 << 20)
        assert s.put("py-shm", value) == 0
        assert s.get("py-shm") == value


def test_tls_settings_come_from_the_environment_and_bad_files_are_named(tls_node, certs, monkeypatch, tmp_path):
    monkeypatch.setenv("KVASIR_TLS_CA", certs["ca"])
    with kvasir.KvStore(tls_node.address, transport="tcp", connect_timeout=10) as s:
        assert s.put("env", b"e") == 0
    missing = str(tmp_path / "absent.pem")
    with pytest.raises(KvasirError, match="absent.pem"):
        kvasir.KvStore(tls_node.address, tls_ca=missing, transport="tcp")
    with pytest.raises(KvasirError, match="both tls_cert and tls_key"):
        kvasir.KvStore(tls_node.address, tls_ca=certs["ca"], tls_cert=certs["client"], transport="tcp")


def test_a_cluster_of_tls_nodes_routes_with_tls_and_names_the_option_without(cli, certs, caplog):
    redis = Redis()
    name = f"pytls{os.getpid()}"
    nodes = [_tls_node(certs, "--redis", redis.url, "--cluster", name, "--heartbeat-ttl", "1") for _ in range(2)]
    try:
        with kvasir.KvStore(redis_url=redis.url, cluster=name, membership_poll=0.1, tls_ca=certs["ca"],
                            connect_timeout=5, request_timeout=10) as s:
            wait_until(lambda: len(s.nodes) == 2, "the TLS client to discover both nodes")
            assert all(n.get("tls") is True for n in s.nodes)
            for i in range(20):
                assert s.put(f"c/{i}", bytes([i]) * 5000) == 0
            for i in range(20):
                assert s.get(f"c/{i}") == bytes([i]) * 5000
        with caplog.at_level(logging.WARNING, logger="kvasir"):
            with kvasir.KvStore(redis_url=redis.url, cluster=name, membership_poll=0.1, connect_timeout=5, request_timeout=10) as p:
                wait_until(lambda: len(p.nodes) == 2, "the plaintext client to discover both nodes")
                assert p.put("plain", b"p") < 0
        assert any("requires TLS" in r.getMessage() and "tls_ca" in r.getMessage() for r in caplog.records)
        assert all("requires TLS" not in _node_log(n) for n in nodes)   # refused from the record, no plaintext HELLO sent
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
