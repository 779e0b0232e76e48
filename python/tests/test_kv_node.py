"""kvasir.kv with a real node as the tier below the engine's prefix cache."""
import os

import pytest
from flipping_relay import FlippingRelay

from kvasir import KvStore
from kvasir.kv import KVPool, PrefixCache, SchedRequest, SchedulerBridge
from kvasir.kv import errors as KE


def test_a_prefix_evicted_locally_is_found_on_the_node_and_loaded_byte_exact(node):
    store = KvStore(node.address, transport="tcp", request_timeout=10)
    try:
        block_bytes = 4096
        saved = {}

        def save_on_evict(h, block):   # the engine writes a block to the node as it leaves its memory
            saved[h] = bytes(block)

        cache = PrefixCache(block_size=16, max_cached_blocks=4, store=store, on_evict=save_on_evict,
                            extra_keys=["model-test", os.urandom(8).hex()])   # a salt: fresh keys per run
        tokens = list(range(1000, 1064))   # 4 blocks
        hashes = cache.compute_block_hashes(tokens)
        data = [os.urandom(block_bytes) for _ in hashes]
        cache.insert(hashes, [bytearray(d) for d in data])
        cache.save_to_store(hashes, data)
        assert store.batch_is_exist(["kvb1:" + h for h in hashes]) == [1, 1, 1, 1]
        other = cache.compute_block_hashes(list(range(5000, 5064)))
        cache.insert(other, [bytearray(block_bytes) for _ in other])   # evicts the whole first prefix
        assert not any(h in cache for h in hashes) and len(saved) == 4

        found = cache.lookup(hashes)
        assert (found.hit_blocks, found.num_tokens) == ([], 0)
        assert found.store_blocks == 4 and found.store_tokens == 64 and found.total_tokens == 64
        dests = [bytearray(block_bytes) for _ in hashes]
        lengths = cache.load_from_store(found.store_hashes, dests, blocks=dests)
        assert lengths == [block_bytes] * 4
        assert [bytes(d) for d in dests] == data
        hit_blocks, num_tokens = cache.lookup(hashes)
        assert num_tokens == 64 and [bytes(b) for b in hit_blocks] == data

        # the node answers for the longest present run only
        store.remove("kvb1:" + hashes[2])
        cache.invalidate(hashes)
        assert cache.lookup(hashes).store_blocks == 2
        s = cache.get_stats()
        assert s["store_lookups"] == 2 and s["store_loaded_blocks"] == 4 and s["evictions"] == 8
        store.batch_remove(["kvb1:" + h for h in hashes])
    finally:
        store.close()


def test_the_bridge_loads_blocks_from_the_node_and_saves_new_ones(node):
    store = KvStore(node.address, transport="tcp", request_timeout=10)
    try:
        block_bytes = 256
        memory = {}   # the engine's KV memory: (request, block index) -> buffer

        def buffer_for(rid, k):
            return memory.setdefault((rid, k), bytearray(block_bytes))

        salt = os.urandom(8).hex()
        pool = KVPool(max_tokens=256)
        tokens = list(range(40))
        writer = SchedulerBridge(pool, PrefixCache(block_size=8, store=store, extra_keys=[salt]), buffer_for=buffer_for)
        writer.step([SchedRequest("w", tokens, "prefill")])
        for k in range(5):
            buffer_for("w", k)[:] = bytes([k + 1]) * block_bytes   # "computed" KV
        plan = writer.step([SchedRequest("w", tokens, "finished")])
        assert ("save", "w", 5) in plan.ops

        reader = SchedulerBridge(pool, PrefixCache(block_size=8, store=store, extra_keys=[salt]), buffer_for=buffer_for)
        plan = reader.step([SchedRequest("r", tokens + [99, 98], "prefill")])
        pr = plan.requests["r"]
        assert pr.cached_tokens == 40 and len(pr.blocks_to_load) == 5 and pr.blocks_to_compute == [] and pr.tail_tokens == 2
        assert all(memory[("r", k)] == bytes([k + 1]) * block_bytes for k in range(5))
        reader.release_all()
        assert pool.used_tokens == 0
        store.batch_remove(["kvb1:" + h for h in pr.blocks_to_load])
    finally:
        store.close()


def test_a_block_corrupted_on_the_wire_is_a_checksum_mismatch_error_and_the_store_stays_usable(node):
    """With verify_crc the client checks every loaded block against the node's CRC-32C; one whose bytes were flipped on
    the way raises ChecksumMismatchError (the engine recomputes it), never hands the engine wrong bytes, and the next
    load on the same store reads exact bytes."""
    with FlippingRelay(node.address) as relay, KvStore(relay.address, transport="tcp", verify_crc=True,
                                                        request_timeout=20) as store:
        cache = PrefixCache(block_size=4, store=store)
        hashes = cache.compute_block_hashes(list(range(12)))
        blocks = [bytes([i]) * 4096 for i in range(len(hashes))]
        cache.save_to_store(hashes, blocks)
        relay.arm(5000)   # a byte of the second block's value in the GET reply
        dests = [bytearray(4096) for _ in hashes]
        with pytest.raises(KE.ChecksumMismatchError) as info:
            cache.load_from_store(hashes, dests)
        assert info.value.code == "KV_CHECKSUM_MISMATCH" and store.checksum_mismatches == 1
        dests = [bytearray(4096) for _ in hashes]
        assert cache.load_from_store(hashes, dests) == [4096] * len(hashes)
        assert [bytes(d) for d in dests] == blocks
