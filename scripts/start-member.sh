#!/usr/bin/env bash
# Starts one quorumkv member from a flags file (one flag per line, # comments) and waits until it
# answers etcdctl, printing its PID. Usage: scripts/start-member.sh cluster-configs/single-node.flags [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
flags_file=${1:?usage: start-member.sh FLAGS_FILE [DATA_DIR]}
mapfile -t flags < <(grep -v '^\s*#' "$flags_file" | grep -v '^\s*$')
[ -n "${2:-}" ] && flags+=("--data-dir=$2")
[ -f dist/src/cli/quorumkv.js ] || npm run build >/dev/null
setsid node dist/src/cli/quorumkv.js "${flags[@]}" >>"${LOG_FILE:-quorumkv.log}" 2>&1 &
pid=$!
endpoint=$(printf '%s\n' "${flags[@]}" | sed -n 's/^--listen-client-urls=http:\/\/\([^,]*\).*/\1/p' | head -1)
for _ in $(seq 1 100); do
  if command -v etcdctl >/dev/null && etcdctl --endpoints="$endpoint" endpoint health >/dev/null 2>&1; then echo "$pid"; exit 0; fi
  if ! command -v etcdctl >/dev/null && grep -q 'ready to serve client requests' "${LOG_FILE:-quorumkv.log}"; then echo "$pid"; exit 0; fi
  kill -0 "$pid" 2>/dev/null || { echo "member exited; see ${LOG_FILE:-quorumkv.log}" >&2; exit 1; }
  sleep 0.1
done
echo "member $pid not healthy after 10 s" >&2
exit 1
