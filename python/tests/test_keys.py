"""Key management against real nodes: scan (ls), info, remove by prefix / all, TTL expiry, namespace quotas, bad
input, a cluster's fan-out, and how the package finds the kvasir binary."""
import os

import pytest

from conftest import Node, wait_until
from kvasir import KvStore, node_binary
from kvasir import errors as E
from kvasir.errors import KvasirError


@pytest.fixture(scope="module")
def keys_node(cli):
    n = Node("--memory", "64MiB", "--namespace-quota", "tenant-a/=1000", "--namespace-quota", "tenant-b/=5000")
    yield n
    n.stop()


@pytest.fixture(params=["tcp", "shm"])
def ks(keys_node, request):
    s = KvStore(keys_node.address, transport=request.param, request_timeout=10)
    assert s.transport == request.param
    s.remove_all()
    yield s
    s.remove_all()
    s.close()


def test_scan_pages_a_prefix_in_byte_order_and_resumes_from_its_cursor(ks):
    for i in range(25):
        assert ks.put(f"p/{i:03d}", bytes(10)) == 0
    assert ks.put("q/other", b"x") == 0
    listed, cursor, pages = [], b"", 0
    while True:
        entries, cursor, tiers = ks.scan("p/", cursor, page_size=10)
        assert len(entries) <= 10 and tiers == ["dram"]
        listed += entries
        pages += 1
        assert pages <= 4, "the listing did not end"
        if not cursor:
            break
    assert listed == [(f"p/{i:03d}".encode(), 10) for i in range(25)]
    assert len(list(ks.list_keys(page_size=7))) == 26


def test_info_reports_tier_length_ttl_pins_and_misses(ks):
    assert ks.put("k", bytes(100), ttl=3600) == 0
    assert ks.batch_pin(["k"]) == [0]
    hit, miss, bad = ks.info(["k", "missing", "x" * 600])
    assert (hit.status, hit.tier, hit.length, hit.pins, hit.leases) == (0, "dram", 100, 1, 0)
    assert 3_000_000 < hit.ttl_ms <= 3_600_000
    assert miss.status == 1 and bad.status == 3


def test_remove_prefix_removes_only_that_prefix_and_remove_all_empties_the_node(ks):
    for i in range(30):
        ks.put(f"a/{i}", b"v")
    ks.put("b/1", b"v")
    assert ks.remove_prefix("a/") == 30
    assert ks.remove_prefix("a/") == 0
    assert ks.batch_is_exist(["a/1", "b/1"]) == [0, 1]
    assert ks.remove_all() == 1
    assert list(ks.list_keys()) == []


def test_an_expired_value_is_a_miss_and_ttl_zero_never_expires(ks):
    assert ks.put("short", b"v" * 4096, ttl=1) == 0
    assert ks.put("forever", b"v", ttl=0) == 0
    assert ks.info(["forever"])[0].ttl_ms == 0
    wait_until(lambda: ks.get("short") is None, "the 1 s TTL value to become a miss", timeout=30)
    assert ks.info(["short"])[0].status == 1
    assert ks.get("forever") == b"v"
    assert ks.stats()["expired"] >= 1


def test_a_put_over_its_namespace_budget_is_quota_exceeded_with_a_message_naming_it(ks):
    assert ks.put("tenant-a/1", bytes(600)) == 0
    assert ks.put("tenant-a/2", bytes(600)) == E.QUOTA_EXCEEDED
    assert E.code_name(E.QUOTA_EXCEEDED) == "QUOTA_EXCEEDED"
    assert ks.put("tenant-b/1", bytes(600)) == 0
    message = ks.quota_message("tenant-a/2")
    assert "namespace 'tenant-a/'" in message and "DRAM budget of 1000 bytes" in message and "disk and shared copies do not count" in message
    assert ks.put("tenant-a/1", bytes(900)) == 0  # an overwrite counts net of what it replaces
    ks.remove("tenant-a/1")
    assert ks.put("tenant-a/2", bytes(1000)) == 0
    info = ks.info(["tenant-a/2"])[0]
    assert (info.namespace, info.namespace_budget, info.namespace_used) == (b"tenant-a/", 1000, 1000)


def test_bad_input_raises_one_line_errors_naming_the_limit(ks):
    with pytest.raises(ValueError, match="512-byte key limit"):
        ks.scan("x" * 600)
    for size in (0, 8193, "10"):
        with pytest.raises(ValueError, match=r"1\.\.8192"):
            ks.scan("", page_size=size)
    with pytest.raises(ValueError, match="4294967295"):
        ks.put("k", b"v", ttl=2 ** 32)
    with pytest.raises(ValueError, match="outside"):
        ks.put("k", b"v", ttl=-1)
    with pytest.raises(ValueError):
        ks.remove_prefix(b"x" * 513)
    assert ks.put("still", b"ok") == 0  # the connection is fine


def test_in_a_cluster_scan_and_remove_prefix_reach_every_node(cli):
    a, b = Node("--memory", "32MiB"), Node("--memory", "32MiB")
    try:
        with KvStore([a.address, b.address], request_timeout=10) as s:
            assert s.is_cluster
            for i in range(40):
                assert s.put(f"c/{i:03d}", b"v") == 0
            with KvStore(a.address) as only_a, KvStore(b.address) as only_b:
                on_a, on_b = len(list(only_a.list_keys("c/"))), len(list(only_b.list_keys("c/")))
            assert on_a > 0 and on_b > 0 and on_a + on_b == 40
            listed = sorted(k for k, _ in s.list_keys("c/", page_size=3))
            assert listed == [f"c/{i:03d}".encode() for i in range(40)]
            assert s.info(["c/007"])[0].status == 0
            assert s.remove_prefix("c/") == 40
            assert list(s.list_keys()) == []
    finally:
        a.stop()
        b.stop()


def test_the_binary_lookup_names_kvasir_bin_and_path_when_nothing_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("KVASIR_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    command, why = node_binary.locate(repo=str(tmp_path))
    assert command is None and "KVASIR_BIN" in why and "PATH" in why and "\n" not in why
    monkeypatch.setenv("KVASIR_BIN", str(tmp_path / "nope"))
    command, why = node_binary.locate(repo=str(tmp_path))
    assert command is None and str(tmp_path / "nope") in why
    fake = tmp_path / "kvasir"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.delenv("KVASIR_BIN")
    assert node_binary.locate(repo=str(tmp_path / "elsewhere"))[0] == [str(fake)]  # found on PATH
    monkeypatch.setenv("KVASIR_BIN", f"{fake} --flag")
    assert node_binary.locate()[0] == [str(fake), "--flag"]


def test_an_embedded_node_that_cannot_be_found_says_where_it_looked(tmp_path, monkeypatch):
    from kvasir.cluster import EmbeddedNode
    monkeypatch.setenv("KVASIR_BIN", str(tmp_path / "missing-kvasir"))
    with pytest.raises(KvasirError, match="KVASIR_BIN") as e:
        EmbeddedNode._command()
    assert "PATH" in str(e.value)
    assert os.environ["KVASIR_BIN"].endswith("missing-kvasir")
