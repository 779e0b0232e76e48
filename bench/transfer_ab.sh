#!/usr/bin/env bash
# Two builds of `kvasir transfer-bench` (e.g. main's engine and a branch's) back to back, alternating, ROUNDS rounds;
# prints per cell (size, lanes, build) the medians over the rounds: GiB/s, plain TCP of the same run, x TCP, CPU s/GiB
# of the engine and of plain TCP, context switches per slice, messages/s and p99. On a shared machine compare the CPU
# and context-switch columns (load moves them far less than GiB/s) and only ratios taken in the same round.
#   bench/transfer_ab.sh A_BIN B_BIN [ROUNDS] [-- transfer-bench options]
# A_BIN/B_BIN: a kvasir executable (./kvasir publish) or a kvasir.dll (run with dotnet). Both must have the
# CPU s/GiB columns (this branch's TransferBenchCommand.cs, TcpBaseline.cs, ProcessCost.cs). Default options:
#   --sizes 64KiB,64MiB --lanes 1,2,4,8 --duration 2 --tcp-baseline
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/transfer_ab.sh A_BIN B_BIN [ROUNDS] [-- transfer-bench options]" >&2; exit 2; }
a="$1"; b="$2"; shift 2
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
opts=("$@"); [ ${#opts[@]} -eq 0 ] && opts=(--sizes 64KiB,64MiB --lanes 1,2,4,8 --duration 2 --tcp-baseline)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
run() { case "$1" in *.dll) dotnet "$1" "${@:2}" ;; *) "$1" "${@:2}" ;; esac; }
for r in $(seq "$rounds"); do
  for v in A B; do
    bin="$a"; [ "$v" = B ] && bin="$b"
    echo "round $r $v $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >&2
    run "$bin" transfer-bench "${opts[@]}" --json > "$out/$v.$r.json"
  done
done
/usr/bin/python3 - "$out" "$a" "$b" <<'PY'
import collections, glob, json, statistics, sys
out, names = sys.argv[1], {"A": sys.argv[2], "B": sys.argv[3]}
rows = collections.defaultdict(list)
for path in glob.glob(out + "/*.json"):
    v = path.rsplit("/", 1)[1].split(".")[0]
    for line in open(path):
        if line.startswith("{"):
            j = json.loads(line)
            rows[(j["size"], j["lanes"], v)].append(j)
cols = ["gib_s_wall", "tcp_gib_s", "x_tcp", "cpu_s_per_gib", "tcp_cpu_s_per_gib", "ctx_switches_per_slice", "msgs_s", "p99_ms"]
print("A =", names["A"]); print("B =", names["B"])
print(f"{'size':>10} {'lanes':>5} {'build':>5} {'n':>2} " + " ".join(f"{c:>22}" for c in cols))
for key in sorted(rows):
    r = rows[key]
    med = [statistics.median(x[c] for x in r if x.get(c) is not None) if any(x.get(c) is not None for x in r) else float("nan") for c in cols]
    print(f"{key[0]:>10} {key[1]:>5} {key[2]:>5} {len(r):>2} " + " ".join(f"{m:>22.3f}" for m in med))
PY
