#!/usr/bin/env bash
# How long members of a 3-member cluster take to exit after SIGTERM while a peer is paused
# (SIGSTOP): starts m1-m3 on loopback (fresh data dirs), waits until each logs "ready to serve
# client requests", pauses m3, then SIGTERMs m1 and then m2 and prints how long each took to exit.
# Every process started is killed at the end (also on failure). docs/security.md (helper "harden").
#
#   npx tsc -p . && scripts/sigterm-cluster.sh [path/to/quorumkv.js] [runs]   (PORT_BASE=37180)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$repo/dist/src/cli/quorumkv.js}
runs=${2:-3}
base=${PORT_BASE:-37180}
dir=$(mktemp -d /tmp/sigterm-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
ic="m1=http://127.0.0.1:$((base + 11)),m2=http://127.0.0.1:$((base + 12)),m3=http://127.0.0.1:$((base + 13))"
for run in $(seq 1 "$runs"); do
  pids=()
  rm -rf "${dir:?}"/*
  for i in 1 2 3; do
    node "$bin" --name=m$i --data-dir="$dir/m$i" \
      --listen-client-urls=http://127.0.0.1:$((base + i)) --advertise-client-urls=http://127.0.0.1:$((base + i)) \
      --listen-peer-urls=http://127.0.0.1:$((base + 10 + i)) --initial-advertise-peer-urls=http://127.0.0.1:$((base + 10 + i)) \
      --initial-cluster="$ic" >"$dir/m$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 1 2 3; do
    for _ in $(seq 1 300); do grep -q 'ready to serve client requests' "$dir/m$i.log" && break; sleep 0.1; done
    grep -q 'ready to serve client requests' "$dir/m$i.log" || { echo "m$i did not start:"; tail -5 "$dir/m$i.log"; exit 1; }
  done
  sleep 2 # the peer streams are up
  kill -STOP "${pids[2]}"
  sleep 1
  line="run $run:"
  for i in 0 1; do
    t0=$(date +%s%N)
    kill -TERM "${pids[$i]}"
    wait "${pids[$i]}" || true
    t1=$(date +%s%N)
    line="$line m$((i + 1)) exited $(((t1 - t0) / 1000000)) ms after SIGTERM;"
  done
  echo "$line (m3 paused; load average $(cut -d' ' -f1-3 /proc/loadavg))"
  kill -KILL "${pids[2]}" 2>/dev/null || true
  wait "${pids[2]}" 2>/dev/null || true
done
