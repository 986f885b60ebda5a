#!/usr/bin/env bash
# Scale benchmark of issue 17: the same scenario (load, overwrite, catch-up of a killed follower by
# snapshot, endpoint hashkv, defrag, snapshot save, restart after kill -9) on a 3-member quorumkv
# cluster and a 3-member etcd 3.4 cluster in one run; prints each operation's time on both, every
# member's peak RSS (VmHWM) during it, and quorumkv's longest event-loop stall. See
# scripts/bench-scale.ts for what each operation does and docs/performance.md for results.
#
# Usage: scripts/bench-scale.sh [--keys=50000] [--value-bytes=4096] [--overwrite=N] [--clients=100]
#                               [--extra=12000] [--systems=quorumkv,etcd] [--flags="..."] ...
# Needs: etcd and etcdctl 3.4 (Debian: apt-get install -y etcd-server etcd-client), node.
# Disk: about 2-3× keys × value-bytes per member and system (LevelDB, bbolt, WAL, snapshot file).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v "${ETCD:-/usr/bin/etcd}" >/dev/null || { echo "etcd not found (apt-get install -y etcd-server etcd-client)" >&2; exit 2; }
command -v "${ETCDCTL:-/usr/bin/etcdctl}" >/dev/null || { echo "etcdctl not found (apt-get install -y etcd-client)" >&2; exit 2; }
npx tsc -p .
exec node dist/scripts/bench-scale.js --etcd="${ETCD:-/usr/bin/etcd}" --etcdctl="${ETCDCTL:-/usr/bin/etcdctl}" "$@"
