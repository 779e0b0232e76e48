#!/usr/bin/python3
"""Which layout makes a Python prefix-cache lookup cheapest per block, and flattest from 1k to 1M cached blocks?

The kernels below are the lookup of a 64-block cached chain (find the longest cached prefix, fetch its values,
move its blocks to the back of the LRU order, tail first), each on its own data structure, without the rest of
PrefixCache (lock, counters, result object), so only the layout differs:

  per-block calls   the old kvasir.kv layout: a dict of values and a policy's OrderedDict of order, a Python loop
                    and two method calls per block (manager.record_access -> policy.access -> move_to_end)
  two tables, C     the same two tables, every per-block step in C (map/takewhile/move_to_end)
  one table, C      one OrderedDict holding values in LRU order, every per-block step in C: what kvasir.kv does now
  one table, loop   one OrderedDict, a Python loop of dict.get, move_to_end in C
  hex -> int        not a lookup: only turning each 64-hex-char hash into an int, the first step any numpy
                    (vectorised) probing would need per block before touching a table
  no LRU move       one table, C, without the move: the floor of the dict probes alone (a FIFO hit)
  stamp queue, counts   a plain dict of values; a hit appends its ids to a deque (the access log, oldest first) and
                    counts each id's entries in it (Counter.update, in C): an id whose count drops to 0 as the front
                    is popped is the least recent, so eviction pops lazily. Only the hit path is timed here (no
                    eviction, no compaction): a lower bound of that design's lookup.
  stamp queue, stamps   the same with (id, stamp) pairs in the deque and each id's last stamp in a second dict
  pop + reinsert    a plain dict whose insertion order is the LRU order: a hit pops each id and sets it again (C),
                    which moves it to the dict's end; eviction would have to skip the holes at the front

--copies looks the chains up by equal strings that are other objects (as an engine that hashes each request again
passes them; bench/prefix_bench.py's "equal copies"), so every probe also reads the stored key's characters.
Usage: /usr/bin/python3 bench/prefix_alternatives.py [--sizes 1000,100000,1000000] [--repeats 5] [--copies]
"""
import argparse
import hashlib
import os
import random
import statistics
import sys
from collections import Counter, OrderedDict, deque
from itertools import count, repeat, takewhile
from operator import eq, truth

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prefix_bench import CHAIN, per_block_us  # noqa: E402


def chains(n_blocks):
    rng = random.Random(1)
    return [[hashlib.sha256(rng.randbytes(16)).hexdigest() for _ in range(CHAIN)] for _ in range(n_blocks // CHAIN)]


class _Policy:
    def __init__(self):
        self.order = OrderedDict()

    def access(self, h):
        if h in self.order:
            self.order.move_to_end(h)


class _Manager:
    def __init__(self):
        self.policy = _Policy()

    def record_access(self, h, hit):
        if hit:
            self.policy.access(h)


def per_block_calls(prompts):
    blocks, manager = {}, _Manager()
    for c in prompts:
        for h in reversed(c):
            blocks[h] = h
            manager.policy.order[h] = None

    def lookup(c):
        n = 0
        while n < len(c) and c[n] in blocks:
            n += 1
        hit = [blocks[h] for h in c[:n]]
        for h in reversed(c[:n]):
            manager.record_access(h, True)
        return hit
    return lookup


def _c_lookup(values, order):
    """The longest cached prefix with every per-block step in C: values from ``values``, LRU moves in ``order``."""
    def lookup(c):
        hit_ids = list(takewhile(values.__contains__, c))
        hit = list(map(values.__getitem__, hit_ids))
        deque(map(order.move_to_end, reversed(hit_ids)), 0)
        return hit
    return lookup


def two_tables_c(prompts):
    blocks, order = {}, OrderedDict()
    for c in prompts:
        for h in reversed(c):
            blocks[h] = h
            order[h] = None
    return _c_lookup(blocks, order)


def _one_table(prompts, kind=OrderedDict):
    held = kind()
    for c in prompts:
        for h in reversed(c):
            held[h] = h
    return held


def one_table_c(prompts):
    held = _one_table(prompts)
    return _c_lookup(held, held)


def one_table_loop(prompts):
    held = _one_table(prompts)
    get, miss = held.get, object()

    def lookup(c):
        hit = []
        for h in c:
            v = get(h, miss)
            if v is miss:
                break
            hit.append(v)
        deque(map(held.move_to_end, reversed(c[:len(hit)])), 0)
        return hit
    return lookup


def hex_to_int(prompts):
    return lambda c: [int(h[:16], 16) for h in c]


def no_lru_move(prompts):
    held = _one_table(prompts)

    def lookup(c):
        return list(map(held.__getitem__, takewhile(held.__contains__, c)))
    return lookup


def _plain_table(prompts):
    return _one_table(prompts, dict)


def stamp_queue_counts(prompts):
    held = _plain_table(prompts)
    log, counts = deque(held), Counter(held.keys())

    def lookup(c):
        hit_ids = list(takewhile(held.__contains__, c))
        hit = list(map(held.__getitem__, hit_ids))
        hit_ids.reverse()
        log.extend(hit_ids)
        counts.update(hit_ids)
        return hit
    return lookup


def stamp_queue_stamps(prompts):
    held = _plain_table(prompts)
    stamps = dict.fromkeys(held, 0)
    log, clock = deque(stamps.items()), count(1)

    def lookup(c):
        hit_ids = list(takewhile(held.__contains__, c))
        hit = list(map(held.__getitem__, hit_ids))
        entries = list(zip(reversed(hit_ids), clock))
        log.extend(entries)
        stamps.update(entries)
        return hit
    return lookup


def pop_reinsert(prompts):
    held = _plain_table(prompts)

    def lookup(c):
        hit_ids = list(takewhile(held.__contains__, c))
        hit = list(map(held.__getitem__, hit_ids))
        hit_ids.reverse()
        held.update(zip(hit_ids, map(held.pop, hit_ids)))
        return hit
    return lookup


class _Record:
    """One inserted chain: its hashes and values in chain order, and per position the touch (event) that last ordered
    it (the per-record layout of kvasir.kv since session 12)."""
    __slots__ = ("hashes", "values", "owner")

    def __init__(self, hashes):
        self.hashes = list(hashes)
        self.values = list(hashes)
        ev = (self, 0, len(hashes))
        self.owner = [ev] * len(hashes)


def _records(prompts):
    index, log = {}, deque()
    for c in prompts:
        rec = _Record(c)
        log.append(rec.owner[0])
        index.update(zip(c, zip(repeat(rec), range(len(c)))))
    return index, log


def records(prompts, move=True):
    index, log = _records(prompts)
    get = index.get

    def lookup(c):
        out, runs, i, n = [], [], 0, len(c)
        while i < n:
            e = get(c[i])
            if e is None:
                break
            rec, pos = e
            hs = rec.hashes
            m = min(n - i, len(hs) - pos)
            if hs[pos:pos + m] == c[i:i + m]:
                k = m
            else:
                k = len(list(takewhile(truth, map(eq, hs[pos:pos + m], c[i:i + m]))))
            out += rec.values[pos:pos + k]
            runs.append((rec, pos, pos + k))
            i += k
        if move:
            for run in reversed(runs):
                rec, lo, hi = run
                rec.owner[lo:hi] = [run] * (hi - lo)
                log.append(run)
        return out
    return lookup


def records_no_move(prompts):
    return records(prompts, move=False)


KERNELS = [("per-block calls (old)", per_block_calls), ("two tables, C", two_tables_c), ("one table, C (kept)", one_table_c),
           ("one table, loop", one_table_loop), ("hex -> int only", hex_to_int), ("no LRU move", no_lru_move),
           ("stamp queue, counts", stamp_queue_counts), ("stamp queue, stamps", stamp_queue_stamps),
           ("pop + reinsert", pop_reinsert),
           ("records, touch per run", records), ("records, no move", records_no_move)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", action="store_true", help="look up by equal strings that are other objects")
    ap.add_argument("--only", default="", help="comma-separated name parts: only the kernels whose name has one")
    args = ap.parse_args()
    parts = [p for p in args.only.split(",") if p]
    kernels = [k for k in KERNELS if not parts or any(p in k[0] for p in parts)]
    print("| cached blocks | " + " | ".join(name for name, _ in kernels) + " |  (µs per block, median)")
    print("| ---: |" + " ---: |" * len(kernels))
    for n in (int(s) for s in args.sizes.split(",")):
        prompts = chains(n)
        # equal copies are made for each pass from the hashes' bytes, in lookup order (as bench/prefix_bench.py does)
        blobs = [b"".join(bytes.fromhex(h) for h in c) for c in prompts] if args.copies else None
        lookups = [make(prompts) for _, make in kernels]   # all built first, then timed in turns: the
        runs = [[] for _ in kernels]                       # machine's noise falls on every kernel alike
        for _ in range(args.repeats):
            for i, lookup in enumerate(lookups):
                runs[i].append(per_block_us(lookup, prompts, 1, blobs, sample_size=500))
        del lookups
        print(f"| {n:,} | " + " | ".join(f"{statistics.median(r):.3f}" for r in runs) + " |", flush=True)


if __name__ == "__main__":
    main()
