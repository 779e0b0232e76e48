"""Chained puts from Python: with the node's prefix-aware eviction, what survives of a chain is a prefix."""

import numpy as np

from conftest import Node
from kvasir import KvStore

BLOCK = 64 * 1024
CHAINS, LENGTH = 24, 16          # 24 x 16 x 64 KiB = 24 MiB = 3 x the 8 MiB arena


def fill(store, chain: bool):
    """Writes the chains (half in one batch, half in two batches linked by chain_parent) and touches
    older chains' heads, as an engine reusing prefixes would. Returns the presence matrix."""
    data = np.zeros((LENGTH, BLOCK), dtype=np.uint8)
    store.register_buffer(data.ctypes.data, data.nbytes)
    ptrs = [data[i].ctypes.data for i in range(LENGTH)]
    rng = np.random.default_rng(3)
    for c in range(CHAINS):
        keys = [f"chain{c}/{i}" for i in range(LENGTH)]
        data[:] = c
        if c % 2 == 0:
            assert store.batch_put_from(keys, ptrs, [BLOCK] * LENGTH, chain=chain) == [0] * LENGTH
        else:
            assert store.batch_put_from(keys[:8], ptrs[:8], [BLOCK] * 8, chain=chain) == [0] * 8
            assert store.batch_put_from(keys[8:], ptrs[8:], [BLOCK] * 8, chain=chain,
                                        chain_parent=keys[7] if chain else None) == [0] * 8
        if c > 2:
            store.get(f"chain{int(rng.integers(c))}/0")
    return [store.batch_is_exist([f"chain{c}/{i}" for i in range(LENGTH)]) for c in range(CHAINS)]


def holes(matrix):
    return [row for row in matrix if row[:row.count(1)] != [1] * row.count(1)]


def test_chained_puts_survive_eviction_as_prefixes_under_prefix_aware_eviction(cli):
    # --max-batch 5 makes the client split each chain into several requests, each linked to the last.
    node = Node("--memory", "8MiB", "--max-value", "1MiB", "--eviction", "prefix", "--max-batch", "5")
    try:
        with KvStore(node.address) as store:
            matrix = fill(store, chain=True)
            assert store.stats()["evictions"] > 0
            assert holes(matrix) == []
            assert any(0 < row.count(1) < LENGTH for row in matrix) or sum(r.count(0) for r in matrix) >= LENGTH
    finally:
        node.stop()


def test_without_the_chain_flag_the_same_workload_leaves_holes_so_the_test_above_can_fail(cli):
    node = Node("--memory", "8MiB", "--max-value", "1MiB", "--eviction", "prefix", "--max-batch", "5")
    try:
        with KvStore(node.address) as store:
            assert holes(fill(store, chain=False)) != []
    finally:
        node.stop()
