#!/usr/bin/env bash
# Runs every test of the repository. Installs what the tests need when it is missing (apt, as root).
# Prints one closing line: "tests: N passed, N failed".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

need_apt=()
# Python tests use Debian's interpreter and packages (not the python3 first on PATH). Each module
# any test, bench or vector script imports from outside the standard library, with its package:
py_modules=(
  "pytest python3-pytest"                       # the test runner
  "numpy python3-numpy"                         # the client's batch and copy planning
  "yaml python3-yaml"                           # KVASIR_CONFIG files
  "torch python3-torch"                         # connector tests use real CPU tensors
  "redis python3-redis"                         # cluster tests: the registry and the Lua scripts
  "prometheus_client python3-prometheus-client" # /metrics checked with a real Prometheus text parser
  "ensurepip python3-venv"                      # the packaging test installs ./python into a fresh venv
)
[ -x /usr/bin/python3 ] || need_apt+=(python3)
for entry in "${py_modules[@]}"; do
  read -r module package <<<"$entry"
  /usr/bin/python3 -c "import $module" 2>/dev/null || need_apt+=("$package")
done
# Servers the benchmark's peer clients and the cluster tests talk to; the dashboard in headless Chromium.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v memcached >/dev/null || need_apt+=(memcached)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v ip >/dev/null || need_apt+=(iproute2)     # the transfer engine's network-namespace test (veth pair)
command -v afl-fuzz >/dev/null || need_apt+=(afl++)   # coverage-guided fuzzing of the frame readers (bench/fuzz-protocol.sh)
command -v openssl >/dev/null || need_apt+=(openssl)   # the cluster and TLS tests make a throwaway CA (rediss://, the data plane)
command -v clang >/dev/null || need_apt+=(clang)       # ./kvasir publish: native AOT compiles and links with clang
[ -f /usr/include/zlib.h ] || need_apt+=(zlib1g-dev)   # ... against zlib
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${need_apt[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null 2>&1 \
      || echo "test.sh: apt-get install ${need_apt[*]} failed" >&2
  else
    echo "test.sh: missing ${need_apt[*]} (run as root to install)" >&2
  fi
fi

# Every module above must import now: a missing one fails the run here, by name, not as scattered test errors.
missing_py=()
for entry in "${py_modules[@]}"; do
  read -r module package <<<"$entry"
  /usr/bin/python3 -c "import $module" 2>/dev/null || missing_py+=("$module ($package)")
done
if [ ${#missing_py[@]} -gt 0 ]; then
  echo "test.sh: /usr/bin/python3 cannot import: ${missing_py[*]}" >&2
  echo "tests: 0 passed, 1 failed"; exit 1
fi

passed=0; failed=0; status=0
log="$root/.build/test-logs"; mkdir -p "$log"
echo "test.sh: building"
if ! dotnet build Kvasir.sln -c Debug --nologo -v quiet >"$log/build.log" 2>&1; then
  cat "$log/build.log"; echo "tests: 0 passed, 1 failed"; exit 1
fi
# Style is checked, never reviewed: dotnet format (whitespace, code style and analyzers as .editorconfig
# sets them) must find nothing to change. The build has just restored, so it needs no network (--no-restore).
echo "test.sh: format check"
if dotnet format Kvasir.sln --verify-no-changes --no-restore -v quiet >"$log/format.log" 2>&1; then
  echo "  format: clean"
else
  files="$(grep -oE '^[^(]+\.(cs|csproj|props)' "$log/format.log" | sort -u | sed "s|^$root/||")"
  if [ -n "$files" ]; then
    echo "  format: 1 failed; dotnet format would change these files (run: dotnet format Kvasir.sln):"
    sed 's/^/    /' <<<"$files"
  else
    echo "  format: 1 failed; dotnet format did not run:"; tail -n 20 "$log/format.log"
  fi
  failed=$((failed + 1)); status=1
fi
for proj in tests/*.Tests/*.Tests.csproj; do
  name="$(basename "$proj" .csproj)"
  echo "test.sh: $name"
  dotnet test "$proj" -c Debug --no-build --nologo -v quiet --logger "console;verbosity=normal" >"$log/$name.log" 2>&1
  rc=$?
  # The console logger closes with "Total tests: N", "Passed: N" and, when any failed, "Failed: N".
  p=$(sed -nE 's/^ +Passed: +([0-9]+)$/\1/p' "$log/$name.log" | tail -n 1)
  f=$(sed -nE 's/^ +Failed: +([0-9]+)$/\1/p' "$log/$name.log" | tail -n 1)
  p=${p:-0}; f=${f:-0}
  line="$name: $p passed, $f failed"
  if [ $rc -ne 0 ] || ! grep -q '^Total tests:' "$log/$name.log"; then
    # Each failure: its name, its message (up to 12 lines, each cut at 600 characters: a message may carry a whole
    # node log) and the stack frames; the message is what says which assertion failed and why.
    awk '/^ +Failed /{print; msg=0; next}
         /Error Message:/{print; msg=1; n=0; next}
         /Stack Trace:/{msg=0; next}
         msg && n < 12 {print substr($0, 1, 600); n++; next}
         /^ +at |error/{print}' "$log/$name.log" | head -n 120
    [ "$f" = 0 ] && f=1
    status=1
  fi
  echo "  $line"
  passed=$((passed + p)); failed=$((failed + f))
done
# The network fuzzer (bench/Kvasir.Fuzz): mutated golden frames against a live node beside checksummed clients,
# bounded to 60 s here (bench/fuzz.sh runs it longer). One check: any wrong byte, node error or leak fails it.
echo "test.sh: fuzz (60 s)"
if dotnet bench/Kvasir.Fuzz/bin/Debug/net10.0/Kvasir.Fuzz.dll --duration 60 >"$log/fuzz.log" 2>&1; then
  echo "  fuzz: 1 passed, 0 failed ($(grep -m1 -oE '[0-9,]+ frames' "$log/fuzz.log"))"
  passed=$((passed + 1))
else
  tail -n 20 "$log/fuzz.log"; echo "  fuzz: 0 passed, 1 failed"
  failed=$((failed + 1)); status=1
fi
# Coverage-guided fuzzing of the frame and metadata readers (AFL++ through SharpFuzz), 60 s.
echo "test.sh: fuzz-protocol (60 s)"
if bench/fuzz-protocol.sh --duration 60 >"$log/fuzz-protocol.log" 2>&1; then
  echo "  fuzz-protocol: 1 passed, 0 failed ($(grep -oE '[0-9]+ executions' "$log/fuzz-protocol.log"))"
  passed=$((passed + 1))
else
  tail -n 20 "$log/fuzz-protocol.log"; echo "  fuzz-protocol: 0 passed, 1 failed"
  failed=$((failed + 1)); status=1
fi
# The Python client's tests run against a real node through the CLI, which ./kvasir builds.
if [ -d python/tests ]; then
  echo "test.sh: python (pytest)"
  ./kvasir --help >/dev/null 2>"$log/cli-build.log" || { cat "$log/cli-build.log"; failed=$((failed + 1)); status=1; }
  /usr/bin/python3 -m pytest python/tests -q -p no:cacheprovider >"$log/pytest.log" 2>&1
  rc=$?
  summary="$(tail -n 1 "$log/pytest.log")"
  p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p; s/^([0-9]+) passed.*/\1/p' <<<"$summary" | head -n 1)
  f=$(sed -nE 's/.* ([0-9]+) (failed|error|errors)[,. ].*/\1/p; s/^([0-9]+) (failed|error|errors).*/\1/p' <<<"$summary" | head -n 1)
  p=${p:-0}; f=${f:-0}
  if [ $rc -ne 0 ]; then   # 5 = no tests collected: a failure too, the suite must not vanish
    grep -E 'FAILED|ERROR|Error|assert' "$log/pytest.log" | head -n 60
    [ "$f" = 0 ] && f=1
    status=1
  fi
  echo "  python: $p passed, $f failed"
  passed=$((passed + p)); failed=$((failed + f))
fi
# README.md's commands, verbatim and in order, against real processes in private network and PID namespaces
# (tests/readme/run_readme.py): a newcomer's first steps must keep working.
echo "test.sh: readme"
if [ "$(id -u)" != 0 ]; then
  echo "  readme: not run (needs root: the README's fixed ports run in a private network namespace)"
elif /usr/bin/python3 tests/readme/run_readme.py >"$log/readme.log" 2>&1; then
  echo "  readme: 1 passed, 0 failed ($(grep -c '^README.md:[0-9]' "$log/readme.log") commands)"
  passed=$((passed + 1))
else
  tail -n 30 "$log/readme.log"; echo "  readme: 0 passed, 1 failed"
  failed=$((failed + 1)); status=1
fi
# The published binary (./kvasir publish: native AOT, docs/deploy.md) run as an operator runs it: YAML config, put/get over
# TCP and shm, admin /metrics, /v1/status and dashboard, status/stats/bench verbs, Redis registration, TLS, PNG plots
# (bench/publish_check.py). The AOT compile takes minutes: it is redone only when a source is newer than the last one.
echo "test.sh: publish (native AOT)"
pub="$root/.build/publish-test"
if [ ! -x "$pub/kvasir" ] || [ -n "$(find "$root/src" "$root/Directory.Build.props" "$root/Directory.Packages.props" "$root/kvasir" \
      \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.html' -o -name kvasir \) -newer "$pub/kvasir" -print -quit)" ]; then
  rm -rf "$pub"
  ./kvasir publish "$pub" >"$log/publish.log" 2>&1 || { tail -n 30 "$log/publish.log"; rm -rf "$pub"; }
fi
if [ -x "$pub/kvasir" ] && /usr/bin/python3 bench/publish_check.py "$pub/kvasir" >"$log/publish-check.log" 2>&1; then
  echo "  publish: 1 passed, 0 failed ($(du -h "$pub/kvasir" | cut -f1) native AOT binary)"
  passed=$((passed + 1))
else
  tail -n 20 "$log/publish-check.log" 2>/dev/null; echo "  publish: 0 passed, 1 failed"
  failed=$((failed + 1)); status=1
fi
# One short chaos round (bench/chaos.py): 3 nodes with disk tiers in a real Redis, replicas=2, kill -9 and restart
# a node every 6 s and Redis once, write-once keys as engines write them, a random seed (printed, to reproduce);
# any wrong byte, stale read or lost acknowledged value fails it. Overwrites are not part of it: replicas carry no
# versions yet, so they can read stale (docs/cluster.md § What a replicated cluster promises).
echo "test.sh: chaos (30 s)"
if /usr/bin/python3 bench/chaos.py --duration 30 --kill-every 6 --write-once >"$log/chaos.log" 2>&1; then
  echo "  chaos: 1 passed, 0 failed ($(grep -m1 -oE '[0-9]+ lost of [0-9]+ acknowledged keys' "$log/chaos.log"), $(grep -m1 -oE 'seed [0-9]+' "$log/chaos.log"))"
  passed=$((passed + 1))
else
  tail -n 20 "$log/chaos.log"; echo "  chaos: 0 passed, 1 failed"
  failed=$((failed + 1)); status=1
fi
echo "tests: $passed passed, $failed failed"
exit $status
