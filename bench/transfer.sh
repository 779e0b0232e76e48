#!/usr/bin/env bash
# The transfer engine over loopback against iperf3 with as many TCP streams, same machine, same run:
#   1. one-sided writes of 64 MiB on 1, 2, 4 and 8 lanes, each lane count beside plain TCP with as many streams in the
#      same process (--tcp-baseline), then iperf3 -P 1/2/4/8 (IPERF3=/path/to/iperf3 where it is not on PATH; before
#      3.16 iperf3 runs every stream in one thread, so past 1 stream the in-process baseline is the strict one);
#   2. 64 KiB messages: messages/s and p99 latency on 1 and 4 lanes, 1 and 8 in flight;
#   3. the size ladder 4 KiB..256 MiB on 4 lanes (writes and reads).
# Two engines in one process (kvasir transfer-bench); prints the raw tables.
#   bench/transfer.sh [--quick]      --quick: 0.5 s per cell
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration=3; [ "${1:-}" = "--quick" ] && duration=0.5
iperf3="${IPERF3:-$(command -v iperf3 || true)}"
[ -n "$iperf3" ] || { echo "transfer.sh: iperf3 is missing (apt-get install -y iperf3, or IPERF3=/path/to/iperf3)" >&2; exit 1; }
py=/usr/bin/python3; [ -x "$py" ] || py=python3
"$root/kvasir" --help >/dev/null   # builds the CLI when needed
bench() { dotnet "$root/.build/cli/kvasir.dll" transfer-bench --duration "$duration" "$@"; }

echo "## 64 MiB writes by lane count (GiB/s)"
bench --sizes 64MiB --lanes 1,2,4,8 --tcp-baseline
port=$((20000 + RANDOM % 20000))
"$iperf3" -s -p "$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
echo "## iperf3 over loopback by stream count (GiB/s): $("$iperf3" --version | head -1)"
for streams in 1 2 4 8; do
  bps=$("$iperf3" -c 127.0.0.1 -p "$port" -P "$streams" -t "$duration" -J | "$py" -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
  "$py" -c "print(f'iperf3 -P $streams: {$bps / 8 / 2**30:.2f} GiB/s')"
done
kill "$server" 2>/dev/null || true

echo "## 64 KiB messages"
bench --sizes 64KiB --lanes 1,4 --inflight 1
bench --sizes 64KiB --lanes 1,4 --inflight 8

echo "## size ladder on 4 lanes"
bench --sizes 4KiB,64KiB,1MiB,16MiB,64MiB,256MiB --lanes 4
bench --sizes 4KiB,64KiB,1MiB,16MiB,64MiB,256MiB --lanes 4 --op read
