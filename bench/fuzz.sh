#!/usr/bin/env bash
# Network fuzzer against a live node (issue 16): mutated golden frames (tests/vectors/frames.json) on many
# connections while checksummed TCP and shared-memory clients read and write beside them. Exit 1 on any wrong
# byte, error logged by the node, leak (reservations, leases, buffered metadata) or memory above the arena + slack.
# Usage: bench/fuzz.sh [--duration SEC (default 1800)] [--seed N] [--lanes N]   (./test.sh runs it for 60 s)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.build/fuzz"
dotnet build "$root/bench/Kvasir.Fuzz/Kvasir.Fuzz.csproj" -c Release -o "$out" --nologo -v quiet >/dev/null
args=("$@")
[[ " ${args[*]} " == *" --duration "* ]] || args+=(--duration 1800)
exec dotnet "$out/Kvasir.Fuzz.dll" "${args[@]}"
