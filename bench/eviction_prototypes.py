#!/usr/bin/env python3
"""Python prototypes of eviction policies on a Mooncake trace (issue 17; results in docs/eviction.md).

The same request model as `kvasir bench --trace FILE --simulate` (src/Kvasir.Cli/Bench/Trace/TraceSimulator.cs): a
request hits the longest resident prefix of its chain, reads it, and stores the rest as a chain whose parent is the
preceding block; the cache holds a number of blocks. Close to, but not bit-exact with, the C# simulator (which runs
the node's store): `lru` and `chainlfu` here give the C# numbers to 0.1 point. Every policy sees only what a store
sees when it acts (keys, chain links, its own reads and inserts, the hit prefix of the request being stored); only
`oracle-*` looks at the future, to measure how good a reuse predictor would have to be.

    /usr/bin/python3 bench/eviction_prototypes.py --capacity 1,5,10,25,50 --policy lru,chainlfu,lhd-hits
    /usr/bin/python3 bench/eviction_prototypes.py --list
    /usr/bin/python3 bench/eviction_prototypes.py --predictors

Pure Python, one thread: about 5-60 s per policy and capacity (the sampled policies are the slow ones).
"""
import argparse
import heapq
import json
import random
import sys
import zlib
from collections import OrderedDict, defaultdict


def load(path):
    """The trace's records; exits with one line naming the file when it is unreadable."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"--trace {path}: not a readable Mooncake JSONL trace ({e})")


class Cache:
    """Resident blocks and their chain links (parent, live-child counts), as KvArenaStore keeps them."""

    def run(self, requests, pol, cap):
        self.res, self.parent, self.kids = set(), {}, {}
        pol.sim = self
        hits = blocks = 0
        for ri, (_, chain) in enumerate(requests):
            pol.begin(ri, chain)
            k = 0
            while k < len(chain) and chain[k] in self.res:
                k += 1
            for i in range(k):
                pol.access(chain[i])
            pol.k = k
            for i in range(k, len(chain)):
                b = chain[i]
                if b in self.res:   # resident behind a missing block: an overwrite
                    self.set_parent(b, chain[i - 1] if i > 0 else None, pol)
                    pol.access(b)
                    continue
                while len(self.res) >= cap:
                    self.evict(pol.victim(), pol)
                self.res.add(b)
                self.kids[b], self.parent[b] = 0, None
                self.set_parent(b, chain[i - 1] if i > 0 else None, pol)
                pol.pos = i
                pol.insert(b)
            blocks += len(chain)
            hits += k
        return hits / blocks

    def set_parent(self, b, p, pol):
        p = p if p in self.res else None
        old = self.parent.get(b)
        if old == p:
            return
        self._unlink(old, pol)
        self.parent[b] = p
        if p is not None:
            self.kids[p] += 1
            if self.kids[p] == 1:
                pol.kids_changed(p)

    def _unlink(self, p, pol):
        if p is not None and p in self.res:
            self.kids[p] -= 1
            if self.kids[p] == 0:
                pol.kids_changed(p)

    def evict(self, v, pol):
        self.res.discard(v)
        pol.remove(v)
        self._unlink(self.parent.get(v), pol)
        del self.kids[v]

    def orphan(self, b):
        p = self.parent.get(b)
        return p is not None and p not in self.res


class Policy:
    k = pos = 0

    def begin(self, ri, chain):
        pass

    def kids_changed(self, b):
        pass

    def remove(self, b):
        pass


class Lru(Policy):
    def __init__(self):
        self.order = OrderedDict()

    def access(self, b):
        self.order.move_to_end(b)

    def insert(self, b):
        self.order[b] = 1

    def victim(self):
        return self.order.popitem(last=False)[0]

    def remove(self, b):
        self.order.pop(b, None)


class HeapPolicy(Policy):
    """A min-heap of (priority, stamp, block) with lazy deletion: the newest entry of a block is its place."""

    def __init__(self):
        self.heap, self.cur, self.clock = [], {}, 0

    def push(self, b, prio):
        self.clock += 1
        self.cur[b] = (prio, self.clock)
        heapq.heappush(self.heap, (prio, self.clock, b))

    def pop(self):
        while True:
            prio, stamp, b = heapq.heappop(self.heap)
            if self.cur.get(b) == (prio, stamp):
                del self.cur[b]
                return b, prio

    def remove(self, b):
        self.cur.pop(b, None)


class ChainLfu(HeapPolicy):
    """chainlfu as in ChainLfuPolicy.cs (LFU-DA, value 1 + reads (cap 8) + 1 with a child, 0 orphaned), with knobs:
    w: weight of a read; depth/depth_pen: unread blocks at chain position >= depth lose depth_pen;
    cont_k/cont_pen: unread blocks stored by a request that hit >= cont_k blocks lose cont_pen;
    superseded: a block's older unread leaf children are worth 0 once it gains a new child;
    sticky: share of conversations (a coin on a first turn's first new block, inherited down the chain; with
    promote, a continuation's blocks are favoured) whose unread blocks keep their value, the others lose 1;
    adaptive (with cont_k): the continuation penalty moves by `adaptive` (between 0 and 2) against the misses it
    caused: a block stored again that was evicted while penalised lowers it, one evicted without the penalty raises
    it, each by its share of the last `cap` evictions (ARC-like; a ghost FIFO of those keys and whether they were
    penalised)."""

    def __init__(self, maxf=8, w=1.0, depth=None, depth_pen=1, cont_k=None, cont_pen=1, superseded=False,
                 sticky=None, promote=False, adaptive=None, cap=0):
        super().__init__()
        self.adaptive, self.cap, self.ghost, self.ghost_penalised = adaptive, cap, OrderedDict(), 0
        self.age = 0
        self.f, self.depth, self.cont, self.fav, self.dead = {}, {}, {}, {}, set()
        self.children = defaultdict(list)
        self.maxf, self.w, self.dmin, self.dpen, self.cont_k, self.cont_pen = maxf, w, depth, depth_pen, cont_k, cont_pen
        self.superseded, self.sticky, self.promote = superseded, sticky, promote

    def value(self, b):
        if self.sim.orphan(b) or b in self.dead:
            return 0
        f = self.f[b]
        v = 1 + self.w * f + (1 if self.sim.kids[b] > 0 else 0)
        if f == 0:
            if self.dmin is not None and self.depth[b] >= self.dmin:
                v -= self.dpen
            if self.cont_k is not None and self.cont[b]:
                v -= self.cont_pen
            if self.sticky is not None and not self.fav[b]:
                v -= 1
        return v

    def place(self, b):
        self.push(b, self.age + self.value(b))

    def insert(self, b):
        self.f[b], self.depth[b], self.cont[b] = 0, self.pos, self.cont_k is not None and self.k >= self.cont_k
        penalised = self.ghost.pop(b, None) if self.adaptive is not None else None
        if penalised is not None:
            self.ghost_penalised -= penalised
            share = max(self.ghost_penalised + penalised, 1) / (len(self.ghost) + 1)
            if penalised:
                self.cont_pen = max(0.0, self.cont_pen - self.adaptive / share)
            else:
                self.cont_pen = min(2.0, self.cont_pen + self.adaptive / max(1 - share, 1e-3))
        p = self.sim.parent.get(b)
        if self.sticky is not None:
            coin = zlib.crc32(b.to_bytes(8, "little")) % 1000 < self.sticky * 1000
            if (self.k <= 1 and self.pos == self.k) or p not in self.fav:
                self.fav[b] = coin
            else:
                self.fav[b] = self.fav[p] or (self.promote and self.pos == self.k)
        if self.superseded and p is not None:
            for c in self.children[p]:
                if c in self.cur and self.sim.kids[c] == 0 and self.f[c] == 0 and c not in self.dead:
                    self.dead.add(c)
                    self.push(c, self.age)
            self.children[p] = [c for c in self.children[p] if c in self.cur] + [b]
        self.place(b)

    def access(self, b):
        self.dead.discard(b)
        self.f[b] = min(self.f[b] + 1, self.maxf)
        self.place(b)

    def kids_changed(self, b):
        if b in self.cur:
            prio, stamp = self.cur[b]
            prio += 1 if self.sim.kids[b] > 0 else -1
            self.cur[b] = (prio, stamp)
            heapq.heappush(self.heap, (prio, stamp, b))

    def victim(self):
        b, prio = self.pop()
        self.age = max(self.age, prio)
        if self.adaptive is not None:
            penalised = 1 if self.cont[b] and self.f[b] == 0 else 0
            self.ghost[b] = penalised
            self.ghost_penalised += penalised
            if len(self.ghost) > self.cap:
                self.ghost_penalised -= self.ghost.popitem(last=False)[1]
        return b

    def remove(self, b):
        super().remove(b)
        self.dead.discard(b)
        for d in (self.f, self.depth, self.cont, self.fav):
            d.pop(b, None)


class SampledLeaves(Policy):
    """Only chain leaves are candidates (what survives of a chain is a prefix); a victim is the least dense of
    `sample` random leaves (orphans first). Clock: blocks stored. Density:
    lhd: learned hit density (LHD): per class, hits and evictions by age since the last access (buckets of cap/nb
      stored blocks, nbuckets of them) give expected hits / expected remaining space-time; recomputed every
      max(1000, cap) events, old counts decayed by `decay`;
    hyper: hyperbolic, (1 + reads) / (1 + blocks stored since the slot's insert);
    hyper-ret: (1 + a * min(reads, maxh (default: no cap))) / (1 + blocks stored since the slot's last access)."""

    def __init__(self, cap, kind, classf=None, sample=32, nb=32, nbuckets=512, decay=0.9, a=1.0, maxh=1 << 30, seed=1):
        self.kind, self.sample, self.a, self.maxh = kind, sample, a, maxh
        self.w, self.nb, self.decay = max(1, cap // nb), nbuckets, decay
        self.classf = classf or (lambda s, b: 0)
        self.period, self.events = max(1000, cap), 0
        self.H = [[0.0] * nbuckets for _ in range(16)]
        self.E = [[0.0] * nbuckets for _ in range(16)]
        self.D = [[1.0 / (1 + a) for a in range(nbuckets)] for _ in range(16)]
        self.rng = random.Random(seed)
        self.leaves, self.idx, self.last, self.born, self.hits, self.depth, self.clock = [], {}, {}, {}, {}, {}, 0

    def age(self, b):
        return min((self.clock - self.last[b]) // self.w, self.nb - 1)

    def insert(self, b):
        self.clock += 1
        self.last[b] = self.born[b] = self.clock
        self.hits[b] = 0
        self.depth[b] = self.pos
        if self.sim.kids[b] == 0:
            self._add(b)

    def access(self, b):
        if self.kind == "lhd":
            c, a = self.classf(self, b), self.age(b)
            self.H[c][a] += 1
            self.E[c][a] += 1
            self._tick()
        self.hits[b] += 1
        self.last[b] = self.clock

    def density(self, b):
        if self.sim.orphan(b):
            return -1.0
        if self.kind == "lhd":
            return self.D[self.classf(self, b)][self.age(b)]
        if self.kind == "hyper":
            return (1 + self.hits[b]) / (1 + self.clock - self.born[b])
        return (1 + self.a * min(self.hits[b], self.maxh)) / (1 + self.clock - self.last[b])

    def victim(self):
        n = len(self.leaves)
        best = min((self.leaves[self.rng.randrange(n)] for _ in range(self.sample)), key=self.density)
        if self.kind == "lhd":
            self.E[self.classf(self, best)][self.age(best)] += 1
            self._tick()
        return best

    def _tick(self):
        self.events += 1
        if self.events < self.period:
            return
        self.events = 0
        for c in range(16):
            H, E, D = self.H[c], self.E[c], self.D[c]
            if sum(E) == 0:
                continue
            hits = ends = life = 0.0
            for a in range(self.nb - 1, -1, -1):
                hits += H[a]
                ends += E[a]
                life += ends   # sum over later ages x of (x - a + 1) * events(x): the expected remaining life
                D[a] = hits / life if life > 0 else 0.0
            for a in range(self.nb):
                H[a] *= self.decay
                E[a] *= self.decay

    def _add(self, b):
        if b not in self.idx:
            self.idx[b] = len(self.leaves)
            self.leaves.append(b)

    def _drop(self, b):
        i = self.idx.pop(b, None)
        if i is None:
            return
        last = self.leaves.pop()
        if i < len(self.leaves):
            self.leaves[i] = last
            self.idx[last] = i

    def kids_changed(self, b):
        if self.sim.kids[b] > 0:
            self._drop(b)
        else:
            self._add(b)

    def remove(self, b):
        self._drop(b)
        for d in (self.last, self.born, self.hits, self.depth):
            d.pop(b, None)


class Oracle(HeapPolicy):
    """Not online: LRU by request (a request's blocks tail first) where the blocks a request stores are labelled
    "likely" with probability acc when any of them is read again later and 1 - acc otherwise (per block instead with
    per_block); unlikely blocks are `penalty` requests older than their stamp (evicted first). Measures how accurate a
    reuse predictor must be."""

    def __init__(self, requests, acc, penalty=10**9, per_block=False, seed=7):
        self.acc, self.penalty, self.per_block, self.rng = acc, penalty, per_block, random.Random(seed)
        self.last_use = {}
        for ri, (_, chain) in enumerate(requests):
            for b in chain:
                self.last_use[b] = ri
        super().__init__()

    def _label(self, reused):
        return self.rng.random() < self.acc if reused else self.rng.random() >= self.acc

    def begin(self, ri, chain):
        self.ri, self.chain, self.request_label = ri, chain, None

    def access(self, b):
        self.push(b, (self.ri, -self.chain.index(b)))

    def insert(self, b):
        if self.request_label is None:   # the request's first stored block: are any of the blocks it stores read again?
            self.request_label = self._label(any(self.last_use[c] > self.ri for c in self.chain[self.k:]))
        likely = self._label(self.last_use[b] > self.ri) if self.per_block else self.request_label
        self.push(b, (self.ri - (0 if likely else self.penalty), -self.pos))

    def victim(self):
        return self.pop()[0]


def hits_class(s, b):
    return min(s.hits[b], 3)


POLICIES = {
    "lru": lambda cap, req: Lru(),
    "chainlfu": lambda cap, req: ChainLfu(),
    "chainlfu-maxf4": lambda cap, req: ChainLfu(maxf=4),
    "chainlfu-maxf16": lambda cap, req: ChainLfu(maxf=16),
    "chainlfu-w2": lambda cap, req: ChainLfu(w=2),
    "chainlfu-w0.5": lambda cap, req: ChainLfu(w=0.5),
    "chainlfu-depth128": lambda cap, req: ChainLfu(depth=128),
    "chainlfu-depth64": lambda cap, req: ChainLfu(depth=64),
    "chainlfu-depth32": lambda cap, req: ChainLfu(depth=32),
    "chainlfu-cont8": lambda cap, req: ChainLfu(cont_k=8),
    "chainlfu-cont4": lambda cap, req: ChainLfu(cont_k=4),
    "chainlfu-cont16": lambda cap, req: ChainLfu(cont_k=16),
    "chainlfu-cont8-pen2": lambda cap, req: ChainLfu(cont_k=8, cont_pen=2),
    "chainlfu-cont8-adaptive": lambda cap, req: ChainLfu(cont_k=8, adaptive=0.01, cap=cap),
    "chainlfu-cont8-adaptive.001": lambda cap, req: ChainLfu(cont_k=8, adaptive=0.001, cap=cap),
    "chainlfu-superseded": lambda cap, req: ChainLfu(superseded=True),
    "chainlfu-sticky70": lambda cap, req: ChainLfu(sticky=0.7, promote=True),
    "chainlfu-sticky50": lambda cap, req: ChainLfu(sticky=0.5),
    "chainlfu-sticky50-promote": lambda cap, req: ChainLfu(sticky=0.5, promote=True),
    "lhd-1class": lambda cap, req: SampledLeaves(cap, "lhd"),
    "lhd-hits": lambda cap, req: SampledLeaves(cap, "lhd", classf=hits_class),
    "lhd-hits-depth": lambda cap, req: SampledLeaves(cap, "lhd", classf=lambda s, b: hits_class(s, b) * 4 + min(s.depth[b] // 32, 3)),
    "hyper": lambda cap, req: SampledLeaves(cap, "hyper"),
    "hyper-ret": lambda cap, req: SampledLeaves(cap, "hyper-ret"),
    "hyper-ret-a2": lambda cap, req: SampledLeaves(cap, "hyper-ret", a=2, maxh=8),
    "hyper-ret-max2": lambda cap, req: SampledLeaves(cap, "hyper-ret", maxh=2),
}
for _acc in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
    POLICIES[f"oracle-request-{_acc}"] = lambda cap, req, acc=_acc: Oracle(req, acc)
    POLICIES[f"oracle-block-{_acc}"] = lambda cap, req, acc=_acc: Oracle(req, acc, per_block=True)


def predictors(path):
    """How well what a store sees when a request stores blocks predicts that any of them is read again (in an unlimited
    cache): for each feature set, the best balanced accuracy (mean of the true-positive and true-negative rates, by
    blocks) of ranking the feature buckets by their reuse rate. In-sample, so an upper bound for a store's predictor."""
    full = load(path)
    last_use = {}
    for ri, o in enumerate(full):
        for b in o["hash_ids"]:
            last_use[b] = ri
    seen, last_request, turn, rows = set(), {}, {}, []
    for ri, o in enumerate(full):
        ts, chain = o["timestamp"], o["hash_ids"]
        k = 0
        while k < len(chain) and chain[k] in seen:
            k += 1
        if k < len(chain):
            if k <= 1:   # a first turn: nothing but the shared first block was seen
                turn[ri], gap = 0, -1
            else:
                pr = last_request[chain[k - 1]]
                turn[ri], gap = turn.get(pr, 0) + 1, (ts - full[pr]["timestamp"]) / 1000
            rows.append({
                "reused": any(last_use[b] > ri for b in chain[k:]), "blocks": len(chain) - k,
                "turn": min(turn[ri], 4), "length": min(len(chain).bit_length(), 8),
                "new": min((len(chain) - k).bit_length(), 8), "gap": min(int(gap + 1).bit_length(), 11) if gap >= 0 else -1,
                "output (engine only)": min(o["output_length"].bit_length(), 12)})
        for b in chain:
            seen.add(b)
            last_request[b] = ri
    print(f"{len(rows)} requests store blocks; {sum(r['reused'] for r in rows) / len(rows):.2f} of them are read again")
    for keys in (["turn"], ["length"], ["new"], ["gap"], ["output (engine only)"], ["turn", "length", "gap"],
                 ["turn", "length", "new", "gap"], ["turn", "length", "new", "gap", "output (engine only)"]):
        buckets = defaultdict(lambda: [0, 0])
        for r in rows:
            bucket = buckets[tuple(r[x] for x in keys)]
            bucket[0] += r["blocks"]
            bucket[1] += r["blocks"] if r["reused"] else 0
        pos = sum(v[1] for v in buckets.values())
        neg = sum(v[0] - v[1] for v in buckets.values())
        tp = fp = best = 0
        for total, reused in sorted(buckets.values(), key=lambda v: -v[1] / v[0]):
            tp, fp = tp + reused, fp + total - reused
            best = max(best, 0.5 * (tp / pos + 1 - fp / neg))
        print(f"{' + '.join(keys):60s} {best:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", default="../shared/traces/mooncake-conversation.jsonl")
    ap.add_argument("--capacity", default="1,5,10,25,50", help="percentages of the trace's unique blocks")
    ap.add_argument("--policy", default="lru,chainlfu")
    ap.add_argument("--list", action="store_true", help="print the policy names and exit")
    ap.add_argument("--predictors", action="store_true", help="how well a store's signals predict reuse, and exit")
    args = ap.parse_args()
    if args.predictors:
        predictors(args.trace)
        return 0
    if args.list:
        print("\n".join(POLICIES))
        return 0
    names = args.policy.split(",")
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        print(f"--policy: {', '.join(unknown)} unknown (--list shows the names)", file=sys.stderr)
        return 2
    try:
        caps = [float(c.rstrip("%")) for c in args.capacity.split(",")]
    except ValueError:
        print(f"--capacity: '{args.capacity}' is not a list of percentages like 1,5,10", file=sys.stderr)
        return 2
    requests = [(o["timestamp"], o["hash_ids"]) for o in load(args.trace)]
    unique = len({b for _, chain in requests for b in chain})
    print(f"{'policy':28s}" + "".join(f"{c:>8g}%" for c in caps), flush=True)
    for name in names:
        rates = [Cache().run(requests, POLICIES[name](max(1, int(unique * c / 100)), requests), max(1, int(unique * c / 100)))
                 for c in caps]
        print(f"{name:28s}" + "".join(f"{100 * r:8.2f} " for r in rates), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
