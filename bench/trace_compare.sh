#!/usr/bin/env bash
# The Mooncake conversation trace replayed at equal memory against Kvasir (one node per policy),
# Redis (maxmemory = the same bytes, allkeys-lru) and memcached (-m the same), in one run, all
# through kvasir bench --trace (the peers through its raw RESP / memcached clients). Each request:
# a batched exists of its chain, GETs of the hit prefix, PUTs of the rest (a declared chain on
# Kvasir). Prints one markdown table; the simulator's figure for the same capacity is beside it.
#   bench/trace_compare.sh [--capacity 5%] [--block-bytes 16KiB] [--requests N] [--policies lru,chainlfu] [--trace FILE]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
trace="$root/../shared/traces/mooncake-conversation.jsonl"
capacity=5%; block=16KiB; requests=""; policies="lru,chainlfu"
while [ $# -gt 0 ]; do
  case "$1" in
    --capacity) capacity="$2"; shift ;;
    --block-bytes) block="$2"; shift ;;
    --requests) requests="--requests $2"; shift ;;
    --policies) policies="$2"; shift ;;
    --trace) trace="$2"; shift ;;
    *) echo "usage: bench/trace_compare.sh [--capacity 5%] [--block-bytes 16KiB] [--requests N] [--policies LIST] [--trace FILE]" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$trace" ] || { echo "trace_compare.sh: no trace at $trace (--trace FILE)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "trace_compare.sh: redis-server is not installed" >&2; exit 1; }
command -v memcached >/dev/null || { echo "trace_compare.sh: memcached is not installed" >&2; exit 1; }
py=/usr/bin/python3

"$root/kvasir" --help >/dev/null   # builds the CLI when needed
kvasir() { dotnet "$root/.build/cli/kvasir.dll" "$@"; }
# shell helpers shared with compare.sh and tls.sh: $work, $pids (stopped on exit), free_port, wait_port
. "$root/bench/lib.sh"
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# "capacity 5%: 9139 blocks = 149733376 bytes: --memory ... --low-watermark 1"
plan=$(kvasir bench --trace "$trace" $requests --capacity "$capacity" --block-bytes "$block" --plan)
bytes=$(echo "$plan" | sed -E 's/.* = ([0-9]+) bytes.*/\1/')
node_flags=$(echo "$plan" | sed -E 's/.*bytes: //')
mib=$(( (bytes + (1 << 20) - 1) >> 20 ))
echo "trace_compare.sh: $plan" >&2
sim=$(kvasir bench --trace "$trace" $requests --simulate --capacity "$capacity" --policy "$policies" --json)

rows="$work/rows.jsonl"
for policy in ${policies//,/ }; do
  kp=$(free_port)
  dotnet "$root/.build/cli/kvasir.dll" serve --port "$kp" --admin-port off --shm off $node_flags --eviction "$policy" --log-level warning >"$work/kvasir-$policy.log" 2>&1 & node=$!; pids+=($node)
  wait_port "$kp"
  kvasir bench --trace "$trace" $requests --capacity "$capacity" --block-bytes "$block" --target kvasir --server "127.0.0.1:$kp" --json \
    | sed "s/\"target\":\"kvasir\"/\"target\":\"kvasir $policy\"/" >>"$rows"
  stop "$node"
done

rp=$(free_port)
redis-server --bind 127.0.0.1 --port "$rp" --save "" --appendonly no --protected-mode no --maxmemory "$bytes" --maxmemory-policy allkeys-lru >"$work/redis.log" 2>&1 & redis=$!; pids+=($redis)
wait_port "$rp"
kvasir bench --trace "$trace" $requests --capacity "$capacity" --block-bytes "$block" --target redis --server "127.0.0.1:$rp" --json >>"$rows" || true
stop "$redis"

mp=$(free_port)
memcached -u "$(id -un)" -l 127.0.0.1 -p "$mp" -U 0 -m "$mib" -I 1m -t 2 -c 1024 >"$work/memcached.log" 2>&1 & mc=$!; pids+=($mc)
wait_port "$mp"
kvasir bench --trace "$trace" $requests --capacity "$capacity" --block-bytes "$block" --target memcached --server "127.0.0.1:$mp" --json >>"$rows" || true
stop "$mc"

$py - "$rows" "$bytes" "$mib" <<'PY' "$sim"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sim = {j["policy"]: j["hit_rate"] for j in map(json.loads, sys.argv[4].splitlines()) if j}
print(f"Equal memory: {int(sys.argv[2])} bytes (memcached -m {sys.argv[3]} MiB)\n")
print("| target | prefix-block hit rate | simulator | prefill tokens saved | read GB/s | write GB/s | lookup p50 / p99 us | requests/s | evictions | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    policy = r["target"].split(" ")[1] if r["target"].startswith("kvasir ") else None
    s = f'{sim[policy] * 100:.1f}%' if policy in sim else "-"
    ev = "n/a" if r["evictions"] is None else r["evictions"]
    print(f'| {r["target"]} | {r["hit_rate"] * 100:.1f}% | {s} | {r["tokens_saved"]:,} of {r["input_tokens"]:,} ({100 * r["tokens_saved"] / max(1, r["input_tokens"]):.1f}%) '
          f'| {r["get_gbps"]:.2f} | {r["put_gbps"]:.2f} | {r["lookup_p50_us"]:.0f} / {r["lookup_p99_us"]:.0f} | {r["requests"] / r["seconds"]:.0f} | {ev} | {r["errors"]} |')
PY
