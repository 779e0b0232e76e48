#!/usr/bin/python3
"""Does anything in CPython overlap the dict probes of many chains looked up together? (issue 14, session 9)

Three kernels over one OrderedDict of 16-block chains (hash strings of block hash v1; equal copies as an engine passes
them, made per pass in lookup order), each finding the cached prefix of a batch of 32 chains, probes only (no values,
no LRU moves): "per chain" is what ``lookup_prefixes`` does (``takewhile(contains)`` per chain); "firsts staged" probes
every chain's first block in one ``map`` first, then walks the chains whose first block is held; "flat" probes every
block of the batch in one ``map`` and cuts each chain at its first miss. ns per block (CPU time, medians of the passes,
kernels in turns). Usage: /usr/bin/python3 bench/prefix_batch_kernels.py
"""
import os
import random
import statistics
import sys
import time
from collections import OrderedDict, deque
from itertools import chain, takewhile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from kvasir.kv import compute_block_hashes  # noqa: E402

CHAIN, BLOCK = 16, 16


def run(n, repeats=7, batch=32, sample=512):
    """ns per block of each kernel with n blocks cached."""
    rng = random.Random(1)
    prompts = [compute_block_hashes([rng.randrange(32000) for _ in range(CHAIN * BLOCK)], BLOCK, ["x"])
               for _ in range(n // CHAIN)]
    blobs = [b"".join(bytes.fromhex(h) for h in p) for p in prompts]
    held = OrderedDict()
    for p in prompts:
        for h in reversed(p):
            held[h] = h
    contains = held.__contains__

    def per_chain(chains):
        return [list(takewhile(contains, ids)) for ids in chains]

    def firsts_staged(chains):
        firsts = list(map(contains, [c[0] for c in chains]))
        return [list(takewhile(contains, ids)) if f else [] for ids, f in zip(chains, firsts)]

    def flat(chains):
        flags = list(map(contains, chain.from_iterable(chains)))
        out, at = [], 0
        for ids in chains:
            try:
                m = flags.index(False, at, at + len(ids)) - at
            except ValueError:
                m = len(ids)
            out.append(ids[:m])
            at += len(ids)
        return out

    kernels = [per_chain, firsts_staged, flat]
    times = [[] for _ in kernels]
    for r in range(repeats):
        for j in range(len(kernels)):
            k = (r + j) % len(kernels)
            picks = [rng.randrange(len(prompts)) for _ in range(sample)]
            queries = [[blobs[c][i:i + 32].hex() for i in range(0, len(blobs[c]), 32)] for c in picks]
            for hashes in queries:
                deque(map(hash, hashes), 0)
            t0 = time.thread_time()
            for q in range(0, sample, batch):
                kernels[k](queries[q:q + batch])
            times[k].append((time.thread_time() - t0) / (sample * CHAIN) * 1e9)
    return [statistics.median(t) for t in times]


if __name__ == "__main__":
    print("| cached blocks | per chain | firsts staged | flat |")
    print("| ---: | ---: | ---: | ---: |")
    for n in (1000, 100_000, 1_000_000):
        print(f"| {n:,} | " + " | ".join(f"{t:.1f}" for t in run(n)) + " |", flush=True)
