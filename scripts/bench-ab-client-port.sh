#!/bin/bash
# A/B of two builds of the client port with etcd's benchmark, in one run: a fresh member of each
# side by side on loopback, 10 MB seeded for the range test, then put (100 clients, 256 B), put
# (4 clients, 1 MiB), lease-keepalive (100 clients) and a 10 MB serializable range (4 clients),
# alternating A,B then B,A (compare within the run only). Members are killed (process groups) on
# exit; data dirs under $TMPDIR.
#
#   scripts/bench-ab-client-port.sh <dir of build A> <dir of build B>
#   (each a checkout with dist/ built, e.g. `git archive <commit> | tar -x -C /tmp/a && cd /tmp/a &&
#    ln -s <repo>/node_modules && npx tsc -p .`)
set -u
A=${1:?build A dir}; B=${2:?build B dir}
BENCH=${ETCD_BENCHMARK:-/work/bin/etcd-benchmark}
TMP=${TMPDIR:-/tmp}
declare -A DIR=([A]=$A [B]=$B) PORT=([A]=23791 [B]=23792) PEER=([A]=23801 [B]=23802)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 -- -"$p" 2>/dev/null; done; }
trap cleanup EXIT
for v in A B; do
  d=$TMP/bench-ab-$v; rm -rf "$d"
  setsid node "${DIR[$v]}/dist/src/cli/quorumkv.js" --data-dir="$d" --listen-client-urls=http://127.0.0.1:${PORT[$v]} \
    --advertise-client-urls=http://127.0.0.1:${PORT[$v]} --listen-peer-urls=http://127.0.0.1:${PEER[$v]} --log-level=warn >"$d.log" 2>&1 &
  PIDS+=($!)
done
sleep 4
for v in A B; do
  "$BENCH" --endpoints=127.0.0.1:${PORT[$v]} --conns=1 --clients=10 put --sequential-keys --key-space-size=1000 --total=1000 --val-size=10240 >/dev/null 2>&1
done
run() { # name version args...
  local name=$1 v=$2; shift 2
  local out; out=$("$BENCH" --endpoints=127.0.0.1:${PORT[$v]} "$@" 2>&1)
  echo "$name | $v | $(echo "$out" | grep -m1 'Requests/sec' | awk '{print $2}') req/s | avg $(echo "$out" | grep -m1 Average | awk '{print $2}') s"
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for order in "A B" "B A"; do
  for v in $order; do run "put 100 clients 256 B" "$v" --conns=1 --clients=100 put --total=20000 --val-size=256; done
  for v in $order; do run "put 4 clients 1 MiB" "$v" --conns=1 --clients=4 put --total=60 --val-size=1048576; done
  for v in $order; do run "lease-keepalive 100 clients" "$v" --conns=1 --clients=100 lease-keepalive --total=20000; done
  for v in $order; do run "range 10 MB (1000 keys), 4 clients" "$v" --conns=1 --clients=4 range $'\x01' $'\xff' --consistency=s --total=40; done
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
