#!/usr/bin/env bash
# Side-by-side benchmark: etcd's own load generator (tools/benchmark) against a 3-member etcd 3.4
# cluster and a 3-member quorumkv cluster on loopback, same machine, same flags, alternating per
# workload so both see the same machine state. Prints one table with the quorumkv/etcd ratio, then
# each member's CPU time per request (leader and followers apart) for both systems.
#
# Usage: scripts/bench-vs-etcd.sh BENCHMARK_BINARY [--quick] [--memory]
#   BENCHMARK_BINARY  built by ../shared/tools/build-etcd-benchmark.sh (etcd 3.4's tools/benchmark)
#   --quick           smaller totals (for a smoke run)
#   --memory          also load 1M distinct keys of 256 B into each cluster and report every member's RSS
#                     (--key-space-size: without it etcd's benchmark writes every put to one key)
# Environment: QKV_NODE_FLAGS="..." is put on node's command line for each quorumkv member (e.g.
#   "--no-always-sparkplug" for an A/B of src/util/v8_jit.ts: node refuses V8 flags in NODE_OPTIONS).
# Needs: etcd (Debian etcd-server), node, a built quorumkv (npm run build).
# Both systems fsync every commit (etcd's default; quorumkv always does).
set -euo pipefail
BENCH=$(realpath "${1:?usage: bench-vs-etcd.sh BENCHMARK_BINARY [--quick] [--memory]}")
shift
QUICK=0; MEMORY=0
for a in "$@"; do case $a in --quick) QUICK=1 ;; --memory) MEMORY=1 ;; *) echo "unknown option $a" >&2; exit 2 ;; esac; done
cd "$(dirname "$0")/.."
[ -f dist/src/cli/quorumkv.js ] || npm run build >/dev/null
command -v etcd >/dev/null || { echo "etcd not found (apt-get install -y etcd-server)" >&2; exit 2; }

RUN=$(mktemp -d /tmp/bench-vs-etcd.XXXXXX)
# start_cluster runs in a command substitution (a subshell), so members are tracked in pid files.
cleanup() {
  for f in "$RUN"/*.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f"); kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$RUN"
}
trap cleanup EXIT

# Ports: etcd 23xx1.., quorumkv 33xx1..
start_cluster() { # kind base_port
  local kind=$1 base=$2 ic="" i
  for i in 1 2 3; do ic+="${ic:+,}m$i=http://127.0.0.1:$((base + 2 * i))"; done
  for i in 1 2 3; do
    local c=$((base + 2 * i - 1)) p=$((base + 2 * i)) dir="$RUN/$kind-m$i"
    local args=(--name="m$i" --data-dir="$dir" --listen-client-urls="http://127.0.0.1:$c" --advertise-client-urls="http://127.0.0.1:$c"
      --listen-peer-urls="http://127.0.0.1:$p" --initial-advertise-peer-urls="http://127.0.0.1:$p" --initial-cluster="$ic"
      --initial-cluster-token="bench-$kind" --initial-cluster-state=new)
    if [ "$kind" = etcd ]; then
      setsid etcd "${args[@]}" >"$RUN/$kind-m$i.log" 2>&1 </dev/null &
    else
      # shellcheck disable=SC2086 # QKV_NODE_FLAGS is a list of words
      setsid node ${QKV_NODE_FLAGS:-} dist/src/cli/quorumkv.js "${args[@]}" --log-level=warn >"$RUN/$kind-m$i.log" 2>&1 </dev/null &
    fi
    echo $! >"$RUN/$kind-m$i.pid"
  done
  local eps="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 3)),127.0.0.1:$((base + 5))"
  for _ in $(seq 1 100); do
    if etcdctl --endpoints="$eps" endpoint health >/dev/null 2>&1 && etcdctl --endpoints="$eps" put bench-ready 1 >/dev/null 2>&1; then
      # Healthy endpoints must be ours, not a leftover cluster on the same ports.
      for i in 1 2 3; do kill -0 "$(cat "$RUN/$kind-m$i.pid")" 2>/dev/null || { echo "$kind m$i exited (port in use?): $(tail -2 "$RUN/$kind-m$i.log")" >&2; exit 1; }; done
      echo "$eps"; return 0
    fi
    sleep 0.2
  done
  echo "cluster $kind did not become healthy" >&2; exit 1
}

ETCD_EPS=$(start_cluster etcd 23700)
QKV_EPS=$(start_cluster qkv 33700)

if [ $QUICK = 1 ]; then N_PUT=5000; N_ONE=500; N_RANGE=10000; N_TXN=3000; N_WATCH=2000; N_LEASE=5000
else N_PUT=50000; N_ONE=3000; N_RANGE=50000; N_TXN=20000; N_WATCH=10000; N_LEASE=20000; fi

WORKLOADS=(
  "put-100|--conns=10 --clients=100 put --key-size=8 --sequential-keys --total=$N_PUT --val-size=256"
  "put-1|--conns=1 --clients=1 put --key-size=8 --sequential-keys --total=$N_ONE --val-size=256"
  "range-l-100|--conns=10 --clients=100 range bench-ready --consistency=l --total=$N_RANGE"
  "range-s-100|--conns=10 --clients=100 range bench-ready --consistency=s --total=$N_RANGE"
  "txn-put-100|--conns=10 --clients=100 txn-put --key-size=8 --val-size=256 --total=$N_TXN --key-space-size=100000"
  "watch-1000w|--conns=10 --clients=100 watch --streams=10 --watch-per-stream=100 --put-total=$N_WATCH --put-rate=2000 --key-size=8"
  "lease-keepalive-100|--conns=10 --clients=100 lease-keepalive --total=$N_LEASE"
)

# CPU time (user + system, clock ticks) of each member of a system: "m1 m2 m3".
cpu_ticks() { # kind
  local kind=$1 m out=""
  for m in 1 2 3; do out+="$(awk '{ print $14 + $15 }' "/proc/$(cat "$RUN/$kind-m$m.pid")/stat") "; done
  echo "$out"
}
# Which member (1-3) leads, from etcdctl's endpoint status (the same for both systems).
leader_of() { # endpoints
  etcdctl --endpoints="$1" endpoint status -w json 2>/dev/null | node -e '
    const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const i = s.findIndex((e) => String(e.Status.header.member_id) === String(e.Status.leader));
    console.log(i >= 0 ? i + 1 : 0);' 2>/dev/null || echo 0
}
# The endpoints with the leader's (1-based index, 0 = unknown) first: etcd's benchmark sends a
# single client's requests to the first endpoint, and a put sent to a follower takes another hop
# (the proposal to the leader) in both systems, so each system's leader goes first.
leader_first() { # endpoints leader_index
  local IFS=,; local -a eps=($1); local i=$2
  if [ "$i" -ge 1 ] && [ "$i" -le "${#eps[@]}" ]; then
    local first=${eps[$((i - 1))]}; local rest=()
    for e in "${eps[@]}"; do [ "$e" = "$first" ] || rest+=("$e"); done
    echo "$first${rest:+,${rest[*]}}"
  else echo "$1"; fi
}
# Member CPU per request in µs: "leader follower_a follower_b all" from two cpu_ticks lines.
cpu_per_request() { # before after leader requests
  awk -v b="$1" -v a="$2" -v l="$3" -v n="$4" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(b, x, " "); split(a, y, " "); f = ""; all = 0
    for (i = 1; i <= 3; i++) { d = (y[i] - x[i]) * 1e6 / hz / n; all += d; if (i == l) ld = d; else f = f sprintf(" %.0f", d) }
    if (l < 1) { printf "NA NA NA %.0f\n", all } else printf "%.0f%s %.0f\n", ld, f, all }'
}
CPU_ROWS=()

# Runs one workload; prints "reqs_per_sec p50_ms p99_ms".
run() { # endpoints args...
  local eps=$1; shift
  local out
  out=$(timeout 600 "$BENCH" --endpoints="$eps" "$@" 2>&1) || { echo "NA NA NA"; return; }
  local rps p50 p99 pick=head
  # The watch benchmark prints two summaries: creating the watchers, then delivering the events
  # of the puts (events/s); the second is the one compared.
  [[ " $* " == *" watch "* ]] && pick=tail
  rps=$(sed -n 's/^ *Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' <<<"$out" | $pick -1)
  p50=$(sed -n 's/^ *50% in \([0-9.]*\) secs.*/\1/p' <<<"$out" | $pick -1)
  p99=$(sed -n 's/^ *99% in \([0-9.]*\) secs.*/\1/p' <<<"$out" | $pick -1)
  awk -v r="${rps:-0}" -v a="${p50:-0}" -v b="${p99:-0}" 'BEGIN { printf "%.0f %.2f %.2f\n", r, a * 1000, b * 1000 }'
}

# Warm-up, the same for both systems: every workload once, results discarded. A Node.js member
# starts with cold JIT (V8 compiles the hot paths during its first tens of thousands of requests,
# on the same two cores the benchmark shares); etcd is compiled ahead of time. The table compares
# steady state, which is what a long-running member serves.
if [ $QUICK = 0 ]; then
  for w in "${WORKLOADS[@]}"; do
    args=${w#*|}
    args=$(sed -e 's/--total=[0-9]*/--total=20000/' -e 's/--put-total=[0-9]*/--put-total=4000/' <<<"$args")
    run "$ETCD_EPS" $args >/dev/null; run "$QKV_EPS" $args >/dev/null
  done
fi

if [ -n "${QKV_NODE_FLAGS:-}" ]; then echo "quorumkv members: node $QKV_NODE_FLAGS"; fi
printf '%-20s %12s %12s %8s   %-17s %-17s\n' workload "etcd req/s" "qkv req/s" ratio "etcd p50/p99 ms" "qkv p50/p99 ms"
i=0
for w in "${WORKLOADS[@]}"; do
  name=${w%%|*}; args=${w#*|}
  # Alternate which system goes first, so neither always gets the warmer machine.
  # Requests of the run, for CPU per request (the watch run: its puts, each delivered to 1000 watchers).
  n=$(sed -n 's/.*--\(put-\)\{0,1\}total=\([0-9]*\).*/\2/p' <<<"$args")
  el=$(leader_of "$ETCD_EPS"); ql=$(leader_of "$QKV_EPS")
  run_etcd() { local b; b=$(cpu_ticks etcd); read -r er ep50 ep99 < <(run "$(leader_first "$ETCD_EPS" "$el")" $args); ecpu=$(cpu_per_request "$b" "$(cpu_ticks etcd)" "$el" "$n"); }
  run_qkv() { local b; b=$(cpu_ticks qkv); read -r qr qp50 qp99 < <(run "$(leader_first "$QKV_EPS" "$ql")" $args); qcpu=$(cpu_per_request "$b" "$(cpu_ticks qkv)" "$ql" "$n"); }
  if [ $((i % 2)) = 0 ]; then run_etcd; run_qkv; else run_qkv; run_etcd; fi
  CPU_ROWS+=("$(printf '%-20s %-26s %-26s' "$name" "$ecpu" "$qcpu")")
  ratio=$(awk -v q="$qr" -v e="$er" 'BEGIN { if (e > 0) printf "%.2f", q / e; else print "NA" }')
  printf '%-20s %12s %12s %8s   %-17s %-17s\n' "$name" "$er" "$qr" "$ratio" "$ep50/$ep99" "$qp50/$qp99"
  i=$((i + 1))
done

echo
echo "member CPU per request, µs (user+sys from /proc/PID/stat): leader, the two followers, all three"
printf '%-20s %-26s %-26s\n' workload "etcd L F F all" "qkv L F F all"
for r in "${CPU_ROWS[@]}"; do echo "$r"; done

if [ $MEMORY = 1 ]; then
  echo
  echo "memory: 1,000,000 distinct keys of 256 B in each cluster"
  "$BENCH" --endpoints="$ETCD_EPS" --conns=10 --clients=100 put --key-size=16 --sequential-keys --key-space-size=1000000 --total=1000000 --val-size=256 >/dev/null 2>&1
  "$BENCH" --endpoints="$QKV_EPS" --conns=10 --clients=100 put --key-size=16 --sequential-keys --key-space-size=1000000 --total=1000000 --val-size=256 >/dev/null 2>&1
  for kind in etcd qkv; do
    for m in 1 2 3; do
      pid=$(cat "$RUN/$kind-m$m.pid")
      rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo NA)
      printf '%-5s m%d RSS %8s kB\n' "$kind" "$m" "$rss"
    done
  done
fi
