#!/usr/bin/env bash
# Cold start of a fresh quorumkv cluster, measured with etcd's own benchmark (issue 20: how long a
# (re)started member stays slow). Two modes.
#
# Default (phases): one fresh 3-member cluster, then in sequence 500 single-client puts (cold), 5k
# puts by 100 clients, 5k more, 30k more, 500 single-client puts (warm). All of it lands in the same
# WAL segment, so a difference between the first and the last line is the process warming up.
#
# --windows [VARIANT...]: per round and per variant (alternating the order each round), a fresh
# cluster runs put by 100 clients and another fresh cluster put by 1 client, each with the
# benchmark's per-second samples (`--sample`). The run starts on a whole second, so sample k is
# second k of the run: "cold" = the first 5 s, "steady" = from second 10 to the end (the last,
# partial second left out). CPU per request = user+sys of all members (/proc/PID/stat) over the
# same windows, divided by the requests done in them. A VARIANT (after `--`) is the node flags of
# the members ("" or "-" for none): `-- - --max-lazy` runs default and --max-lazy alternately;
# the variant `etcd` runs etcd 3.4 (`etcd` on the PATH) instead, for the same windows.
#
# Usage: scripts/bench-cold-start.sh BENCHMARK_BINARY   (built by ../shared/tools/build-etcd-benchmark.sh)
#        QFLAGS="--some-v8-flag" scripts/bench-cold-start.sh ...   (phases mode: node flags of the members)
#        scripts/bench-cold-start.sh BENCHMARK_BINARY --windows [--members=1|3] [--rounds=N]
#           [--put100-total=N] [--put1-total=N] [-- VARIANT...]
set -euo pipefail
B=$(realpath "${1:?usage: bench-cold-start.sh BENCHMARK_BINARY [--windows ...]}")
shift
WINDOWS=0; MEMBERS=3; ROUNDS=2; PUT100_TOTAL=60000; PUT1_TOTAL=4000; VARIANTS=(); REST=0
for a in "$@"; do
  if [ $REST = 1 ]; then VARIANTS+=("$a"); continue; fi
  case $a in
    --) REST=1 ;;
    --windows) WINDOWS=1 ;;
    --members=*) MEMBERS=${a#*=} ;;
    --rounds=*) ROUNDS=${a#*=} ;;
    --put100-total=*) PUT100_TOTAL=${a#*=} ;;
    --put1-total=*) PUT1_TOTAL=${a#*=} ;;
    --*) echo "unknown option $a" >&2; exit 2 ;;
    *) VARIANTS+=("$a") ;;
  esac
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("-")
cd "$(dirname "$0")/.."
[ -f dist/src/cli/quorumkv.js ] || npm run build >/dev/null
RUN=$(mktemp -d /tmp/bench-cold-start.XXXXXX)
base=${BASE_PORT:-43900}
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done; rm -rf "$RUN"; }
trap cleanup EXIT

# start_cluster members node_flags: a fresh cluster in $RUN/c<n>; sets eps and cpids.
nclusters=0
start_cluster() {
  local n=$1 flags=$2 ic="" i dir
  nclusters=$((nclusters + 1)); dir="$RUN/c$nclusters"; cpids=()
  for i in $(seq 1 "$n"); do ic+="${ic:+,}m$i=http://127.0.0.1:$((base + 2 * i))"; done
  for i in $(seq 1 "$n"); do
    local c=$((base + 2 * i - 1)) p=$((base + 2 * i))
    local args=(--name="m$i" --data-dir="$dir/m$i" --listen-client-urls="http://127.0.0.1:$c"
      --advertise-client-urls="http://127.0.0.1:$c" --listen-peer-urls="http://127.0.0.1:$p" --initial-advertise-peer-urls="http://127.0.0.1:$p"
      --initial-cluster="$ic" --initial-cluster-token=cold-start --initial-cluster-state=new)
    if [ "$flags" = etcd ]; then
      setsid etcd "${args[@]}" >"$dir-m$i.log" 2>&1 </dev/null &
    else
      # shellcheck disable=SC2086 # flags is a list of node flags
      setsid node $flags dist/src/cli/quorumkv.js "${args[@]}" --log-level=warn >"$dir-m$i.log" 2>&1 </dev/null &
    fi
    pids+=($!); cpids+=($!)
    disown
  done
  eps=""; for i in $(seq 1 "$n"); do eps+="${eps:+,}127.0.0.1:$((base + 2 * i - 1))"; done
  for _ in $(seq 1 100); do
    etcdctl --endpoints="$eps" put ready 1 >/dev/null 2>&1 && return 0
    kill -0 "${cpids[0]}" 2>/dev/null || break
    sleep 0.2
  done
  echo "cluster did not become ready: $(tail -2 "$dir-m1.log")" >&2; exit 1
}
stop_cluster() { local p; for p in "${cpids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done; sleep 0.5; }

if [ $WINDOWS = 0 ]; then
  start_cluster 3 "${QFLAGS:-}"
  run() { # label args...
    local label=$1; shift
    printf '%-22s %s\n' "$label" "$("$B" --endpoints="$eps" "$@" 2>&1 | awk '/Requests\/sec/ {r=$2} /50% in/ {p=$3} END {printf "%8.0f req/s  p50 %.1f ms", r, p * 1000}')"
  }
  run "put-1, first 500" --conns=1 --clients=1 put --key-size=8 --sequential-keys --total=500 --val-size=256
  run "put-100, first 5k" --conns=10 --clients=100 put --key-size=8 --sequential-keys --total=5000 --val-size=256
  run "put-100, next 5k" --conns=10 --clients=100 put --key-size=8 --sequential-keys --total=5000 --val-size=256
  run "put-100, next 30k" --conns=10 --clients=100 put --key-size=8 --sequential-keys --total=30000 --val-size=256
  run "put-1, warm 500" --conns=1 --clients=1 put --key-size=8 --sequential-keys --total=500 --val-size=256
  exit 0
fi

# CPU clock ticks (user + system) of the current cluster's members, summed.
cpu_ticks() {
  local p s=0 t
  for p in "${cpids[@]}"; do
    t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) || { echo "member $p exited: $(tail -3 "$RUN"/c$nclusters-m*.log)" >&2; exit 1; }
    s=$((s + t))
  done
  echo $s
}
sleep_until() { sleep "$(awk -v t="$1" -v n="$(date +%s.%N)" 'BEGIN { d = t - n; print (d > 0 ? d : 0) }')"; }

# window_run workload total conns clients: one benchmark run on the current cluster, started on a
# whole second; prints "cold_rps steady_rps cold_cpu_us steady_cpu_us".
window_run() {
  local total=$2 conns=$3 clients=$4 t0 out c0 c5 c10 c1
  t0=$(( $(date +%s) + 1 ))
  sleep_until "$t0"
  c0=$(cpu_ticks)
  ( sleep_until $((t0 + 5)); cpu_ticks >"$RUN/cpu5"; sleep_until $((t0 + 10)); cpu_ticks >"$RUN/cpu10" ) &
  out=$(timeout 300 "$B" --endpoints="$eps" --conns="$conns" --clients="$clients" --sample put --key-size=8 --sequential-keys \
    --total="$total" --val-size=256 2>&1) || { echo "NA NA NA NA"; wait; return; }
  c1=$(cpu_ticks)
  wait
  c5=$(cat "$RUN/cpu5"); c10=$(cat "$RUN/cpu10")
  # Samples: UNIX-SECOND,MIN,AVG,MAX,THROUGHPUT.
  awk -F, -v t0="$t0" -v total="$total" -v c0="$c0" -v c5="$c5" -v c10="$c10" -v c1="$c1" -v hz="$(getconf CLK_TCK)" '
    /^[0-9]+,/ { n[$1 - t0] += $5; if ($1 - t0 > last) last = $1 - t0 }
    END {
      for (k = 0; k < 5; k++) cold += n[k]
      for (k = 0; k < 10; k++) first10 += n[k]
      for (k = 10; k < last; k++) { steady += n[k]; secs++ }
      printf "%.0f %.0f %.0f %.0f\n", cold / 5, (secs > 0 ? steady / secs : 0),
        (cold > 0 ? (c5 - c0) * 1e6 / hz / cold : 0), (total > first10 ? (c1 - c10) * 1e6 / hz / (total - first10) : 0)
    }' <<<"$out"
}

echo "fresh $MEMBERS-member clusters, $ROUNDS rounds; put-100 ×$PUT100_TOTAL, put-1 ×$PUT1_TOTAL; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %-8s %10s %10s %6s %12s %12s\n' variant workload "cold req/s" "steady" ratio "cold µs/req" "steady µs/req"
for r in $(seq 1 "$ROUNDS"); do
  order=("${VARIANTS[@]}")
  if [ $((r % 2)) = 0 ]; then order=(); for ((k = ${#VARIANTS[@]} - 1; k >= 0; k--)); do order+=("${VARIANTS[k]}"); done; fi
  for v in "${order[@]}"; do
    flags=$v; [ "$flags" = "-" ] && flags=""
    for w in "put-100 $PUT100_TOTAL 10 100" "put-1 $PUT1_TOTAL 1 1"; do
      read -r name total conns clients <<<"$w"
      start_cluster "$MEMBERS" "$flags"
      read -r cr sr cc sc < <(window_run "$name" "$total" "$conns" "$clients")
      stop_cluster
      printf '%-34s %-8s %10s %10s %6s %12s %12s\n' "${v:0:34}" "$name" "$cr" "$sr" \
        "$(awk -v a="$cr" -v b="$sr" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "NA" }')" "$cc" "$sc"
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
