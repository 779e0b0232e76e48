#!/usr/bin/env bash
# Runs every test of the repository. Installs what the tests need when it is missing (apt, as root).
# Prints one closing line: "tests: N passed, N failed".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

need_apt=()
# Python client tests use Debian's interpreter and packages (not the python3 first on PATH).
[ -x /usr/bin/python3 ] || need_apt+=(python3)
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need_apt+=(python3-pytest)
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need_apt+=(python3-numpy)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || need_apt+=(python3-yaml)
# Connector tests use real torch CPU tensors.
/usr/bin/python3 -c 'import torch' 2>/dev/null || need_apt+=(python3-torch)
# The benchmark's peer clients are tested against real servers.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v memcached >/dev/null || need_apt+=(memcached)
# Admin HTTP: /metrics is checked with a real Prometheus text parser; the dashboard in headless Chromium.
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || need_apt+=(python3-prometheus-client)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${need_apt[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null 2>&1 \
      || echo "test.sh: apt-get install ${need_apt[*]} failed" >&2
  else
    echo "test.sh: missing ${need_apt[*]} (run as root to install)" >&2
  fi
fi

passed=0; failed=0; status=0
log="$root/.build/test-logs"; mkdir -p "$log"
echo "test.sh: building"
if ! dotnet build Kvasir.sln -c Debug --nologo -v quiet >"$log/build.log" 2>&1; then
  cat "$log/build.log"; echo "tests: 0 passed, 1 failed"; exit 1
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
    grep -E '^\s+Failed |Error Message|^\s+at |error' "$log/$name.log" | head -n 80
    [ "$f" = 0 ] && f=1
    status=1
  fi
  echo "  $line"
  passed=$((passed + p)); failed=$((failed + f))
done
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
echo "tests: $passed passed, $failed failed"
exit $status
