#!/usr/bin/env bash
# Cold and warm put-100 of fresh 3-member clusters, A/B of builds and node flags in one run (issue 20:
# CPU per put from a cold start). Per round and per variant (the order reversed every other round),
# one fresh cluster runs, against all three members' client URLs (as bench-vs-etcd.sh):
#   cold    put by 100 clients, 5,000 puts of 256 B: the cluster's very first workload
#   (warm-up: WARMUP puts by 100 clients, not reported)
#   warm    10,000 more puts by 100 clients
#   put-1   500 single-client puts
#   range-s 10,000 serializable ranges by 100 clients
# and prints req/s and each member's CPU per request (user+sys from /proc/PID/stat, µs: the leader,
# the two followers, all three), and for quorumkv the members' main threads and other threads
# (V8's compile and GC threads, libuv's pool; /proc/PID/task/*/stat) summed over the three members.
#
# Usage: scripts/bench-cold-ab.sh [--rounds=N] [--warmup=N] [--only-cold] -- VARIANT...
#   VARIANT: DIR[|NODE_FLAGS]: a checkout with dist/ built (and node_modules), node flags for its
#            members; or `etcd` for etcd 3.4 in the same rotation.
# Environment: ETCD_BENCHMARK (default /work/bin/etcd-benchmark), BASE_PORT (default 45700),
#   PROF_DIR: if set, members run under --cpu-prof into PROF_DIR/<variant#>-r<round>-m<i>/ and
#   the script prints each window's CLOCK_MONOTONIC µs bounds (for cpuprofile-window.js); the
#   members' output (e.g. of --trace-opt) is kept in PROF_DIR/<variant#>-r<round>-m<i>.log.
set -euo pipefail
ROUNDS=2; WARMUP=20000; ONLY_COLD=0; VARIANTS=(); REST=0
for a in "$@"; do
  if [ $REST = 1 ]; then VARIANTS+=("$a"); continue; fi
  case $a in
    --) REST=1 ;;
    --rounds=*) ROUNDS=${a#*=} ;;
    --warmup=*) WARMUP=${a#*=} ;;
    --only-cold) ONLY_COLD=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
[ ${#VARIANTS[@]} -gt 0 ] || { echo "usage: bench-cold-ab.sh [--rounds=N] -- DIR[|FLAGS]|etcd ..." >&2; exit 2; }
B=${ETCD_BENCHMARK:-/work/bin/etcd-benchmark}
RUN=$(mktemp -d /tmp/bench-cold-ab.XXXXXX)
base=${BASE_PORT:-45700}
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done; rm -rf "$RUN"; }
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
mono_us() { awk '{ printf "%.0f\n", $1 * 1e6 }' /proc/uptime; }

nclusters=0
start_cluster() { # variant prof_dir
  local v=$1 prof=$2 ic="" i dir
  nclusters=$((nclusters + 1)); dir="$RUN/c$nclusters"; cpids=()
  for i in 1 2 3; do ic+="${ic:+,}m$i=http://127.0.0.1:$((base + 2 * i))"; done
  for i in 1 2 3; do
    local c=$((base + 2 * i - 1)) p=$((base + 2 * i))
    local args=(--name="m$i" --data-dir="$dir/m$i" --listen-client-urls="http://127.0.0.1:$c"
      --advertise-client-urls="http://127.0.0.1:$c" --listen-peer-urls="http://127.0.0.1:$p" --initial-advertise-peer-urls="http://127.0.0.1:$p"
      --initial-cluster="$ic" --initial-cluster-token=cold-ab --initial-cluster-state=new)
    if [ "$v" = etcd ]; then
      setsid etcd "${args[@]}" >"$dir-m$i.log" 2>&1 </dev/null &
    else
      local d=${v%%|*} flags="" pf=""
      [[ $v == *"|"* ]] && flags=${v#*|}
      [ -n "$prof" ] && { mkdir -p "$prof-m$i"; pf="--cpu-prof --cpu-prof-dir=$prof-m$i"; }
      # shellcheck disable=SC2086 # flags are lists of words
      setsid node $pf $flags "$d/dist/src/cli/quorumkv.js" "${args[@]}" --log-level=warn >"${prof:-$dir}-m$i.log" 2>&1 </dev/null &
    fi
    pids+=($!); cpids+=($!)
    disown
  done
  eps=""; for i in 1 2 3; do eps+="${eps:+,}127.0.0.1:$((base + 2 * i - 1))"; done
  for _ in $(seq 1 150); do
    etcdctl --endpoints="$eps" put ready 1 >/dev/null 2>&1 && return 0
    kill -0 "${cpids[0]}" 2>/dev/null || break
    sleep 0.2
  done
  echo "cluster did not become ready: $(tail -2 "$dir-m1.log")" >&2; exit 1
}
stop_cluster() {
  local p
  # SIGTERM first: a member under --cpu-prof writes its profile on a clean exit.
  for p in "${cpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0; for p in "${cpids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.2
  done
  for p in "${cpids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done
  sleep 0.3
}
# "m1 m2 m3" CPU ticks of the current cluster's members.
cpu_ticks() { local p out=""; for p in "${cpids[@]}"; do out+="$(awk '{ print $14 + $15 }' "/proc/$p/stat") "; done; echo "$out"; }
# "main others" CPU ticks summed over the members' threads.
thread_ticks() {
  local p main=0 all=0 t
  for p in "${cpids[@]}"; do
    main=$((main + $(awk '{ print $14 + $15 }' "/proc/$p/task/$p/stat")))
    for t in /proc/"$p"/task/*/stat; do all=$((all + $(awk '{ print $14 + $15 }' "$t" 2>/dev/null || echo 0))); done
  done
  echo "$main $((all - main))"
}
leader_of() {
  etcdctl --endpoints="$eps" endpoint status -w json 2>/dev/null | node -e '
    const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const i = s.findIndex((e) => String(e.Status.header.member_id) === String(e.Status.leader));
    console.log(i >= 0 ? i + 1 : 0);' 2>/dev/null || echo 0
}
per_req() { # before after leader n -> "L F F all"
  awk -v b="$1" -v a="$2" -v l="$3" -v n="$4" -v hz="$HZ" 'BEGIN {
    split(b, x, " "); split(a, y, " "); f = ""; all = 0
    for (i = 1; i <= 3; i++) { d = (y[i] - x[i]) * 1e6 / hz / n; all += d; if (i == l) ld = d; else f = f sprintf("/%.0f", d) }
    printf "%.0f%s/%.0f\n", ld, f, all }'
}
bench() { # args... -> req/s
  timeout -k 5 300 "$B" --endpoints="$eps" "$@" 2>&1 | sed -n 's/^ *Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' | head -1 | awk '{ printf "%.0f", $1 }'
}
# measured label n args...: one run, printed with its CPU per request.
measured() {
  local label=$1 n=$2; shift 2
  local c0 c1 r l t0 t1 th0 th1 extra=""
  local g0=0 g1=0
  [ -n "$prof" ] && g0=$(cat "$prof"-m*.log | grep -c Scavenge || true)
  l=$(leader_of); c0=$(cpu_ticks); th0=$(thread_ticks); t0=$(mono_us)
  r=$(bench "$@")
  t1=$(mono_us); c1=$(cpu_ticks); th1=$(thread_ticks)
  [ -n "$prof" ] && g1=$(cat "$prof"-m*.log | grep -c Scavenge || true)
  if [ "$v" != etcd ]; then
    extra=$(awk -v a="$th0" -v b="$th1" -v n="$n" -v hz="$HZ" 'BEGIN { split(a, x, " "); split(b, y, " ");
      printf "main/other µs/put %.0f/%.0f", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) * 1e6 / hz / n }')
  fi
  [ -n "$prof" ] && extra+=" window_us=$t0..$t1 leader=m$l scavenges(3 members, with --trace-gc)=$((g1 - g0))"
  printf '%-3s %-40s %-8s %7s %-20s %s\n' "$round" "${vname:0:40}" "$label" "$r" "$(per_req "$c0" "$c1" "$l" "$n")" "$extra"
}

echo "fresh 3-member clusters, $ROUNDS rounds, warm-up $WARMUP; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-3s %-40s %-8s %7s %-20s %s\n' rnd variant workload "req/s" "µs/req L/F/F/all" ""
PUT="put --key-size=8 --sequential-keys --val-size=256"
for round in $(seq 1 "$ROUNDS"); do
  order=("${!VARIANTS[@]}")
  if [ $((round % 2)) = 0 ]; then order=(); for ((k = ${#VARIANTS[@]} - 1; k >= 0; k--)); do order+=("$k"); done; fi
  for k in "${order[@]}"; do
    v=${VARIANTS[k]}; vname="$k:${v##*/}"
    prof=""; [ -n "${PROF_DIR:-}" ] && [ "$v" != etcd ] && prof="$PROF_DIR/v$k-r$round"
    start_cluster "$v" "$prof"
    measured cold 5000 --conns=10 --clients=100 $PUT --total=5000
    if [ $ONLY_COLD = 0 ]; then
      bench --conns=10 --clients=100 $PUT --total="$WARMUP" >/dev/null
      measured warm 10000 --conns=10 --clients=100 $PUT --total=10000
      measured put-1 500 --conns=1 --clients=1 $PUT --total=500
      measured range-s 10000 --conns=10 --clients=100 range ready --consistency=s --total=10000
    fi
    stop_cluster
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
