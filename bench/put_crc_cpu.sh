#!/usr/bin/env bash
# Node CPU seconds per GB of batch SET payload over TCP, by where each value's CRC-32C is computed
# (kvasir bench --value-crc node | client | given), 1 MiB and 4 MiB values, 4 in flight, three rounds
# back to back. The node process's CPU time is less disturbed by a shared machine than GB/s is.
#   bench/put_crc_cpu.sh [ROUNDS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-3}"
py=/usr/bin/python3
"$root/kvasir" --help >/dev/null   # builds the CLI when needed
. "$root/bench/lib.sh"   # $work, $pids and their cleanup, free_port, wait_port
kp=$(free_port)
dotnet "$root/.build/cli/kvasir.dll" serve --port "$kp" --memory 1GiB --admin-port off --log-level warning >"$work/node.log" 2>&1 & pids+=($!)
node=$!
wait_port "$kp"
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$node/stat"; }
for round in $(seq "$rounds"); do
  for mode in node client given; do
    for size in 1MiB 4MiB; do
      before=$(cpu)
      line=$(dotnet "$root/.build/cli/kvasir.dll" bench --server "127.0.0.1:$kp" --transport tcp --op put --value-size "$size" \
        --inflight 4 --requests 60 --warmup 0 --key-space 64MiB --json --no-progress --value-crc "$mode")
      after=$(cpu)
      echo "$line" | $py -c "import json, sys
d = json.loads(sys.stdin.readline()); gb = d['requests'] * d['batch'] * d['value_size'] / 1e9
print(f'round $round  --value-crc $mode  $size: node CPU {($after - $before) / $tick / gb:.3f} s/GB, {d[\"gbps\"]:.2f} GB/s')"
    done
  done
done
