#!/usr/bin/python3
"""Generates tests/vectors/eviction_trace.json: what the NODE's eviction policies do on a production trace slice.

The engine-side caches (Kvasir.Prefix in .NET, kvasir.kv in Python) offer the node's policies under the same names;
this file is how they prove they are the same policies. It runs the node's own simulator (`kvasir bench --trace
--simulate`: every policy in a real KvArenaStore holding exactly the capacity in blocks, src/Kvasir.Cli/Bench/Trace/
TraceSimulator.cs) over a slice of the Mooncake conversation trace (../shared/traces/mooncake-conversation.jsonl,
Apache License 2.0: tests/Kvasir.Cli.Tests/TraceData/LICENSE-Mooncake-Apache-2.0.txt) at three capacities, and records
per policy and capacity the prefix blocks hit. The slice keeps whole conversations -- the requests whose second block
id is a multiple of 8, in trace order (1,468 requests, 35,013 blocks) -- so it reuses prefixes as the whole trace does
(its head does not: over the first 400 requests every policy hits 3.5%). The file holds the slice's chains, so the .NET
and Python tests replay exactly what the node simulated through their PrefixCache, and must hit exactly as many.

The request model both sides follow (the simulator's): a request hits the longest cached prefix of its chain of
blocks, reading those blocks head first; then each later block is stored in turn, continuing the block before it. A
store makes room first when it is full, also when the block is already cached (the node writes the new version beside
the old one, so it needs a free block first) -- the engine replay evicts one block there too.

The committed eviction_trace.json is the source of truth: tests read it, they never regenerate it. Run from anywhere
(it builds the CLI once through ./kvasir):  /usr/bin/python3 tests/vectors/gen_eviction_trace.py
"""
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
TRACE = os.path.normpath(os.path.join(ROOT, "..", "shared", "traces", "mooncake-conversation.jsonl"))
POLICIES = ["lru", "fifo", "lfu", "s3fifo", "chainlfu", "chainsketch"]
CAPACITIES = ["1%", "5%", "10%"]
EVERY = 8


def slice_of(path):
    """The requests of every EVERY-th conversation (by its second block id; the first is the shared system prompt)."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if len(r["hash_ids"]) > 1 and r["hash_ids"][1] % EVERY == 0]


def main():
    requests = slice_of(TRACE)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as tmp:
        tmp.write("".join(json.dumps(r) + "\n" for r in requests))
    try:
        out = subprocess.run(
            [os.path.join(ROOT, "kvasir"), "bench", "--trace", tmp.name, "--simulate",
             "--capacity", ",".join(CAPACITIES), "--policy", ",".join(POLICIES), "--json"],
            check=True, capture_output=True, text=True, cwd=ROOT).stdout
    finally:
        os.unlink(tmp.name)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    results = []
    for row in rows:
        if row["policy"] == "belady":
            continue
        results.append({"policy": row["policy"], "capacity": row["capacity"], "capacity_blocks": row["capacity_blocks"],
                        "blocks": row["blocks"], "hit_blocks": row["hit_blocks"], "evictions": row["evictions"]})
    doc = {
        "description": "Prefix blocks hit by the node's eviction policies (its trace simulator over a real KvArenaStore) "
                       "on a slice of the Mooncake conversation trace (every 8th conversation), per policy and capacity in blocks. "
                       "Engine-side replays (longest cached prefix read head first, then each later block stored in turn "
                       "as the chain's continuation, one block evicted first when the cache is full, also for a block "
                       "already cached) must hit exactly as many. Written by tests/vectors/gen_eviction_trace.py.",
        "trace": "mooncake-conversation.jsonl (kvcache-ai/Mooncake FAST25-release conversation_trace.jsonl, Apache "
                 "License 2.0, notice in tests/Kvasir.Cli.Tests/TraceData/): the requests whose second block id is a "
                 "multiple of 8, in order; their hash_ids below",
        "unique_blocks": rows[0]["unique_blocks"],
        "block_key": "the node stores block id N under the ASCII key 't' + N; its ghost queue and frequency sketch index "
                     "the 64-bit FNV-1a of that key, so an engine replay names block N by a hash whose first 8 bytes "
                     "(big-endian) are that FNV-1a",
        "results": results,
        "chains": [r["hash_ids"] for r in requests],
    }
    with open(os.path.join(HERE, "eviction_trace.json"), "w") as f:
        body = json.dumps({k: v for k, v in doc.items() if k != "chains"}, indent=1)
        f.write(body[:-2] + ',\n "chains": [\n')   # one chain a line
        f.write(",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in doc["chains"]))
        f.write("\n ]\n}\n")
    print(f"{len(results)} results over {len(requests)} requests -> tests/vectors/eviction_trace.json")


if __name__ == "__main__":
    main()
