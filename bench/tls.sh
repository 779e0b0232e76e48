#!/usr/bin/env bash
# The cost of TLS on the data plane: 1 MiB batch PUT and GET over loopback TCP against a plaintext node and a
# TLS node (throwaway CA and certificate made here with openssl), both started by this script, in the same run.
# Rounds alternate plaintext and TLS so drift on a shared machine hits both alike; prints the median GB/s of each
# and the ratio as a markdown table. With --base DLL, a third node and client from another build (e.g. main's
# kvasir.dll) run plaintext rounds too, to show the stream seam costs the plaintext path nothing.
#   bench/tls.sh [--rounds N] [--duration SEC] [--inflight N] [--base PATH/kvasir.dll] [--out FILE]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=5; duration=3; inflight=4; base=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --inflight) inflight="$2"; shift ;;
    --base) base="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "usage: bench/tls.sh [--rounds N] [--duration SEC] [--inflight N] [--base DLL] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
py=/usr/bin/python3
command -v openssl >/dev/null || { echo "tls.sh: needs the openssl command (apt-get install openssl)" >&2; exit 1; }
"$root/kvasir" --help >/dev/null   # builds the CLI when needed
dll="$root/.build/cli/kvasir.dll"
. "$root/bench/lib.sh"   # $work, $pids and their cleanup, free_port, wait_port

( cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=bench-ca
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout node.key -out node.csr -subj /CN=bench-node
  printf 'subjectAltName=IP:127.0.0.1\n' >ext
  openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 1 -extfile ext ) >/dev/null 2>&1

serve=(serve --memory 1GiB --shm off --admin-port off --log-level warning)
pp=$(free_port); tp=$(free_port)
dotnet "$dll" "${serve[@]}" --port "$pp" >"$work/plain.log" 2>&1 & pids+=($!)
dotnet "$dll" "${serve[@]}" --port "$tp" --tls-cert "$work/node.pem" --tls-key "$work/node.key" >"$work/tls.log" 2>&1 & pids+=($!)
wait_port "$pp"; wait_port "$tp"
if [ -n "$base" ]; then
  bp=$(free_port)
  dotnet "$base" "${serve[@]}" --port "$bp" >"$work/base.log" 2>&1 & pids+=($!)
  wait_port "$bp"
fi

common=(bench --target kvasir --transport tcp --op put,get --value-size 1MiB --inflight "$inflight" --duration "$duration" --warmup 1 --key-space 256MiB --json --no-progress)
for r in $(seq "$rounds"); do
  dotnet "$dll" "${common[@]}" --server "127.0.0.1:$pp" | sed 's/^/plain /' >>"$work/runs"
  dotnet "$dll" "${common[@]}" --server "127.0.0.1:$tp" --tls-ca "$work/ca.pem" | sed 's/^/tls /' >>"$work/runs"
  [ -z "$base" ] || dotnet "$base" "${common[@]}" --server "127.0.0.1:$bp" | sed 's/^/base /' >>"$work/runs"
  echo "tls.sh: round $r of $rounds done" >&2
done

$py - "$work/runs" "$rounds" "$duration" "$inflight" <<'PY' | tee ${out:+"$out"}
import json, statistics, sys
runs, rounds, duration, inflight = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
by = {}
for line in open(runs):
    mode, _, js = line.partition(" ")
    r = json.loads(js)
    if r.get("errors", 0) or r.get("verify_failures", 0):
        sys.exit(f"tls.sh: a {mode} {r['op']} run had errors: {js.strip()}")
    by.setdefault((mode, r["op"]), []).append(r["gbps"])
modes = [m for m in ("base", "plain", "tls") if any(k[0] == m for k in by)]
names = {"base": "plaintext, base build", "plain": "plaintext", "tls": "TLS"}
print(f"1 MiB values, batch of 16, {inflight} in flight, {rounds} rounds of {duration} s each, loopback TCP; median GB/s (min–max)\n")
print("| op | " + " | ".join(names[m] for m in modes) + " | TLS / plaintext |")
print("|---|" + "---:|" * (len(modes) + 1))
for op in ("put", "get"):
    cells = []
    for m in modes:
        v = by[(m, op)]
        cells.append(f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})")
    plain = statistics.median(by[("plain", op)])
    ratio = f"{statistics.median(by[('tls', op)]) / plain:.2f}" if plain > 0 else "n/a (no plaintext request finished: raise --duration)"
    print(f"| {op.upper()} | " + " | ".join(cells) + f" | {ratio} |")
PY
