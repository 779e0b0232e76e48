#!/usr/bin/env bash
# The disk tier against the disk beneath it, 1 MiB values, in one sitting:
#   raw: dd of 1 GiB in 1 MiB blocks (buffered write, cold read after dropping the page cache, warm read);
#   kvasir: a node with a 64 MiB arena and --disk, so PUTs are written through to disk and GETs of a
#   1 GiB key space come from the disk tier (cold after dropping the page cache, then warm).
#   latency: p99 of GETs of DRAM-resident 64 KiB values, alone and while another client writes 1 MiB values
#   through the disk tier of the same node with segments rolling and being dropped: a 1 GiB arena holds both key
#   spaces (16 MiB read, 512 MiB written), so nothing read is evicted, while --disk-capacity 256MiB makes the disk
#   tier roll a 32 MiB segment and drop the oldest every ~30 writes.
# Usage: bench/disk.sh [--duration SEC]   (root needed to drop the page cache; without it, "cold" is warm)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration=5
[ "${1:-}" = "--duration" ] && duration="$2"
"$root/kvasir" --help >/dev/null
dir="$(mktemp -d /tmp/kvasir-disk-bench.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "${pid2:-}" ] && kill "$pid2" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(cannot drop the page cache: not root)"; }
rate() { sed -nE 's/.*copied, ([0-9.]+) s, ([0-9.]+ [GM]B\/s).*/\2/p'; }

echo "== raw (dd, 1 GiB, 1 MiB blocks, $dir)"
echo "write buffered: $(dd if=/dev/zero of="$dir/raw" bs=1M count=1024 conv=fsync 2>&1 | rate)"
drop
echo "read cold:      $(dd if="$dir/raw" of=/dev/null bs=1M 2>&1 | rate)"
echo "read warm:      $(dd if="$dir/raw" of=/dev/null bs=1M 2>&1 | rate)"
rm -f "$dir/raw"

echo "== kvasir disk tier (64 MiB arena, 1024 x 1 MiB key space)"
port=$((20000 + RANDOM % 20000))
dotnet "$root/.build/cli/kvasir.dll" serve --port "$port" --memory 64MiB --disk "$dir/tier" --disk-capacity 16GiB --log-level warning >"$dir/node.log" 2>&1 &
pid=$!
for _ in $(seq 100); do "$root/kvasir" ping --server "127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.1; done
b() { "$root/kvasir" bench --server "127.0.0.1:$port" --value-size 1MiB --keys 1024 --duration "$duration" --no-progress "$@" | grep -E '^kvasir'; }
b --op put --inflight 1,4 --warmup 1
drop
echo "(page cache dropped: the first GET run starts cold)"
b --op get --inflight 1,4 --warmup 0 --no-prefill
"$root/kvasir" stats --server "127.0.0.1:$port" | grep -E '^(disk_hits|hits|tier_promotions|evictions|disk_bytes)\b' | tr '\n' ' '; echo
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

echo "== GET p99 of DRAM-resident keys (256 x 64 KiB, 1 GiB arena): alone, then while a second client writes 1 MiB values"
echo "   (a) to a node without a disk tier, (b) to a node with one whose segments roll (--disk-capacity 256MiB)"
for mode in "without disk" "with disk"; do
  port=$((20000 + RANDOM % 20000))
  flags=(--port "$port" --memory 1GiB --log-level warning)
  [ "$mode" = "with disk" ] && flags+=(--disk "$dir/tier2" --disk-capacity 256MiB)
  dotnet "$root/.build/cli/kvasir.dll" serve "${flags[@]}" >"$dir/node2.log" 2>&1 &
  pid2=$!
  for _ in $(seq 100); do "$root/kvasir" ping --server "127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.1; done
  g() { "$root/kvasir" bench --server "127.0.0.1:$port" --op get --value-size 64KiB --keys 256 --batch 1 --inflight 1 --duration "$duration" --warmup 1 --no-progress "$@" | grep -E '^kvasir'; }
  [ "$mode" = "without disk" ] && echo "alone:                   $(g)"
  [ "$mode" = "with disk" ] && g >/dev/null   # prefill this node's read keys
  "$root/kvasir" bench --server "127.0.0.1:$port" --op put --value-size 1MiB --keys 512 --inflight 4 --duration $((duration + 4)) --warmup 0 --no-progress >"$dir/writer.log" 2>&1 &
  writer=$!
  sleep 1
  echo "writes, $mode: $(g --no-prefill)"
  wait "$writer" || true
  echo "  the writer:            $(grep -E '^kvasir' "$dir/writer.log")"
  [ "$mode" = "with disk" ] && { "$root/kvasir" stats --server "127.0.0.1:$port" | grep -E '^(disk_deleted_segments|disk_writes|evictions)\b' | tr '\n' ' '; echo; }
  kill "$pid2"; wait "$pid2" 2>/dev/null || true; pid2=""
done
