#!/usr/bin/env bash
# Packs what a machine without .NET or a package manager needs to run this repository's benchmarks against memcached
# and Redis (the device tool's GPU hosts): a self-contained JIT kvasir (`./kvasir publish --jit`), and redis-server,
# memcached, iperf3 and redis-benchmark from this host with the shared libraries they load beyond glibc (each behind a
# wrapper that sets LD_LIBRARY_PATH and execs it, so the benchmarks stop them by pid as usual). Writes DIR/z.tar.xz
# (about 42 MB: under the device tool's 64 MiB carry limit) and DIR/run.sh, which unpacks it once into /tmp and runs
# the command it is given with those tools first on PATH and $KVASIR naming the kvasir binary.
#
#   bench/device_package.sh [DIR]      default DIR: .build/device
#   then, with the device tool, carrying DIR/z.tar.xz and DIR/run.sh (from the repository root):
#   DIR/run.sh 'bench/compare.sh --bin "$KVASIR" --sizes 256KiB,1MiB,4MiB --connections 8 --out "$OUT/compare.md"'
#   DIR/run.sh 'python3 bench/py_stripe_bench.py --bin "$KVASIR" --keys 64 --size 2MiB --stripes 0,1MiB --chain'
#
# The peers are installed here first when missing (root; apt-get). The host that runs the package needs a glibc at least
# as new as this one's (Debian 12: 2.36).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$root/.build/device}"
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
tools=(redis-server memcached iperf3 redis-benchmark)
need=()
for t in "${tools[@]}"; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "device_package.sh: missing ${need[*]}; run as root to install them" >&2; exit 1; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools memcached iperf3) >/dev/null
fi

stage="$dir/z"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib" "$stage/real"
"$root/kvasir" publish --jit "$stage/j" >&2
for t in "${tools[@]}"; do
  cp "$(command -v "$t")" "$stage/real/$t"
  # The wrapper keeps the tool's pid (exec) so a benchmark's cleanup signals the tool itself.
  printf '#!/bin/sh\nd="$(dirname "$(readlink -f "$0")")/.."\nLD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/real/%s" "$@"\n' "$t" >"$stage/bin/$t"
  chmod +x "$stage/bin/$t"
done
# Every library the tools load, except glibc's own (the host's must be used) and the C++ runtime (present everywhere).
for f in "$stage"/real/*; do ldd "$f" | awk '/=>/ {print $3}'; done | sort -u \
  | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so' \
  | while read -r lib; do [ -n "$lib" ] && cp -L "$lib" "$stage/lib/"; done
tar cf - -C "$stage" . | xz -T0 -6 >"$dir/z.tar.xz"

cat >"$dir/run.sh" <<'RUN'
#!/usr/bin/env bash
# Unpacks z.tar.xz (beside this script) into /tmp once, then runs "$*" with bash, its tools first on PATH and $KVASIR
# naming its kvasir binary. Run from the repository root (the benchmarks' scripts are the checkout's).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
w=/tmp/kvasir-device
if [ ! -x "$w/j/kvasir" ] || [ "$here/z.tar.xz" -nt "$w/.unpacked" ]; then
  rm -rf "$w" && mkdir -p "$w" && tar xJf "$here/z.tar.xz" -C "$w" && touch "$w/.unpacked"
fi
export PATH="$w/bin:$PATH" KVASIR="$w/j/kvasir"
echo "run.sh: $(nproc) cores; $("$KVASIR" --version)" >&2
exec bash -c "$*"
RUN
chmod +x "$dir/run.sh"
echo "device_package.sh: $dir/z.tar.xz ($(du -h "$dir/z.tar.xz" | cut -f1)) and $dir/run.sh" >&2
