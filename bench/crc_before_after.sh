#!/usr/bin/env bash
# End-to-end effect of a Crc32C change on TCP SET, two CLI builds back to back (they differ only in
# Kvasir.Protocol.dll): kvasir bench --op put --value-size SIZE --inflight 1, alternating
#   client-side CRC (--value-crc client, before and after builds of the bench client, against one node),
#   the bench's precomputed CRC (--value-crc given, the same two clients: the floor without any CRC cost),
#   node-side CRC (--value-crc node, the after client against a before node and an after node),
# ROUNDS rounds in a rotating order; per run (one JSON line): GB/s, and the client's and the node's CPU seconds per
# GB measured (the client's includes its start-up and the 1 s warm-up, the same in both builds).
#   bench/crc_before_after.sh BEFORE_CLI_DIR AFTER_CLI_DIR [ROUNDS] [SIZE] [SECONDS]
# A CLI dir is a built .build/cli (kvasir.dll); make the "before" one by copying .build/cli and dropping in the
# Kvasir.Protocol.dll built from the older commit (docs/benchmarks.md, "Crc32C by carry-less multiplication").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
before="${1:?usage: bench/crc_before_after.sh BEFORE_CLI_DIR AFTER_CLI_DIR [ROUNDS] [SIZE] [SECONDS]}"
after="${2:?usage: bench/crc_before_after.sh BEFORE_CLI_DIR AFTER_CLI_DIR [ROUNDS] [SIZE] [SECONDS]}"
rounds="${3:-5}"
size="${4:-1MiB}"
seconds="${5:-3}"
py=/usr/bin/python3
for d in "$before" "$after"; do [ -f "$d/kvasir.dll" ] || { echo "${0##*/}: no kvasir.dll in $d" >&2; exit 2; }; done
. "$root/bench/lib.sh"   # $work, $pids and their cleanup, free_port, wait_port
start_node() { # $1 = CLI dir; prints "pid port"
  local port; port=$(free_port)
  dotnet "$1/kvasir.dll" serve --port "$port" --memory 512MiB --admin-port off --log-level warning >"$work/node-$port.log" 2>&1 &
  echo "$! $port"
}
read -r pb kb < <(start_node "$before"); pids+=("$pb")
read -r pa ka < <(start_node "$after"); pids+=("$pa")
wait_port "$kb"; wait_port "$ka"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
# name | client dir | node pid | node port | --value-crc
runs=("client-before|$before|$pa|$ka|client" "client-after|$after|$pa|$ka|client" "given-before|$before|$pa|$ka|given"
  "given-after|$after|$pa|$ka|given" "node-before|$after|$pb|$kb|node" "node-after|$after|$pa|$ka|node")
n=${#runs[@]}
for round in $(seq "$rounds"); do
  for i in $(seq 0 $((n - 1))); do
    IFS='|' read -r name dir npid nport mode <<<"${runs[$(((i + round) % n))]}"
    n0=$(cpu "$npid")
    line=$(/usr/bin/time -f '%U %S' -o "$work/time" dotnet "$dir/kvasir.dll" bench --server "127.0.0.1:$nport" --transport tcp \
      --op put --value-size "$size" --inflight 1 --duration "$seconds" --warmup 1 --key-space 64MiB --json --no-progress --value-crc "$mode")
    n1=$(cpu "$npid")
    echo "$line" | $py -c "import json, sys
d = json.loads(sys.stdin.readline()); gb = d['values'] * d['value_size'] / 1e9
u, s = map(float, open('$work/time').read().split()[-2:])
print(json.dumps({'round': $round, 'run': '$name', 'gbps': d['gbps'], 'client_cpu_s_per_gb': round((u + s) / gb, 4),
                  'node_cpu_s_per_gb': round(($n1 - $n0) / $tick / gb, 4), 'errors': d['errors'], 'misses': d['misses'],
                  'verify_failures': d['verify_failures']}))"
  done
done
