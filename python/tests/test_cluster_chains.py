"""Chain placement (docs/protocol.md, Placement): vectors, and real `kvasir serve` nodes counting requests."""
import json
import os

import numpy as np
import pytest

import kvasir
from kvasir import errors as E
from kvasir.errors import KvasirError
from kvasir.placement import Ring, chain_placement_key

from conftest import REPO, Node

VECTORS = os.path.join(REPO, "tests", "vectors", "rendezvous.json")
BLOCK = 4096


def test_chain_placement_matches_the_shared_vectors():
    with open(VECTORS, encoding="utf-8") as f:
        cases = json.load(f)["chains"]
    assert len(cases) >= 12
    for c in cases:
        keys = [bytes.fromhex(k) for k in c["keys"]]
        root = bytes.fromhex(c["root"]) if c["root"] else None
        placed_by = chain_placement_key(keys[0], root, c["parent"] is not None)
        assert Ring(c["nodes"]).place(placed_by, c["replicas"]) == c["placement"]


def test_a_continuation_without_its_root_is_refused_with_the_fix():
    with pytest.raises(KvasirError, match="must name the chain's first key"):
        chain_placement_key(b"k1", None, True)
    with pytest.raises(KvasirError, match=r"1\.\.512 bytes \(got 513\)"):
        chain_placement_key(b"k1", b"r" * 513, True)


@pytest.fixture()
def nodes(cli):
    started = [Node("--memory", "64MiB", "--admin-port", "off") for _ in range(3)]
    try:
        yield started
    finally:
        for n in started:
            n.stop()


def _requests(store, op):
    """Each node's count of ``op`` requests, by node id."""
    out = {}
    for node, stats, error in store.node_stats():
        assert error is None
        out[node["id"]] = stats[f"requests_{op}"]
    return out


def _reads(store):
    """Each node's count of read requests (GET over TCP, LEASE over shared memory), by node id."""
    gets, leases = _requests(store, "get"), _requests(store, "lease")
    return {i: gets[i] + leases[i] for i in gets}


def _chain(name, n):
    return [f"{name}/{i}" for i in range(n)]


def test_a_chain_put_is_one_request_per_replica_and_its_lookups_one_request_on_the_roots_node(nodes):
    servers = [n.address for n in nodes]
    keys = _chain("py/chain/a", 24)
    more = _chain("py/chain/a-more", 8)   # continues `keys`: placed by the same root
    buf = np.random.default_rng(7).integers(0, 256, (len(keys) + len(more)) * BLOCK, dtype=np.uint8)
    out = np.zeros_like(buf)
    with kvasir.KvStore(servers, chain_placement=True, connect_timeout=2.0, request_timeout=10.0) as store:
        store.register_buffer(buf.ctypes.data, buf.nbytes)
        store.register_buffer(out.ctypes.data, out.nbytes)
        ptr = [buf.ctypes.data + i * BLOCK for i in range(len(keys) + len(more))]
        dst = [out.ctypes.data + i * BLOCK for i in range(len(keys) + len(more))]
        root = store.placement(keys[0])[0]
        before = _requests(store, "put")
        assert store.batch_put_from(keys, ptr[:len(keys)], [BLOCK] * len(keys), chain=True) == [0] * len(keys)
        assert store.batch_put_from(more, ptr[len(keys):], [BLOCK] * len(more), chain=True, chain_parent=keys[-1],
                                    chain_root=keys[0]) == [0] * len(more)
        after = _requests(store, "put")
        assert {i: after[i] - before[i] for i in after} == {i: (2 if i == root else 0) for i in after}
        for node, stats, _ in store.node_stats():
            assert stats["keys"] == (len(keys) + len(more) if node["id"] == root else 0)

        whole = keys + more
        # a read is a GET, or a LEASE where the node is reached through shared memory (these nodes are on this host)
        before_e, before_g = _requests(store, "exists"), _reads(store)
        assert store.batch_is_exist_chain(whole) == [1] * len(whole)
        assert store.batch_get_chain_into(whole, dst, [BLOCK] * len(whole)) == [BLOCK] * len(whole)
        assert np.array_equal(out, buf)
        after_e, after_g = _requests(store, "exists"), _reads(store)
        assert {i: after_e[i] - before_e[i] for i in after_e} == {i: (1 if i == root else 0) for i in after_e}
        assert {i: after_g[i] - before_g[i] for i in after_g} == {i: (1 if i == root else 0) for i in after_g}

        # A hole (removed on the root's node: per-key operations place each key by itself): the lookup reports
        # the stored prefix; keys past the first miss are misses.
        with kvasir.KvStore(root) as direct:
            assert direct.batch_remove([keys[5]]) == [0]
        assert store.batch_is_exist_chain(whole) == [1] * 5 + [0] * (len(whole) - 5)
        codes = store.batch_get_chain_into(whole, dst, [BLOCK] * len(whole))
        assert codes == [BLOCK] * 5 + [E.NOT_FOUND] * (len(whole) - 5)

        # Without chain placement each key goes to its own node: the same batch is one request per node it spans.
        spread = _chain("py/chain/spread", 24)
        owners = {store.placement(k)[0] for k in spread}
        before = _requests(store, "put")
        assert store.batch_put_from(spread, ptr[:24], [BLOCK] * 24, chain=True, chain_placement=False) == [0] * 24
        after = _requests(store, "put")
        assert sum(after[i] - before[i] for i in after) == len(owners) > 1

        with pytest.raises(KvasirError, match="must name the chain's first key"):
            store.batch_put_from(more, ptr[:len(more)], [BLOCK] * len(more), chain=True, chain_parent=keys[-1])


def test_with_two_replicas_a_chain_put_is_two_requests_and_a_lookup_asks_the_second_replica_from_the_first_miss(nodes):
    servers = [n.address for n in nodes]
    keys = _chain("py/chain/r2", 16)
    buf = np.random.default_rng(8).integers(0, 256, len(keys) * BLOCK, dtype=np.uint8)
    with kvasir.KvStore(servers, replicas=2, chain_placement=True, connect_timeout=2.0, request_timeout=10.0) as store:
        store.register_buffer(buf.ctypes.data, buf.nbytes)
        ptr = [buf.ctypes.data + i * BLOCK for i in range(len(keys))]
        first, second = store.placement(keys[0], 2)
        before = _requests(store, "put")
        assert store.batch_put_from(keys, ptr, [BLOCK] * len(keys), chain=True) == [0] * len(keys)
        after = _requests(store, "put")
        assert {i: after[i] - before[i] for i in after} == {i: (1 if i in (first, second) else 0) for i in after}

        # The first replica lost the chain's tail: the lookup asks it once, then the second replica for the rest.
        with kvasir.KvStore(first) as direct:
            assert direct.batch_remove(keys[10:]) == [0] * 6
        before = _requests(store, "exists")
        assert store.batch_is_exist_chain(keys) == [1] * len(keys)
        after = _requests(store, "exists")
        assert {i: after[i] - before[i] for i in after} == {i: (1 if i in (first, second) else 0) for i in after}
