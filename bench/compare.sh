#!/usr/bin/env bash
# Kvasir side by side with memcached and Redis, same machine, same run, same workload shapes:
# values of 64 KiB, 256 KiB, 1 MiB and 4 MiB; batch SET and GET; 1 and 4 requests in flight.
# All three are driven by kvasir bench (the peers through its raw pipelined RESP / memcached
# clients); redis-benchmark runs beside them as a sanity check, and iperf3 and an in-process
# memcpy table give the floor. Prints one markdown table.
#   bench/compare.sh [--quick] [--out FILE]     --quick: short runs, finishes in under a minute
# A bounded subset, for before/after comparisons on a busy machine:
#   --sizes LIST (64KiB,256KiB,...)  --inflight LIST (1,4)  --ops LIST (put,get)  --duration S
#   --peers LIST (memcached,redis; "memcached" skips Redis and redis-benchmark)
#   --repeat N     every target runs N times, interleaved (base, Kvasir, peers, base, ...); the table shows medians
#   --base DIR     also runs another build's CLI (DIR holds its kvasir.dll: node and client both from it) as
#                  "Kvasir (base)" in the same run, on its own node, for a before/after in one table
#   --connections N  the Kvasir client's TCP connections to its node (kvasir bench --connections; default bench's own:
#                  the largest --inflight, at least 4). More connections than requests in flight let each request be
#                  striped over the free ones (KvStoreOptions.StripeBytes); the peers keep one connection per request.
#   --bin FILE     a native kvasir binary (`./kvasir publish DIR`) for the node and the client instead of building the
#                  CLI: for a host without .NET. PYTHON=... names the interpreter (default /usr/bin/python3).
# memcached runs with as many worker threads as the host has cores, at most 4 (memcached's own default).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
quick=0; out=""; sizes="64KiB,256KiB,1MiB,4MiB"; inflight="1,4"; ops="put,get"; peers="memcached,redis"; repeat=1; base=""; dur=""; bin=""; conns=""
usage="usage: bench/compare.sh [--quick] [--out FILE] [--sizes LIST] [--inflight LIST] [--ops LIST] [--duration S] [--peers LIST] [--repeat N] [--base DIR] [--bin FILE] [--connections N]"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    --sizes) sizes="$2"; shift ;;
    --inflight) inflight="$2"; shift ;;
    --ops) ops="$2"; shift ;;
    --duration) dur="$2"; shift ;;
    --peers) peers="$2"; shift ;;
    --repeat) repeat="$2"; shift ;;
    --base) base="$2"; shift ;;
    --bin) bin="$2"; shift ;;
    --connections) conns="$2"; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
if [ $quick = 1 ]; then duration=0.3; warmup=0.15; space=64MiB; iperf_t=1; rb_bytes=$((32 << 20)); else duration=5; warmup=1; space=256MiB; iperf_t=5; rb_bytes=$((512 << 20)); fi
[ -n "$dur" ] && duration="$dur"
case "$repeat" in ''|*[!0-9]*|0) echo "compare.sh: --repeat must be a positive count" >&2; exit 2 ;; esac
case "$conns" in '') kv_conns=() ;; *[!0-9]*|0) echo "compare.sh: --connections must be a positive count" >&2; exit 2 ;; *) kv_conns=(--connections "$conns") ;; esac
case ",$peers," in *,memcached,*) use_mc=1 ;; *) use_mc=0 ;; esac
case ",$peers," in *,redis,*) use_redis=1 ;; *) use_redis=0 ;; esac
if [ -n "$base" ] && [ ! -f "$base/kvasir.dll" ]; then echo "compare.sh: --base $base holds no kvasir.dll (give a .build/cli directory)" >&2; exit 2; fi
if [ -n "$bin" ] && [ ! -x "$bin" ]; then echo "compare.sh: --bin $bin is not an executable kvasir binary (make one with ./kvasir publish DIR)" >&2; exit 2; fi
py=${PYTHON:-/usr/bin/python3}

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v memcached >/dev/null || need+=(memcached)
command -v iperf3 >/dev/null || need+=(iperf3)
[ -x $py ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "compare.sh: missing ${need[*]}; run as root to install them" >&2; exit 1; }
  echo "compare.sh: installing ${need[*]}" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null
fi

if [ -n "$bin" ]; then kv_cmd=("$bin"); else "$root/kvasir" --help >/dev/null; kv_cmd=(dotnet "$root/.build/cli/kvasir.dll"); fi   # builds the CLI when needed
kvasir() { "${kv_cmd[@]}" "$@"; }
mc_threads=$(nproc); [ "$mc_threads" -gt 4 ] && mc_threads=4
. "$root/bench/lib.sh"   # $work, $pids and their cleanup, free_port, wait_port

rp=$(free_port); mp=$(free_port); kp=$(free_port); bp=$(free_port); ip=$(free_port)
if [ $use_redis = 1 ]; then redis-server --bind 127.0.0.1 --port "$rp" --save "" --appendonly no --protected-mode no >"$work/redis.log" 2>&1 & pids+=($!); fi
if [ $use_mc = 1 ]; then memcached -u "$(id -un)" -l 127.0.0.1 -p "$mp" -U 0 -m 2048 -I 8m -t "$mc_threads" -c 1024 >"$work/memcached.log" 2>&1 & pids+=($!); fi
# Started directly, not through the kvasir function: a backgrounded function runs in a subshell,
# and $! would be that subshell's pid, which the cleanup's TERM would not carry to the node.
"${kv_cmd[@]}" serve --port "$kp" --memory 2GiB --log-level warning >"$work/kvasir.log" 2>&1 & pids+=($!)
if [ -n "$base" ]; then dotnet "$base/kvasir.dll" serve --port "$bp" --memory 2GiB --log-level warning >"$work/kvasir-base.log" 2>&1 & pids+=($!); fi
[ $use_redis = 1 ] && wait_port "$rp"
[ $use_mc = 1 ] && wait_port "$mp"
wait_port "$kp"
[ -n "$base" ] && wait_port "$bp"

# The floor: loopback TCP (iperf3, 1 and 4 streams) and memcpy of the same shapes in one process.
iperf3 -s -p "$ip" >/dev/null 2>&1 & pids+=($!)
wait_port "$ip"
# GB/s of iperf3 with $1 streams. Tried up to three times: iperf3's server may still be closing the previous test
# (or wait_port's probe) and then answers with an error and no result.
iperf_gbps() {
  local v
  for _ in 1 2 3; do
    v=$(iperf3 -c 127.0.0.1 -p "$ip" -t "$iperf_t" -P "$1" -J | $py -c 'import json,sys; e=json.load(sys.stdin).get("end",{}); print(e["sum_received"]["bits_per_second"]/8e9 if "sum_received" in e else "")' 2>/dev/null || true)
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 1
  done
  echo "compare.sh: iperf3 gave no result with $1 streams in three tries" >&2; return 1
}
iperf1=$(iperf_gbps 1)
iperf4=$(iperf_gbps 4)

common=(--op "$ops" --value-size "$sizes" --inflight "$inflight" --duration "$duration" --warmup "$warmup" --key-space "$space" --json --no-progress)
kvasir bench --target memcpy "${common[@]}" >"$work/memcpy.jsonl"
: >"$work/kvasir.jsonl"; : >"$work/memcached.jsonl"; : >"$work/redis.jsonl"; : >"$work/base.jsonl"
for _ in $(seq "$repeat"); do
  if [ -n "$base" ]; then dotnet "$base/kvasir.dll" bench --target kvasir --server "127.0.0.1:$bp" --transport tcp "${common[@]}" >>"$work/base.jsonl"; fi
  kvasir bench --target kvasir --server "127.0.0.1:$kp" --transport tcp "${common[@]}" ${kv_conns[@]+"${kv_conns[@]}"} >>"$work/kvasir.jsonl"
  if [ $use_mc = 1 ]; then kvasir bench --target memcached --server "127.0.0.1:$mp" "${common[@]}" >>"$work/memcached.jsonl"; fi
  if [ $use_redis = 1 ]; then kvasir bench --target redis --server "127.0.0.1:$rp" "${common[@]}" >>"$work/redis.jsonl"; fi
done

# redis-benchmark as a sanity check of the Redis figures: SET and GET of one key, 4 pipelined.
: >"$work/redis-benchmark.csv"
if [ $use_redis = 1 ]; then
  for size in 65536 262144 1048576 4194304; do
    n=$(( rb_bytes / size )); [ $n -lt 16 ] && n=16
    redis-benchmark -h 127.0.0.1 -p "$rp" -t set,get -d "$size" -n "$n" -c 1 -P 4 --csv 2>/dev/null \
      | sed -n 's/^"\(SET\|GET\)","\([0-9.]*\)".*/\1 \2/p' | while read -r op rps; do echo "$op $size $rps" >>"$work/redis-benchmark.csv"; done
  done
fi

# What the Kvasir client ran with, for the table's heading: --connections, or kvasir bench's default.
shown_conns=$conns
if [ -z "$shown_conns" ]; then shown_conns=4; for n in ${inflight//,/ }; do [ "$n" -gt "$shown_conns" ] && shown_conns=$n; done; fi
KV_CONNS=$shown_conns MC_THREADS=$mc_threads $py - "$work" "$iperf1" "$iperf4" "$quick" "$duration" "$repeat" <<'PY' | tee ${out:+"$out"}
import json, sys, os, statistics
work, iperf1, iperf4, quick, duration, repeat = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1", sys.argv[5], int(sys.argv[6])
def load(name):
    """Rows by (op, size, in flight): the median GB/s over the repeats, errors and verify failures summed."""
    runs = {}
    for line in open(os.path.join(work, name + ".jsonl")):
        r = json.loads(line)
        runs.setdefault((r["op"], r["value_size"], r["inflight"]), []).append(r)
    return {key: {"gbps": statistics.median(x["gbps"] for x in rs), "all": [x["gbps"] for x in rs],
                  "cpu": statistics.median(x["client_cpu_s_per_gb"] for x in rs) if all("client_cpu_s_per_gb" in x for x in rs) else None,
                  "errors": sum(x["errors"] for x in rs), "verify_failures": sum(x["verify_failures"] for x in rs)}
            for key, rs in runs.items()}
k, m, r, c, b = load("kvasir"), load("memcached"), load("redis"), load("memcpy"), load("base")
rb = {}
for line in open(os.path.join(work, "redis-benchmark.csv")):
    op, size, rps = line.split()
    rb[("put" if op == "SET" else "get", int(size))] = float(rps) * int(size) / 1e9
def name(size):
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
def ratio(a, b):
    return f"{a / b:.2f}×" if b > 0 else "n/a"
def gbps(rows, key):
    return rows[key]["gbps"] if key in rows else 0.0
def cell(rows, key):
    return f"{rows[key]['gbps']:.2f}" if key in rows else "n/a"
print(f"Loopback floor: iperf3 {iperf1:.2f} GB/s (1 stream), {iperf4:.2f} GB/s (4 streams). "
      f"Runs of {duration} s{' (--quick)' if quick else ''}; GB/s of verified payload"
      f"{f'; medians of {repeat} interleaved runs' if repeat > 1 else ''}; memcached with {os.environ['MC_THREADS']} worker threads, {os.cpu_count()} cores; "
      f"Kvasir's client with {os.environ['KV_CONNS']} TCP connections (memcached's and Redis's: one per request in flight).")
print()
extra_h, extra_s = ("| Kvasir (base) | Kvasir / base | base / memcached ", "| ---: | ---: | ---: ") if b else ("", "")
print(f"| op | value | in flight | Kvasir {extra_h}| memcached | Redis | Kvasir / memcached | Kvasir / Redis | Kvasir / iperf3 | memcpy | redis-benchmark | errors + verify failures (K/m/R) |")
print(f"| --- | ---: | ---: | ---: {extra_s}| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for key in sorted(k, key=lambda t: (t[1], t[0] != "put", t[2])):
    op, size, inflight = key
    kv, mc, rd = gbps(k, key), gbps(m, key), gbps(r, key)
    floor = iperf1 if inflight == 1 else iperf4
    bad = "/".join(str(x[key]["errors"] + x[key]["verify_failures"]) if key in x else "-" for x in (k, m, r))
    if b: bad += f" (base {b[key]['errors'] + b[key]['verify_failures']})" if key in b else ""
    extra = f"| {cell(b, key)} | {ratio(kv, gbps(b, key))} | {ratio(gbps(b, key), mc)} " if b else ""
    rbs = f"{rb[(op, size)]:.2f}" if (op, size) in rb else "n/a"
    print(f"| {'SET' if op == 'put' else 'GET'} | {name(size)} | {inflight} | {kv:.2f} {extra}| {cell(m, key)} | {cell(r, key)} | {ratio(kv, mc)} | {ratio(kv, rd)} | {kv / floor:.0%} | {cell(c, key)} | {rbs} | {bad} |")
if repeat > 1:
    print()
    print("Every run (GB/s), in order: " + "; ".join(
        f"{'SET' if key[0] == 'put' else 'GET'} {name(key[1])} x{key[2]}: "
        + ", ".join(f"{label} {' '.join(f'{v:.2f}' for v in rows[key]['all'])}" for label, rows in (("base", b), ("K", k), ("m", m)) if key in rows)
        for key in sorted(k, key=lambda t: (t[1], t[0] != "put", t[2]))))
# The load generator's own CPU per GB over each measured run (kvasir bench's client_cpu_s_per_gb; a base CLI older
# than this field has none): on a machine where client and server share the cores, the sum decides.
cpu_rows = [(label, rows) for label, rows in (("K", k), ("base", b), ("m", m), ("R", r)) if rows and any(v["cpu"] is not None for v in rows.values())]
if cpu_rows:
    print()
    print("Client CPU s/GB (median): " + "; ".join(
        f"{'SET' if key[0] == 'put' else 'GET'} {name(key[1])} x{key[2]}: "
        + ", ".join(f"{label} {rows[key]['cpu']:.3f}" for label, rows in cpu_rows if key in rows and rows[key]["cpu"] is not None)
        for key in sorted(k, key=lambda t: (t[1], t[0] != "put", t[2]))))
PY
