"""Cost per block of each engine-side eviction policy in Python (kvasir.kv.PrefixCache; docs/eviction.md § The
engine side): bytes per cached block (tracemalloc while 100,000 blocks are inserted in 16-block chains), CPU ns per
block of a lookup hit of each chain, and CPU ns per block of inserting new chains into the full cache (one eviction
per block). One line per policy, as a markdown table row.

    /usr/bin/python3 bench/prefix_policies.py [--no-memory] [policy ...]   (default: all six)

--no-memory fills the cache without tracemalloc (bytes per block then not measured): while tracemalloc runs, its own
records are allocated between the cache's, which changes where the cache's objects lie and what the later timings read.
"""
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from kvasir.kv import PrefixCache  # noqa: E402

N = 100_000
CHAIN = 16


def main() -> None:
    ids = ["%016x" % (i * 0x9E3779B97F4A7C15 % (1 << 64)) + "0" * 48 for i in range(N + 16_000)]
    print("| policy | bytes per block | lookup hit, ns per block | insert evicting, ns per block |")
    print("| --- | ---: | ---: | ---: |")
    args = sys.argv[1:]
    memory = "--no-memory" not in args
    policies = [a for a in args if a != "--no-memory"] or ["lru", "fifo", "lfu", "s3fifo", "chainlfu", "chainsketch"]
    for policy in policies:
        if memory:
            tracemalloc.start()
        cache = PrefixCache(max_cached_blocks=N, policy=policy)
        base = tracemalloc.get_traced_memory()[0] if memory else 0
        for s in range(0, N, CHAIN):
            cache.insert(ids[s:s + CHAIN], list(range(CHAIN)))
        used = tracemalloc.get_traced_memory()[0] - base if memory else float("nan")
        if memory:
            tracemalloc.stop()
        t = time.process_time()
        for s in range(0, N, CHAIN):
            cache.lookup(ids[s:s + CHAIN], check_store=False)
        look = (time.process_time() - t) / N * 1e9
        t = time.process_time()
        for s in range(N, N + 16_000, CHAIN):
            cache.insert(ids[s:s + CHAIN], list(range(CHAIN)))
        ins = (time.process_time() - t) / 16_000 * 1e9
        print(f"| {policy} | {used / N:.0f} | {look:.0f} | {ins:.0f} |", flush=True)


if __name__ == "__main__":
    main()
