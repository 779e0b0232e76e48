#!/usr/bin/python3
"""Generates tests/vectors/access_stats.json, the vector of the access statistics file, schema v1.

The accesses are a seeded random walk over 30 blocks (some hot, ties included); the expected summary is
computed by a deliberately simple reference (quadratic reuse distance: a set of the blocks seen since the
previous access), independent of kvasir.kv.profiling and of Kvasir.Prefix. Both languages read the file,
recompute the summary from "accesses" and must get the stored one. The committed file is the source of
truth: tests read it, they never regenerate it. Run from anywhere:  /usr/bin/python3 tests/vectors/gen_access_stats.py
"""
import json
import math
import os
import random

TIERS = ["engine", "dram", "disk", "shared"]


def reference_summary(accesses):
    total = len(accesses)
    hits = len([a for a in accesses if a["hit"] is True])
    counts = {}
    for a in accesses:
        counts[a["block"]] = counts.get(a["block"], 0) + 1
    distances = []
    for i, a in enumerate(accesses):
        j = i - 1
        while j >= 0 and accesses[j]["block"] != a["block"]:
            j -= 1
        if j >= 0:
            distances.append(len(set(x["block"] for x in accesses[j + 1:i])))
    distances.sort()

    def nearest_rank(p):
        if not distances:
            return None
        return float(distances[max(1, math.ceil(p / 100 * len(distances))) - 1])

    pairs = list(counts.items())
    pairs.sort(key=lambda kv: kv[0])                   # ties: block id ascending
    pairs.sort(key=lambda kv: kv[1], reverse=True)     # stable: count descending
    by_tier = {}
    for a in accesses:
        if a["hit"] and a["tier"] is not None:
            by_tier[a["tier"]] = by_tier.get(a["tier"], 0) + 1
    return {
        "total_accesses": total, "hits": hits, "misses": total - hits,
        "hit_rate": hits / total if total else 0.0,
        "unique_blocks": len(counts),
        "reuse_distance": {"count": len(distances), "p50": nearest_rank(50), "p90": nearest_rank(90),
                           "p99": nearest_rank(99)},
        "hottest": [{"block": b, "accesses": c} for b, c in pairs[:10]],
        "hits_by_tier": {t: by_tier[t] for t in TIERS if t in by_tier},
    }


def main():
    rng = random.Random(14)
    blocks = [f"blk-{i:02d}" for i in range(28)] + ["é-block-unicode", "0" * 64]
    weights = [1.0 / (i + 1) for i in range(len(blocks))]
    seen = set()
    accesses = []
    t = 0.0
    for _ in range(400):
        t = round(t + rng.choice([0.25, 0.5, 1.0, 1.5, 3.0]), 3)
        b = rng.choices(blocks, weights)[0]
        hit = b in seen and rng.random() < 0.8
        seen.add(b)
        tier = rng.choice(TIERS + [None]) if hit else None   # a hit of unknown tier: null
        accesses.append({"t": t, "block": b, "hit": hit, "tier": tier,
                         "bytes": rng.choice([None, 2097152]), "tokens": rng.choice([None, 16])})
    doc = {"schema": "kvasir-access-stats", "version": 1, "source": "python",
           "start_unix_ms": 1767225600000, "end_unix_ms": 1767225600000 + math.ceil(t), "dropped": 0,
           "accesses": accesses, "summary": reference_summary(accesses),
           "x-note": "unknown fields like this one are ignored by readers"}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "access_stats.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write("{" + ",\n ".join(f"{json.dumps(k)}: " + (
            "[\n  " + ",\n  ".join(json.dumps(a, ensure_ascii=False) for a in v) + "]" if k == "accesses"
            else json.dumps(v, ensure_ascii=False, indent=1 if k == "summary" else None)) for k, v in doc.items()) + "}\n")
    print(f"wrote {path}: {len(accesses)} accesses over {doc['summary']['unique_blocks']} blocks")


if __name__ == "__main__":
    main()
