#!/usr/bin/env bash
# Cold start of a fresh 3-member quorumkv cluster, measured with etcd's own benchmark against the
# same members in sequence (issue "Performance": how long a restarted member stays slow):
#   500 single-client puts (cold), 5k puts by 100 clients, 5k more, 30k more, 500 single-client puts (warm).
# All of it lands in the same WAL segment, so a difference between the first and the last line is
# the process warming up, not the disk.
# Usage: scripts/bench-cold-start.sh BENCHMARK_BINARY   (built by ../shared/tools/build-etcd-benchmark.sh)
#        QFLAGS="--some-v8-flag" scripts/bench-cold-start.sh ...   runs the members with node flags
set -euo pipefail
B=$(realpath "${1:?usage: bench-cold-start.sh BENCHMARK_BINARY}")
cd "$(dirname "$0")/.."
[ -f dist/src/cli/quorumkv.js ] || npm run build >/dev/null
RUN=$(mktemp -d /tmp/bench-cold-start.XXXXXX)
base=${BASE_PORT:-43900}
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done; rm -rf "$RUN"; }
trap cleanup EXIT
ic=""; for i in 1 2 3; do ic+="${ic:+,}m$i=http://127.0.0.1:$((base + 2 * i))"; done
for i in 1 2 3; do
  c=$((base + 2 * i - 1)); p=$((base + 2 * i))
  # shellcheck disable=SC2086 # QFLAGS is a list of node flags
  setsid node ${QFLAGS:-} dist/src/cli/quorumkv.js --name="m$i" --data-dir="$RUN/m$i" --listen-client-urls="http://127.0.0.1:$c" \
    --advertise-client-urls="http://127.0.0.1:$c" --listen-peer-urls="http://127.0.0.1:$p" --initial-advertise-peer-urls="http://127.0.0.1:$p" \
    --initial-cluster="$ic" --initial-cluster-token=cold-start --initial-cluster-state=new --log-level=warn >"$RUN/m$i.log" 2>&1 </dev/null &
  pids+=($!)
  disown
done
eps="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 3)),127.0.0.1:$((base + 5))"
for _ in $(seq 1 100); do etcdctl --endpoints="$eps" put ready 1 >/dev/null 2>&1 && break; sleep 0.2; done
run() { # label args...
  local label=$1; shift
  printf '%-22s %s\n' "$label" "$("$B" --endpoints="$eps" "$@" 2>&1 | awk '/Requests\/sec/ {r=$2} /50% in/ {p=$3} END {printf "%8.0f req/s  p50 %.1f ms", r, p * 1000}')"
}
run "put-1, first 500" --conns=1 --clients=1 put --key-size=8 --sequential-keys --total=500 --val-size=256
run "put-100, first 5k" --conns=10 --clients=100 put --key-size=8 --sequential-keys --total=5000 --val-size=256
run "put-100, next 5k" --conns=10 --clients=100 put --key-size=8 --sequential-keys --total=5000 --val-size=256
run "put-100, next 30k" --conns=10 --clients=100 put --key-size=8 --sequential-keys --total=30000 --val-size=256
run "put-1, warm 500" --conns=1 --clients=1 put --key-size=8 --sequential-keys --total=500 --val-size=256
