#!/usr/bin/env bash
# Coverage-guided fuzzing of the node's frame and metadata readers (issue 16): AFL++ drives
# bench/Kvasir.Fuzz.Protocol through SharpFuzz, starting from every frame of tests/vectors/frames.json.
# Exit 1 when AFL++ found a crash (an exception other than ProtocolException) or a hang; the inputs are left
# in .build/fuzz-protocol/findings/default/{crashes,hangs} (replay: dotnet .build/fuzz-protocol/Kvasir.Fuzz.Protocol.dll FILE).
# Usage: bench/fuzz-protocol.sh [--duration SEC (default 600)]        (./test.sh runs it for 60 s)
# Needs afl-fuzz (Debian afl++) and the SharpFuzz tool (dotnet tool restore: .config/dotnet-tools.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration=600
[ "${1:-}" = "--duration" ] && duration="$2"
out="$root/.build/fuzz-protocol"
rm -rf "$out" && mkdir -p "$out/corpus"
cd "$root"
dotnet tool restore >/dev/null
dotnet build bench/Kvasir.Fuzz.Protocol/Kvasir.Fuzz.Protocol.csproj -c Release -o "$out" --nologo -v quiet >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
dotnet tool run sharpfuzz "$out/Kvasir.Protocol.dll" >"$out/instrument.log" 2>&1 || { cat "$out/instrument.log"; exit 1; }
/usr/bin/python3 - "$root/tests/vectors/frames.json" "$out/corpus" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
for i, v in enumerate(doc["vectors"] + doc["malformed"]):
    with open(os.path.join(sys.argv[2], f"{i:03d}-{v['name']}"), "wb") as f:
        f.write(bytes.fromhex(v["hex"]))
PY
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
timeout $((duration + 120)) afl-fuzz -V "$duration" -i "$out/corpus" -o "$out/findings" -t 10000 -m none -- \
  dotnet "$out/Kvasir.Fuzz.Protocol.dll" >"$out/afl.log" 2>&1 || { tail -n 30 "$out/afl.log"; exit 1; }
stats="$out/findings/default/fuzzer_stats"
value() { sed -nE "s/^$1 +: (.*)/\1/p" "$stats"; }
crashes=$(find "$out/findings/default/crashes" -type f ! -name README.txt | wc -l)
hangs=$(find "$out/findings/default/hangs" -type f | wc -l)
echo "fuzz-protocol: $(value execs_done) executions in $(value run_time) s, $(value corpus_count) inputs in the corpus, edges $(value edges_found), $crashes crashes, $hangs hangs"
[ "$crashes" = 0 ] && [ "$hangs" = 0 ]
