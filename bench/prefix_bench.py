#!/usr/bin/python3
"""Engine-side KV management in Python (kvasir.kv): is the cost flat in the number of cached blocks?

PrefixCache insert throughput and lookup latency per block with 1k / 100k / 1M blocks cached (chains of 64
blocks of 16 tokens, hashed with block hash v1 beforehand so only the cache is timed), block hashing throughput,
and KVPool alloc+free latency with 1 and 8 threads. Medians of --repeats timed passes.

Lookups are timed in the timing thread's CPU time (time.thread_time), not wall time: on a shared machine a wall
clock mostly measures how long the process waited for a core, while CPU time still includes every cache miss.
Three lookup columns: the chains' own hash strings (as inserted), equal strings that are other objects (what an
engine that hashes each request again passes: each probe then compares the stored key's characters), and the
same under FIFO, where a hit moves nothing (LRU minus FIFO is the cost of keeping the LRU order). The equal copies
are made for each pass right before it, in the order they are looked up, from the hashes' bytes kept apart (so making
them does not bring the cached strings into the CPU's caches) and hashed (Python keeps a string's hash in it), and
they lie in memory in that order, in cache, as an engine's freshly computed hashes would; up to session 6 they were made once for every chain, and each lookup read its
copies from wherever in ~100 MB they had been allocated (the bench's own far reads at 1M).
A second table times ``lookup_many`` (one call for 8 or 32 chains, as a scheduler step looks up its waiting requests)
against ``lookup`` of one chain a call, on 16-block chains, in turns within each pass.
With --parts (only that table) a 64-block LRU lookup is timed in parts, the ChainTable's own steps written out: the
first id's dict probe and its record; that plus the list compare of the run; that plus the values' slice; the three;
``ChainTable.lookup``; ``PrefixCache.lookup``; with the values the hash strings themselves (as above) and ints (an
engine's block ids: other objects than the hashes). Each part on a sample of its own per pass, in a rotating order.
Usage: /usr/bin/python3 bench/prefix_bench.py [--sizes 1000,100000,1000000] [--repeats 5] [--only-batched | --parts]
"""
import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from kvasir.kv import KVPool, PrefixCache, compute_block_hashes  # noqa: E402
from kvasir.kv.chain_table import _MASK, _SHIFT  # noqa: E402

CHAIN, BLOCK = 64, 16


def chains(n_blocks, seed=1):
    """n_blocks hashes as chains of CHAIN blocks (each chain a distinct prompt)."""
    rng = random.Random(seed)
    out = []
    for c in range(n_blocks // CHAIN):
        tokens = [rng.randrange(32000) for _ in range(CHAIN * BLOCK)]
        out.append(compute_block_hashes(tokens, BLOCK, ["bench"]))
    return out


def bench_cache(n, repeats):
    """(insert blocks/s, lookup µs per block: same strings, equal copies, equal copies under FIFO; blocks held)."""
    prompts = chains(n)
    blobs = [b"".join(bytes.fromhex(h) for h in hashes) for hashes in prompts]   # for equal copies, made per pass
    out = []
    for lru in (True, False):
        cache = PrefixCache(block_size=BLOCK, max_cached_blocks=n, enable_lru=lru)
        t0 = time.thread_time()
        for hashes in prompts:
            cache.insert(hashes, hashes)
        insert_s = time.thread_time() - t0

        def lookup(hashes):
            hit, tokens = cache.lookup(hashes, check_store=False)
            assert len(hit) == CHAIN

        if lru:
            out += [n / insert_s, per_block_us(lookup, prompts, repeats)]
        out.append(per_block_us(lookup, prompts, repeats, blobs))
        held = len(cache)
        del cache
    return (*out, held)


def per_block_us(lookup, prompts, repeats, blobs=None, sample_size=200):
    """Median over ``repeats`` passes of µs per block for ``lookup`` of random chains of ``prompts`` (with ``blobs``,
    each chain's hashes as bytes, of equal strings that are other objects, made for the pass in lookup order)."""
    rng = random.Random(2)
    per_block = []
    for _ in range(repeats):
        picks = [rng.randrange(len(prompts)) for _ in range(sample_size)]
        if blobs is None:
            sample = [prompts[c] for c in picks]
        else:   # equal values, other objects
            sample = [[blobs[c][i:i + 32].hex() for i in range(0, len(blobs[c]), 32)] for c in picks]
            for hashes in sample:
                deque(map(hash, hashes), 0)   # each string's hash computed and kept, as in every pass after an earlier one
        t0 = time.thread_time()
        for hashes in sample:
            lookup(hashes)
        per_block.append((time.thread_time() - t0) / (len(sample) * CHAIN) * 1e6)
    return statistics.median(per_block)


def _fresh_sample(rng, blobs, sample_size):
    """``sample_size`` random prompts' hashes as new string objects (equal to the cached ones, not the same objects),
    each string's hash computed already, as an engine's freshly computed hashes would be."""
    picks = [rng.randrange(len(blobs)) for _ in range(sample_size)]
    sample = [[blobs[c][i:i + 32].hex() for i in range(0, len(blobs[c]), 32)] for c in picks]
    for hashes in sample:
        deque(map(hash, hashes), 0)
    return sample


def bench_batched(n, repeats, chain=16, sample_size=256):
    """µs per block of ``lookup`` one chain a call against ``lookup_many`` of 8 and of 32 chains a call (LRU, chains of
    ``chain`` blocks, equal copies made per pass as in ``per_block_us``): each pass times the three in turns, each on a
    sample of its own (so none finds another's chains in the CPU's caches), in a rotating order."""
    rng = random.Random(3)
    prompts = []
    for c in range(n // chain):
        tokens = [rng.randrange(32000) for _ in range(chain * BLOCK)]
        prompts.append(compute_block_hashes(tokens, BLOCK, ["bench"]))
    blobs = [b"".join(bytes.fromhex(h) for h in hashes) for hashes in prompts]
    cache = PrefixCache(block_size=BLOCK, max_cached_blocks=n, enable_lru=True)
    for hashes in prompts:
        cache.insert(hashes, hashes)

    def single(sample):
        for hashes in sample:
            cache.lookup(hashes, check_store=False)

    def many(size):
        def run(sample):
            for k in range(0, len(sample), size):
                cache.lookup_many(sample[k:k + size], check_store=False)
        return run

    kinds = [single, many(8), many(32)]
    per_block = [[] for _ in kinds]
    for r in range(repeats):
        for k in (r + j for j in range(len(kinds))):
            k %= len(kinds)
            sample = _fresh_sample(rng, blobs, sample_size)
            t0 = time.thread_time()
            kinds[k](sample)
            per_block[k].append((time.thread_time() - t0) / (sample_size * chain) * 1e6)
    return [statistics.median(p) for p in per_block], len(cache)


PARTS = ("probe", "probe + compare", "probe + values", "probe + compare + values", "ChainTable.lookup",
         "PrefixCache.lookup")


def bench_parts(n, repeats, int_values, prompts, sample_size=200):
    """µs per block of each of PARTS (LRU, 64-block chains, equal copies made per pass as in ``per_block_us``)."""
    blobs = [b"".join(bytes.fromhex(h) for h in hashes) for hashes in prompts]
    cache = PrefixCache(block_size=BLOCK, max_cached_blocks=n, enable_lru=True)
    for k, hashes in enumerate(prompts):
        cache.insert(hashes, range(k * CHAIN, (k + 1) * CHAIN) if int_values else hashes)
    table = cache.eviction._table
    get, records = table.index.get, table._records

    def probe(ids):
        home = get(ids[0])
        return records[home >> _SHIFT], home & _MASK

    def compare(ids):
        rec, pos = probe(ids)
        assert rec.hashes[pos:pos + CHAIN] == ids

    def values(ids):
        rec, pos = probe(ids)
        return rec.values[pos:pos + CHAIN]

    def both(ids):
        rec, pos = probe(ids)
        assert rec.hashes[pos:pos + CHAIN] == ids
        return rec.values[pos:pos + CHAIN]

    def whole(ids):
        return cache.lookup(ids, check_store=False)

    kinds = [probe, compare, values, both, table.lookup, whole]
    rng = random.Random(4)
    per_block = [[] for _ in kinds]
    for r in range(repeats):
        for k in (r + j for j in range(len(kinds))):
            k %= len(kinds)
            sample = _fresh_sample(rng, blobs, sample_size)
            f = kinds[k]
            t0 = time.thread_time()
            for hashes in sample:
                f(hashes)
            per_block[k].append((time.thread_time() - t0) / (sample_size * CHAIN) * 1e6)
    return [statistics.median(p) for p in per_block], len(cache)


def parts_table(args):
    print("a 64-block LRU lookup in parts, equal copies, µs per block (CPU time, median of the passes)")
    print("| cached blocks | values | " + " | ".join(PARTS) + " |")
    print("| ---: | --- |" + " ---: |" * len(PARTS))
    for n in (int(s) for s in args.sizes.split(",")):
        prompts = chains(n)
        for int_values in (False, True):
            times, held = bench_parts(n, args.repeats, int_values, prompts)
            print(f"| {held:,} | {'ints' if int_values else 'the hashes'} | "
                  + " | ".join(f"{t:.3f}" for t in times) + " |", flush=True)


def bench_hashing():
    tokens = list(range(CHAIN * BLOCK * 16))
    t0 = time.perf_counter()
    compute_block_hashes(tokens, BLOCK, ["bench"])
    return len(tokens) / (time.perf_counter() - t0)


def bench_pool(threads, ops_per_thread):
    pool = KVPool(max_tokens=threads * 1024)
    barrier = threading.Barrier(threads + 1)

    def work():
        barrier.wait()
        for _ in range(ops_per_thread):
            pool.free(pool.alloc(num_tokens=128))

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join(timeout=300)
    elapsed = time.perf_counter() - t0
    return elapsed / (threads * ops_per_thread) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only-batched", action="store_true", help="only the lookup / lookup_many table")
    ap.add_argument("--parts", action="store_true", help="only the table of a lookup's parts")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if args.parts:
        parts_table(args)
        return
    if not args.only_batched:
        single_chain_table(args)
    batched_table(args)


def single_chain_table(args):
    print("| cached blocks | insert (blocks/s) | lookup, same strings | lookup, equal copies | lookup, copies, FIFO |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in (int(s) for s in args.sizes.split(",")):
        rate, same, copies, fifo, held = bench_cache(n, args.repeats)
        print(f"| {held:,} | {rate:,.0f} | {same:.3f} µs | {copies:.3f} µs | {fifo:.3f} µs |", flush=True)
    print(f"block hashing: {bench_hashing():,.0f} tokens/s")
    for threads in (1, 8):
        print(f"KVPool alloc+free, {threads} thread(s): {bench_pool(threads, 20000):.2f} µs per pair")


def batched_table(args):
    print()
    print("batched lookups, LRU, 16-block chains, equal copies, µs per block (CPU time, median of the passes)")
    print("| cached blocks | lookup | lookup_many of 8 | lookup_many of 32 |")
    print("| ---: | ---: | ---: | ---: |")
    first = None
    for n in (int(s) for s in args.sizes.split(",")):
        times, held = bench_batched(n, args.repeats)
        first = first or times
        print(f"| {held:,} | {times[0]:.3f} µs | {times[1]:.3f} µs | {times[2]:.3f} µs |", flush=True)
    print(f"| growth, last / first | {times[0] / first[0]:.2f}× | {times[1] / first[1]:.2f}× | {times[2] / first[2]:.2f}× |")


if __name__ == "__main__":
    main()
