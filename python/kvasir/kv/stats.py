"""``kvasir-stats`` / ``python -m kvasir.kv.stats``: access statistics files (schema v1) from Python.

  demo --num-accesses N --output FILE [--seed S]   a synthetic engine workload (Zipf-shared system prompts,
                                                   multi-turn conversations) through a PrefixCache
  summary --input FILE [--json]                    the summary, recomputed from the accesses
  visualize --input FILE --output PNG [--type heatmap|timeline|reuse|hitrate|all] [--summary]
                                                   runs ``kvasir stats visualize``: each plot has one
                                                   implementation, in the .NET CLI

The CLI is looked up in this order: $KVASIR_BIN, ./kvasir at the repository root (a source checkout), then
``kvasir`` on PATH. Exit codes: 0 done, 1 failure (message on stderr), 2 usage.
"""
import argparse
import json
import os
import random
import subprocess
import sys
from typing import List, Optional

from .. import node_binary
from .errors import ConfigMissingError, KVCacheError
from .prefix_cache import PrefixCache
from .profiling import AccessStatsCollector, read_stats, summarize

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def find_cli() -> List[str]:
    """The command prefix of the kvasir CLI; ConfigMissingError naming the three places looked at."""
    command, why = node_binary.locate(checkout_first=True, repo=_REPO)
    if command is None:
        raise ConfigMissingError(why, {"KVASIR_BIN": os.environ.get("KVASIR_BIN"), "repo_cli": os.path.join(_REPO, "kvasir"),
                                       "path": os.environ.get("PATH", "")})
    return command


def demo(num_accesses: int, seed: int = 1, block_size: int = 16, engine_blocks: int = 256) -> AccessStatsCollector:
    """A synthetic workload recorded block by block: conversations whose first turn starts with one of 20
    system prompts drawn by Zipf(1.1), each turn appending the reply and a new user message. Blocks the
    engine's PrefixCache (LRU, ``engine_blocks``) has are "engine" hits; evicted blocks already computed once
    are found on the node ("dram", or "disk" for the oldest third); the rest are misses, computed and cached."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(32000) for _ in range(block_size * rng.randint(2, 12))] for _ in range(20)]
    weights = [1.0 / (k + 1) ** 1.1 for k in range(len(prompts))]
    collector = AccessStatsCollector(max_events=max(1, num_accesses))
    cache = PrefixCache(block_size=block_size, max_cached_blocks=engine_blocks)
    on_node = {}   # hash -> time first saved
    conversations = []
    t = 0.0
    while collector.total_recorded < num_accesses:
        if not conversations or rng.random() < 0.3 or len(conversations) < 4:
            p = rng.choices(range(len(prompts)), weights)[0]
            conversations.append(list(prompts[p]) + [rng.randrange(32000) for _ in range(rng.randint(8, 80))])
            if len(conversations) > 12:
                conversations.pop(0)
        conv = rng.choice(conversations)
        hashes = cache.compute_block_hashes(conv)
        found = cache.lookup(hashes, check_store=False)
        n_local = len(found.hit_hashes)
        for k, h in enumerate(hashes):
            if collector.total_recorded >= num_accesses:
                break
            t += rng.uniform(0.05, 0.4)
            if k < n_local:
                collector.record_access(h, True, t=t, tier="engine", bytes=block_size * 131072, tokens=block_size)
            elif h in on_node:
                tier = "disk" if on_node[h] < t * 0.33 else "dram"
                collector.record_access(h, True, t=t, tier=tier, bytes=block_size * 131072, tokens=block_size)
            else:
                collector.record_access(h, False, t=t, tokens=block_size)
                on_node[h] = t
        cache.insert(hashes, hashes)
        t += rng.uniform(5, 50)   # the decode of the reply
        conv += [rng.randrange(32000) for _ in range(rng.randint(20, 120))]   # reply + next user message
    return collector


def _print_summary(s: dict, out=sys.stdout) -> None:
    rd = s["reuse_distance"]
    print(f"accesses {s['total_accesses']}  hits {s['hits']}  misses {s['misses']}  hit rate {s['hit_rate']:.3f}", file=out)
    print(f"unique blocks {s['unique_blocks']}  reuse distance (n={rd['count']}) p50 {rd['p50']} p90 {rd['p90']} p99 {rd['p99']}", file=out)
    print("hits by tier: " + (", ".join(f"{k} {v}" for k, v in s["hits_by_tier"].items()) or "none"), file=out)
    for h in s["hottest"]:
        print(f"  {h['accesses']:6d}  {h['block']}", file=out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="kvasir-stats", description="Kvasir access statistics (schema v1)")
    sub = ap.add_subparsers(dest="verb", required=True)
    d = sub.add_parser("demo", help="write a synthetic workload's statistics")
    d.add_argument("--num-accesses", type=int, default=1000)
    d.add_argument("--output", required=True)
    d.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("summary", help="print a file's summary")
    s.add_argument("--input", required=True)
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    v = sub.add_parser("visualize", help="draw PNGs with `kvasir stats visualize`")
    v.add_argument("--input", required=True)
    v.add_argument("--output", required=True)
    v.add_argument("--type", default="heatmap", choices=["heatmap", "timeline", "reuse", "hitrate", "all"])
    v.add_argument("--summary", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.verb == "demo":
            if args.num_accesses < 1:
                ap.error("--num-accesses must be >= 1")
            doc = demo(args.num_accesses, args.seed).export_stats(args.output)
            print(f"wrote {args.output}: {doc['summary']['total_accesses']} accesses, "
                  f"hit rate {doc['summary']['hit_rate']:.3f}")
        elif args.verb == "summary":
            doc = read_stats(args.input)
            summary = summarize(doc["accesses"])
            if args.json:
                print(json.dumps(summary, indent=1))
            else:
                _print_summary(summary)
        else:
            read_stats(args.input)   # refuse a foreign file here, with the same message as the library
            cmd = find_cli() + ["stats", "visualize", "--input", args.input, "--output", args.output, "--type", args.type]
            if args.summary:
                cmd.append("--summary")
            return subprocess.run(cmd).returncode
    except (KVCacheError, OSError, ValueError) as ex:
        print(f"kvasir-stats: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
