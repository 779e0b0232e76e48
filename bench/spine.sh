#!/usr/bin/env bash
# Batch PUT and GET throughput of one node on loopback, for 64 KiB, 1 MiB and 4 MiB values,
# with 1 request in flight on 1 connection and 4 in flight on 4 connections, plus the allocator
# utilisation simulation. Prints a markdown table. Usage: bench/spine.sh [--duration SEC]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration=5
[ "${1:-}" = "--duration" ] && duration="$2"
port=$((20000 + RANDOM % 20000))
"$root/kvasir" --help >/dev/null   # builds the CLI if needed
dotnet "$root/.build/cli/kvasir.dll" serve --port "$port" --memory 2GiB --log-level warning >/tmp/kvasir-spine-node.log 2>&1 &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node 2>/dev/null || true' EXIT
for _ in $(seq 50); do dotnet "$root/.build/cli/kvasir.dll" ping --server 127.0.0.1:$port >/dev/null 2>&1 && break; sleep 0.2; done

echo "| op | value | batch | in flight (connections) | GB/s | p50 ms | p99 ms | errors | verify failures |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for size in 64KiB 1MiB 4MiB; do
  case $size in 64KiB) batch=64; keys=2048;; 1MiB) batch=16; keys=256;; 4MiB) batch=4; keys=64;; esac
  for op in put get; do
    for inflight in 1 4; do
      json=$(dotnet "$root/.build/cli/kvasir.dll" bench --server 127.0.0.1:$port --transport tcp --op $op --value-size $size --batch $batch \
        --keys $keys --inflight $inflight --connections $inflight --duration "$duration" --warmup 1 --json)
      /usr/bin/python3 - "$op" "$size" "$batch" "$inflight" "$json" <<'PY'
import json, sys
op, size, batch, inflight, j = sys.argv[1:6]
r = json.loads(j)
print(f"| {op} | {size} | {batch} | {inflight} ({inflight}) | {r['gbps']:.2f} | {r['p50_us']/1000:.2f} | {r['p99_us']/1000:.2f} | {r['errors']} | {r['verify_failures']} |")
PY
    done
  done
done
echo
dotnet run -c Release --project "$root/bench/Kvasir.Bench.Alloc" -- --capacity 1GiB
