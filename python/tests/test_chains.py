"""Chained puts from Python: with the node's prefix-aware eviction, what survives of a chain is a prefix."""

import numpy as np
import pytest

from conftest import Node
from kvasir import KvStore

BLOCK = 64 * 1024
CHAINS, LENGTH = 24, 16          # 24 x 16 x 64 KiB = 24 MiB = 3 x the 8 MiB arena


def fill(store, chain: bool, local: bool = False):
    """Writes the chains (half in one batch, half in two batches linked by chain_parent) and touches
    older chains' heads, as an engine reusing prefixes would. Returns the presence matrix. ``local``: through the
    node's shared-memory arena (ALLOC, copy, COMMIT: the chain goes with the COMMITs)."""
    data = np.zeros((LENGTH, BLOCK), dtype=np.uint8)
    store.register_buffer(data.ctypes.data, data.nbytes)
    ptrs = [data[i].ctypes.data for i in range(LENGTH)]
    rng = np.random.default_rng(3)
    put = store.batch_put_from_local if local else store.batch_put_from
    for c in range(CHAINS):
        keys = [f"chain{c}/{i}" for i in range(LENGTH)]
        data[:] = c
        if c % 2 == 0:
            assert put(keys, ptrs, [BLOCK] * LENGTH, chain=chain) == [0] * LENGTH
        else:
            assert put(keys[:8], ptrs[:8], [BLOCK] * 8, chain=chain) == [0] * 8
            assert put(keys[8:], ptrs[8:], [BLOCK] * 8, chain=chain, chain_parent=keys[7] if chain else None) == [0] * 8
        if c > 2:
            store.get(f"chain{int(rng.integers(c))}/0")
    return [store.batch_is_exist([f"chain{c}/{i}" for i in range(LENGTH)]) for c in range(CHAINS)]


def holes(matrix):
    return [row for row in matrix if row[:row.count(1)] != [1] * row.count(1)]


# Through the socket (PUT with CHAIN), and through the node's arena (ALLOC, copy, COMMIT with CHAIN: feature 0x20).
PATHS = pytest.mark.parametrize("local", [False, True], ids=["socket", "arena"])


@PATHS
def test_chained_puts_survive_eviction_as_prefixes_under_prefix_aware_eviction(cli, local):
    # --max-batch 5 makes the client split each chain into several requests (PUTs or COMMITs), each linked to the last.
    node = Node("--memory", "8MiB", "--max-value", "1MiB", "--eviction", "prefix", "--max-batch", "5")
    try:
        with KvStore(node.address) as store:
            matrix = fill(store, chain=True, local=local)
            assert store.stats()["evictions"] > 0
            assert holes(matrix) == []
            assert any(0 < row.count(1) < LENGTH for row in matrix) or sum(r.count(0) for r in matrix) >= LENGTH
    finally:
        node.stop()


@PATHS
def test_without_the_chain_flag_the_same_workload_leaves_holes_so_the_test_above_can_fail(cli, local):
    node = Node("--memory", "8MiB", "--max-value", "1MiB", "--eviction", "prefix", "--max-batch", "5")
    try:
        with KvStore(node.address) as store:
            assert holes(fill(store, chain=False, local=local)) != []
    finally:
        node.stop()


def test_chain_parent_without_chain_is_refused_before_anything_is_sent(cli):
    node = Node("--memory", "8MiB")
    try:
        with KvStore(node.address) as store:
            data = np.zeros(16, dtype=np.uint8)
            store.register_buffer(data.ctypes.data, data.nbytes)
            with pytest.raises(ValueError, match="chain_parent needs chain=True"):
                store.batch_put_from_local(["k"], [data.ctypes.data], [16], chain_parent="p")
            assert store.batch_is_exist(["k"]) == [0]
    finally:
        node.stop()
