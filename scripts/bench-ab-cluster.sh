#!/bin/bash
# A/B of two builds as 3-member clusters with etcd's benchmark, in one run: a fresh cluster of each
# side by side on loopback, then put (100 clients, 256 B) and put (1 client, 256 B) against all
# three members' client URLs, alternating A,B then B,A for ROUNDS rounds (compare within the run
# only), with each member's CPU time per request (user + system from /proc/PID/stat: the leader,
# then the two followers). For changes that touch the members' traffic with each other (the peer
# port). Members are killed (process groups) on exit; data dirs under a fresh $TMPDIR directory.
#
#   [VAL_BYTES=4096] scripts/bench-ab-cluster.sh <dir of build A> <dir of build B> [ROUNDS=2]
#   (VAL_BYTES: the value size of both workloads, default 256; WORKLOADS="put-1" runs only that one)
#   (each a checkout with dist/ built, e.g. `git worktree add /tmp/a <commit> && ln -s
#    <repo>/node_modules /tmp/a && cd /tmp/a && npx tsc -p .`)
set -u
A=${1:?build A dir}; B=${2:?build B dir}; ROUNDS=${3:-2}; VAL=${VAL_BYTES:-256}
BENCH=${ETCD_BENCHMARK:-/work/bin/etcd-benchmark}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/bench-ab-cluster.XXXXXX")
declare -A DIR=([A]=$A [B]=$B) BASE=([A]=24700 [B]=24800)
cleanup() {
  for f in "$RUN"/*.pid; do [ -f "$f" ] && kill -9 -- "-$(cat "$f")" 2>/dev/null; done
  rm -rf "$RUN"
}
trap cleanup EXIT

eps_of() { local b=${BASE[$1]}; echo "127.0.0.1:$((b + 1)),127.0.0.1:$((b + 3)),127.0.0.1:$((b + 5))"; }
for v in A B; do
  base=${BASE[$v]}; ic=""
  for i in 1 2 3; do ic+="${ic:+,}m$i=http://127.0.0.1:$((base + 2 * i))"; done
  for i in 1 2 3; do
    c=$((base + 2 * i - 1)); p=$((base + 2 * i))
    # In a subshell: not a job of this shell (no "Killed" lines when cleanup kills it).
    (setsid node "${DIR[$v]}/dist/src/cli/quorumkv.js" --name="m$i" --data-dir="$RUN/$v-m$i" \
      --listen-client-urls="http://127.0.0.1:$c" --advertise-client-urls="http://127.0.0.1:$c" \
      --listen-peer-urls="http://127.0.0.1:$p" --initial-advertise-peer-urls="http://127.0.0.1:$p" \
      --initial-cluster="$ic" --initial-cluster-token="ab-$v" --initial-cluster-state=new --log-level=warn \
      >"$RUN/$v-m$i.log" 2>&1 </dev/null & echo $! >"$RUN/$v-m$i.pid")
  done
done
for v in A B; do
  ok=0
  for _ in $(seq 1 150); do
    if etcdctl --endpoints="$(eps_of $v)" put bench-ready 1 >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok = 1 ] || { echo "cluster $v did not become healthy: $(tail -3 "$RUN/$v-m1.log")" >&2; exit 1; }
done

cpu_ticks() { # version -> "m1 m2 m3"
  local out="" m
  for m in 1 2 3; do out+="$(awk '{ print $14 + $15 }' "/proc/$(cat "$RUN/$1-m$m.pid")/stat") "; done
  echo "$out"
}
leader_of() { # version -> 1..3
  etcdctl --endpoints="$(eps_of "$1")" endpoint status -w json 2>/dev/null | node -e '
    const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const i = s.findIndex((e) => String(e.Status.header.member_id) === String(e.Status.leader));
    console.log(i >= 0 ? i + 1 : 0);' 2>/dev/null || echo 0
}
# "leader follower follower" CPU µs per request from two cpu_ticks lines.
cpu_per_request() { # before after leader requests
  awk -v b="$1" -v a="$2" -v l="$3" -v n="$4" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(b, x, " "); split(a, y, " "); f = ""
    for (i = 1; i <= 3; i++) { d = (y[i] - x[i]) * 1e6 / hz / n; if (i == l) ld = d; else f = f sprintf(" %.0f", d) }
    printf "%.0f%s\n", ld, f }'
}
run() { # name version total args...
  local name=$1 v=$2 n=$3; shift 3
  local l b out
  l=$(leader_of "$v"); b=$(cpu_ticks "$v")
  out=$(timeout 120 "$BENCH" --endpoints="$(eps_of "$v")" "$@" --total="$n" 2>&1)
  printf '%-8s | %s | %8s req/s | p50 %6s ms | p99 %6s ms | CPU µs/req L F F: %s\n' "$name" "$v" \
    "$(sed -n 's/^ *Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' <<<"$out" | head -1 | cut -d. -f1)" \
    "$(sed -n 's/^ *50% in \([0-9.]*\) secs.*/\1/p' <<<"$out" | head -1 | awk '{ printf "%.1f", $1 * 1000 }')" \
    "$(sed -n 's/^ *99% in \([0-9.]*\) secs.*/\1/p' <<<"$out" | head -1 | awk '{ printf "%.1f", $1 * 1000 }')" \
    "$(cpu_per_request "$b" "$(cpu_ticks "$v")" "$l" "$n")"
}
PUT100=(--conns=10 --clients=100 put --key-size=8 --sequential-keys --val-size="$VAL")
PUT1=(--conns=1 --clients=1 put --key-size=8 --sequential-keys --val-size="$VAL")
# Warm-up (JIT), results discarded.
for v in A B; do run warm "$v" 10000 "${PUT100[@]}" >/dev/null; run warm "$v" 500 "${PUT1[@]}" >/dev/null; done
echo "values: $VAL bytes; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  [[ " ${WORKLOADS:-put-100 put-1} " == *" put-100 "* ]] && for v in $order; do run put-100 "$v" 15000 "${PUT100[@]}"; done
  [[ " ${WORKLOADS:-put-100 put-1} " == *" put-1 "* ]] && for v in $order; do run put-1 "$v" 1000 "${PUT1[@]}"; done
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
