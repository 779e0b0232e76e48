#!/usr/bin/env bash
# Two builds of `kvasir transfer-bench` (e.g. main's engine and a branch's) back to back, alternating, ROUNDS rounds;
# prints per cell (size, lanes, build) the medians over the rounds: GiB/s, plain TCP of the same run, x TCP, CPU s/GiB
# of the engine and of plain TCP, context switches per slice, messages/s and p99; and, where iperf3 exists (on PATH, or
# IPERF3=/path/to/iperf3), iperf3 -c 127.0.0.1 -P N for every lane count N in each round and each cell's x iperf3.
# On a shared machine compare the CPU and context-switch columns (load moves them far less than GiB/s) and only ratios
# taken in the same round.
#   bench/transfer_ab.sh A_BIN B_BIN [ROUNDS] [-- transfer-bench options]
# A_BIN/B_BIN: a kvasir executable (./kvasir publish), a kvasir.dll (run with dotnet), or a script that runs one. Both
# must have the CPU s/GiB columns (TransferBenchCommand.cs, TcpBaseline.cs, ProcessCost.cs of session 7 or later).
# 2p:BIN runs BIN's engines in two processes, as iperf3 does (session 13 or later): a `transfer-bench --listen 0`
# target and a `--connect` initiator (no --tcp-baseline there, so its x TCP is empty; its CPU s/GiB is the
# initiator's alone).
# Default options:
#   --sizes 64KiB,64MiB --lanes 1,2,4,8 --duration 2 --tcp-baseline
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/transfer_ab.sh A_BIN B_BIN [ROUNDS] [-- transfer-bench options]" >&2; exit 2; }
a="$1"; b="$2"; shift 2
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
opts=("$@"); [ ${#opts[@]} -eq 0 ] && opts=(--sizes 64KiB,64MiB --lanes 1,2,4,8 --duration 2 --tcp-baseline)
py=/usr/bin/python3; [ -x "$py" ] || py=python3
iperf="${IPERF3:-$(command -v iperf3 || true)}"
lanes=1,2,4,8
for ((i = 0; i < ${#opts[@]}; i++)); do [ "${opts[$i]}" = --lanes ] && lanes="${opts[$((i + 1))]}"; done
out="$(mktemp -d)"
server=
target2p= initiator2p=   # a 2p: run's processes, stopped by the traps too (a target that never listened, Ctrl-C, kill)
trap 'rm -rf "$out"; for p in "$server" "$target2p" "$initiator2p"; do [ -z "$p" ] || kill "$p" 2>/dev/null || true; done' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
run() { case "$1" in 2p:*) run2p "${1#2p:}" "${@:2}" ;; *.dll) dotnet "$1" "${@:2}" ;; *) "$1" "${@:2}" ;; esac; }
run2p() {   # BIN transfer-bench OPTIONS...: the target in a process of its own, then the initiator against it
  local bin="$1" cmd=("$1") args=() a at rc log; shift 2
  case "$bin" in *.dll) cmd=(dotnet "$bin") ;; esac
  for a in "$@"; do [ "$a" != --tcp-baseline ] && args+=("$a"); done
  log="$(mktemp)"
  "${cmd[@]}" transfer-bench --listen 0 "${args[@]}" > "$log" 2>&1 &
  target2p=$!
  # Its region is filled before it listens (seconds for GiBs): wait while it lives, up to a minute.
  for _ in $(seq 1200); do grep -q "listening on" "$log" && break; kill -0 "$target2p" 2>/dev/null || break; sleep 0.05; done
  at="$(grep -o "listening on [^,]*" "$log" | cut -d' ' -f3 || true)"
  rc=0
  if [ -z "$at" ]; then echo "transfer_ab.sh: the --listen target did not start: $(cat "$log")" >&2; rc=1
  else   # in the background and waited for, so that a signal to this script is handled at once
    "${cmd[@]}" transfer-bench --connect "$at" "${args[@]}" & initiator2p=$!
    wait "$initiator2p" || rc=$?; initiator2p=
  fi
  kill "$target2p" 2>/dev/null; wait "$target2p" 2>/dev/null || true; target2p=; rm -f "$log"
  return $rc
}
if [ -n "$iperf" ]; then
  port=$((20000 + RANDOM % 20000))
  "$iperf" -s -p "$port" >/dev/null 2>&1 &
  server=$!
  sleep 0.5
  echo "iperf3: $("$iperf" --version | head -1)" >&2
fi
for r in $(seq "$rounds"); do
  for v in A B; do
    bin="$a"; [ "$v" = B ] && bin="$b"
    echo "round $r $v $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >&2
    run "$bin" transfer-bench "${opts[@]}" --json > "$out/$v.$r.json"
  done
  if [ -n "$iperf" ]; then
    for n in ${lanes//,/ }; do
      "$iperf" -c 127.0.0.1 -p "$port" -P "$n" -t 2 -J > "$out/iperf.$r.$n.out" 2>&1 || true
    done
  fi
done
"$py" - "$out" "$a" "$b" <<'PY'
import collections, glob, json, statistics, sys
out, names = sys.argv[1], {"A": sys.argv[2], "B": sys.argv[3]}
rows = collections.defaultdict(list)
iperf = collections.defaultdict(list)
for path in glob.glob(out + "/*.json"):
    v = path.rsplit("/", 1)[1].split(".")[0]
    for line in open(path):
        if line.startswith("{"):
            j = json.loads(line)
            rows[(j["size"], j["lanes"], v)].append(j)
for path in glob.glob(out + "/iperf.*.out"):
    n = int(path.rsplit(".", 2)[1])
    try:
        iperf[n].append(json.load(open(path))["end"]["sum_received"]["bits_per_second"] / 8 / 2**30)
    except (ValueError, KeyError) as e:
        print(f"iperf3 -P {n}: no result ({e})")
for key, r in rows.items():
    for x in r:
        x["iperf3_gib_s"] = statistics.median(iperf[key[1]]) if iperf.get(key[1]) else None
        x["x_iperf3"] = x["gib_s_wall"] / x["iperf3_gib_s"] if x["iperf3_gib_s"] else None
cols = ["gib_s_wall", "tcp_gib_s", "x_tcp", "iperf3_gib_s", "x_iperf3", "cpu_s_per_gib", "tcp_cpu_s_per_gib", "ctx_switches_per_slice", "msgs_s", "p99_ms"]
print("A =", names["A"]); print("B =", names["B"])
for n in sorted(iperf): print(f"iperf3 -P {n}: " + " ".join(f"{g:.2f}" for g in iperf[n]) + " GiB/s")
print(f"{'size':>10} {'lanes':>5} {'build':>5} {'n':>2} " + " ".join(f"{c:>22}" for c in cols))
for key in sorted(rows):
    r = rows[key]
    med = [statistics.median(x[c] for x in r if x.get(c) is not None) if any(x.get(c) is not None for x in r) else float("nan") for c in cols]
    print(f"{key[0]:>10} {key[1]:>5} {key[2]:>5} {len(r):>2} " + " ".join(f"{m:>22.3f}" for m in med))
PY
