#!/usr/bin/env bash
# Runs a local quorumkv cluster from a directory of member config files (one YAML per member, the
# flag names as keys; see cluster-configs/1-node, 3-node, 5-node).
#
#   scripts/cluster.sh start 3|cluster-configs/3-node   start every member, wait until all are healthy
#   scripts/cluster.sh status                           endpoint status table + member list
#   scripts/cluster.sh stop [NAME]                      SIGTERM (then SIGKILL after 10 s) all or one
#   scripts/cluster.sh kill NAME [SIGNAL]               default SIGKILL (SIGSTOP / SIGCONT to pause)
#   scripts/cluster.sh restart NAME                     stop it if running, start it, wait until healthy
#   scripts/cluster.sh isolate NAME | heal NAME         drop / restore all its peer traffic (failpoints)
#   scripts/cluster.sh endpoints                        comma-separated client endpoints, for etcdctl
#
# State lives in the run dir ($QUORUMKV_RUN_DIR, default ./.cluster-run): per member NAME.pid,
# NAME.log (its JSON log lines), NAME.yaml (its config), NAME.failpoints.json, and its data dir
# NAME.etcd (members run with the run dir as working directory). `stop` keeps the data; remove the
# run dir to start from scratch. Only processes whose PIDs are in the run dir are ever signalled.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${QUORUMKV_RUN_DIR:-$PWD/.cluster-run}
server="$repo/dist/src/cli/quorumkv.js"
healthy_timeout_s=${QUORUMKV_HEALTHY_TIMEOUT_S:-30}
stop_timeout_s=10
export ETCDCTL_API=3

die() { echo "cluster.sh: $*" >&2; exit 1; }
members() { for f in "$run_dir"/*.yaml; do [ -e "$f" ] && basename "$f" .yaml; done; }
yaml_value() { sed -n "s/^$2: *//p" "$1" | head -1; }
client_url() { yaml_value "$run_dir/$1.yaml" advertise-client-urls | cut -d, -f1; }
endpoint_of() { client_url "$1" | sed 's#^https\?://##'; }
endpoints() { local e=(); for m in $(members); do e+=("$(endpoint_of "$m")"); done; (IFS=,; echo "${e[*]}"); }
pid_of() { [ -f "$run_dir/$1.pid" ] && cat "$run_dir/$1.pid" || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
need_member() { [ -f "$run_dir/$1.yaml" ] || die "no member $1 in $run_dir (members: $(members | tr '\n' ' '))"; }

start_member() {
  local name=$1
  alive "$name" && { echo "$name already running (pid $(pid_of "$name"))"; return; }
  rm -f "$run_dir/$name.pid"
  [ -f "$run_dir/$name.failpoints.json" ] || echo '{}' >"$run_dir/$name.failpoints.json"
  # setsid: each member in its own session and process group. setsid may fork, so the shell it
  # runs records its own PID, then becomes the member with exec.
  # exec all the way down: no shell stays behind holding this script's stdout.
  (cd "$run_dir" || exit 1
    QUORUMKV_FAILPOINTS="$run_dir/$name.failpoints.json" exec setsid bash -c 'echo $$ >"$1"; exec node "$2" --config-file="$3"' \
      _ "$run_dir/$name.pid" "$server" "$run_dir/$name.yaml" >>"$run_dir/$name.log" 2>&1 </dev/null) &
  disown $! 2>/dev/null || true
  local deadline=$((SECONDS + 5))
  until [ -s "$run_dir/$name.pid" ]; do [ $SECONDS -lt $deadline ] || die "$name did not start"; sleep 0.05; done
  echo "started $name (pid $(pid_of "$name"), client $(client_url "$name"), log $run_dir/$name.log)"
}

# Healthy = etcdctl endpoint health succeeds on the member (a quorum read: there is a leader).
wait_healthy() {
  local deadline=$((SECONDS + healthy_timeout_s)) m
  for m in "$@"; do
    until etcdctl --endpoints="$(endpoint_of "$m")" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; do
      alive "$m" || die "$m exited; last log lines:$(echo; tail -5 "$run_dir/$m.log")"
      [ $SECONDS -lt $deadline ] || die "$m not healthy after ${healthy_timeout_s} s; see $run_dir/$m.log"
      sleep 0.2
    done
  done
  echo "healthy: $*"
}

stop_member() {
  local name=$1 p
  p=$(pid_of "$name")
  alive "$name" || { rm -f "$run_dir/$name.pid"; return; }
  kill -CONT "$p" 2>/dev/null || true # a paused member cannot handle SIGTERM
  kill -TERM "$p"
  local deadline=$((SECONDS + stop_timeout_s))
  while kill -0 "$p" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -KILL "$p" 2>/dev/null || true; fi
    sleep 0.1
  done
  rm -f "$run_dir/$name.pid"
  echo "stopped $name"
}

cmd=${1:-}
shift || true
case "$cmd" in
  start)
    src=${1:?usage: cluster.sh start CONFIG_DIR|1|3|5}
    [[ $src =~ ^[0-9]+$ ]] && src="$repo/cluster-configs/$src-node"
    [ -d "$src" ] || die "no config dir $src"
    [ -f "$server" ] || (cd "$repo" && npx tsc -p .)
    mkdir -p "$run_dir"
    if [ -n "$(members)" ]; then
      for m in $(members); do alive "$m" && die "a cluster is already running in $run_dir ($m); stop it first"; done
    fi
    for f in "$src"/*.yaml; do cp "$f" "$run_dir/$(basename "$f")"; done
    for m in $(members); do start_member "$m"; done
    # shellcheck disable=SC2046
    wait_healthy $(members)
    echo "endpoints: $(endpoints)"
    ;;
  stop)
    if [ -n "${1:-}" ]; then need_member "$1"; stop_member "$1"; else for m in $(members); do stop_member "$m"; done; fi
    ;;
  status)
    [ -n "$(members)" ] || die "no cluster in $run_dir"
    for m in $(members); do
      if alive "$m"; then echo "$m: running (pid $(pid_of "$m")) $(client_url "$m")"; else echo "$m: not running"; fi
    done
    # Plain endpoints rather than --cluster: see docs/operations.md (etcdctl's --cluster dials
    # URLs, which Maintenance calls on quorumkv do not accept yet).
    etcdctl --endpoints="$(endpoints)" --dial-timeout=1s --command-timeout=3s endpoint status -w table || true
    etcdctl --endpoints="$(endpoints)" --dial-timeout=1s --command-timeout=3s member list -w table || true
    ;;
  kill)
    name=${1:?usage: cluster.sh kill NAME [SIGNAL]}
    need_member "$name"
    alive "$name" || die "$name is not running"
    kill -"${2:-KILL}" "$(pid_of "$name")"
    echo "sent SIG${2:-KILL} to $name (pid $(pid_of "$name"))"
    ;;
  restart)
    name=${1:?usage: cluster.sh restart NAME}
    need_member "$name"
    stop_member "$name"
    start_member "$name"
    wait_healthy "$name"
    ;;
  isolate | heal)
    name=${1:?usage: cluster.sh $cmd NAME}
    need_member "$name"
    if [ "$cmd" = isolate ]; then echo '{"dropPeerTraffic":["*"]}' >"$run_dir/$name.failpoints.json"; else echo '{}' >"$run_dir/$name.failpoints.json"; fi
    echo "$name: $cmd (takes effect within 100 ms)"
    ;;
  endpoints)
    endpoints
    ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
