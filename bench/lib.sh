# Shared by the bench scripts that start their own servers (source it after setting py): a scratch directory
# $work, the pids of what was started in $pids (each TERMed, then waited for, on exit), and two port helpers.
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 20 s for something to listen on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "${0##*/}: nothing listens on port $1" >&2; exit 1
}
