// Assembles one member from its configuration: the data dir (locked), the backend (LevelDB) and the
// WAL recovered from it, Raft over the WAL, the store and apply path, and the client gRPC server
// with every etcd service.
import fs from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { ServerConfig } from '../config/flags';
import type { MvccStore } from '../mvcc';
import type { Logger } from '../util/log';
import { computeClusterId, computeMemberId, idToHex } from '../util/ids';
import { Server } from '../server/server';
import { RaftLog } from '../server/raft_log';
import { Backend } from '../storage/backend/backend';
import { Wal } from '../storage/wal';
import { lockDataDir, type DataDirLock } from '../storage/lock';
import { emptyHardState } from '../raft/types';
import { ETCD_SERVICES, addService, listen, newGrpcServer, type Handlers } from '../api/grpc_server';
import { kvService } from '../api/kv_service';
import { healthService } from '../api/health_service';
import { WatchableStore } from '../mvcc';
import { CHECKPOINT_INTERVAL_MS_DEFAULT, LeaseRunner, Lessor, minLeaseTtlSec } from '../lease';
import { PROGRESS_NOTIFY_INTERVAL_MS_DEFAULT, WatchHub, watchService } from '../api/watch_service';
import { leaseService } from '../api/lease_service';

/** Entries kept in the log behind a snapshot, for followers that are slightly behind (etcd's
 *  snapshot catch-up entries). */
const SNAPSHOT_CATCH_UP_ENTRIES = 5000;

export interface RunningMember {
  readonly server: Server;
  readonly grpc: grpc.Server;
  readonly clientPorts: number[];
  stop(): Promise<void>;
}

function encodeMetadata(memberId: bigint, clusterId: bigint): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(memberId, 0);
  b.writeBigUInt64BE(clusterId, 8);
  return b;
}

function decodeMetadata(b: Uint8Array | undefined): { memberId: bigint; clusterId: bigint } | undefined {
  if (!b || b.length < 16) return undefined;
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { memberId: buf.readBigUInt64BE(0), clusterId: buf.readBigUInt64BE(8) };
}

interface Storage {
  lock: DataDirLock;
  backend: Backend;
  raftLog: RaftLog;
  memberId: bigint;
  clusterId: bigint;
  loaded: Awaited<ReturnType<Backend['load']>>;
}

async function openStorage(cfg: ServerConfig, log: Logger): Promise<Storage> {
  fs.mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const lock = lockDataDir(cfg.dataDir);
  try {
    const memberDir = path.join(cfg.dataDir, 'member');
    const walDir = path.join(memberDir, 'wal');
    fs.mkdirSync(memberDir, { recursive: true, mode: 0o700 });
    const backend = await Backend.open(path.join(memberDir, 'backend'));
    const loaded = await backend.load();
    let memberId = computeMemberId(cfg.initialAdvertisePeerUrls, cfg.initialClusterToken);
    let clusterId = computeClusterId([memberId]);
    let wal: Wal;
    let recovered = { hardState: emptyHardState(), snapshot: undefined as { index: number; term: number } | undefined, entries: [] as import('../raft').Entry[], appliedIndex: loaded.appliedIndex };
    if (await Wal.exists(walDir)) {
      const opened = await Wal.open(walDir);
      wal = opened.wal;
      const st = opened.state;
      const ids = decodeMetadata(st.metadata);
      if (ids) ({ memberId, clusterId } = ids);
      if (st.tornTail) log.warn('WAL had a torn tail (a write cut short by a crash); truncated it', { ...st.tornTail });
      // Entry payloads are slices of whole segment buffers: copy them so a segment is not kept
      // alive by the few entries that point into it.
      const entries = st.entries.map((e) => ({ ...e, data: Buffer.from(e.data) }));
      recovered = { hardState: st.hardState, snapshot: st.snapshot, entries, appliedIndex: loaded.appliedIndex };
      log.info('recovered from WAL', { entries: entries.length, term: st.hardState.term, commit: st.hardState.commit, 'applied-index': loaded.appliedIndex });
    } else {
      if (loaded.appliedIndex > 0) {
        throw new Error(`data dir ${cfg.dataDir} has a backend at applied index ${loaded.appliedIndex} but no WAL: refusing to start (restore the member from a snapshot)`);
      }
      wal = await Wal.create(walDir, encodeMetadata(memberId, clusterId));
    }
    const raftLog = new RaftLog({
      id: memberId,
      confState: { voters: [memberId], learners: [] },
      wal,
      recovered,
      log,
      tickMs: cfg.heartbeatIntervalMs,
      electionTicks: Math.max(2, Math.round(cfg.electionTimeoutMs / cfg.heartbeatIntervalMs)),
    });
    return { lock, backend, raftLog, memberId, clusterId, loaded };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** A duration from the environment in etcd's (Go) syntax, e.g. "500ms", "10s", "10m". etcd reads
 *  its --experimental-* flags from these ETCD_* variables too. */
function envDurationMs(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const m = /^([0-9]+)(ms|s|m|h)$/.exec(raw.trim());
  if (!m) throw new Error(`invalid ${name}=${JSON.stringify(raw)}: expected a duration like 500ms, 10s or 10m`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(m[1]) * unit;
  if (ms <= 0) throw new Error(`invalid ${name}=${JSON.stringify(raw)}: must be positive`);
  return ms;
}

function encodeLease(state: { ttlSec: number; remainingTtlSec: number }): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigInt64BE(BigInt(state.ttlSec), 0);
  b.writeBigInt64BE(BigInt(state.remainingTtlSec), 8);
  return b;
}

/** Brings back the leases saved in the backend and re-attaches every live key that names one. */
function restoreLeases(lessor: Lessor, saved: Map<bigint, Buffer>, store: MvccStore): void {
  if (saved.size === 0) return;
  for (const [id, rec] of saved) lessor.restore(id, Number(rec.readBigInt64BE(0)), Number(rec.readBigInt64BE(8)));
  const all = store.range(Buffer.from([0]), Buffer.from([0]), {});
  for (const kv of all.kvs) if (kv.lease !== 0n && lessor.exists(kv.lease)) lessor.attach(kv.lease, kv.key);
}

export async function startMember(cfg: ServerConfig, log: Logger): Promise<RunningMember> {
  const st = await openStorage(cfg, log);
  const mlog = log.child({ member: idToHex(st.memberId), name: cfg.name });
  let lastSnapshotIndex = st.loaded.appliedIndex;
  let snapshotting = false;
  // Leases and watchers hang off the apply path: the lessor is the state machine's lease half, and
  // every applied revision's events go to the watchable store (created once the store exists).
  const lessor = new Lessor({
    minTtlSec: minLeaseTtlSec(cfg.electionTimeoutMs),
    checkpointIntervalMs: envDurationMs('ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL') ?? CHECKPOINT_INTERVAL_MS_DEFAULT,
    now: () => performance.now(),
    persist: (id, state) => st.backend.stageLease(id, state ? encodeLease(state) : undefined),
  });
  restoreLeases(lessor, st.loaded.leases, st.loaded.store);
  let watchable: WatchableStore | undefined;
  const server: Server = new Server(st.raftLog, {
    leases: lessor,
    onEvents: (events, rev) => watchable?.notify(events, rev),
    memberId: st.memberId,
    clusterId: st.clusterId,
    maxRequestBytes: cfg.maxRequestBytes,
    log: mlog,
    store: st.loaded.store,
    appliedIndex: st.loaded.appliedIndex,
    backend: st.backend,
    onApplied: (index, term) => {
      if (snapshotting || index - lastSnapshotIndex < cfg.snapshotCount) return;
      snapshotting = true;
      // The backend must hold the state at `index` durably before the WAL may forget the entries.
      st.backend
        .commit(index, term, true)
        .then(() => st.raftLog.snapshot(index, SNAPSHOT_CATCH_UP_ENTRIES))
        .then(() => {
          lastSnapshotIndex = index;
          mlog.info('snapshot taken; older WAL segments released', { index, term });
        })
        .catch((err) => mlog.error('snapshot failed', { error: String(err) }))
        .finally(() => (snapshotting = false));
    },
  });

  watchable = new WatchableStore(server.store);
  const watchHub = new WatchHub(server, watchable, {
    progressNotifyIntervalMs: envDurationMs('ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL') ?? PROGRESS_NOTIFY_INTERVAL_MS_DEFAULT,
    maxRequestBytes: cfg.maxRequestBytes,
  });
  const leaseRunner = new LeaseRunner(lessor, server, (what, err) => mlog.debug(`${what} not applied`, { error: String(err) }));
  // Only the leader's clock decides expiry; a new leader extends every lease by an election
  // timeout so that clients get the chance to reach it with their keepalives (as etcd).
  server.onLeadershipChange((leader) => (leader ? lessor.promote(cfg.electionTimeoutMs) : lessor.demote()));
  if (server.isLeader()) lessor.promote(cfg.electionTimeoutMs);
  leaseRunner.start();

  const g = newGrpcServer(cfg.maxRequestBytes);
  const services: Record<string, Handlers> = {
    'etcdserverpb.KV': kvService(server, { maxTxnOps: cfg.maxTxnOps }),
    'etcdserverpb.Watch': watchService(watchHub),
    'etcdserverpb.Lease': leaseService(server, leaseRunner),
  };
  for (const name of ETCD_SERVICES) addService(g, name, services[name] ?? {});
  let serving = true;
  addService(g, 'grpc.health.v1.Health', healthService(() => serving && server.healthy));
  let clientPorts: number[];
  try {
    clientPorts = await listen(g, cfg.listenClientUrls);
  } catch (err) {
    await server.stop();
    st.lock.release();
    throw err;
  }
  mlog.info('ready to serve client requests', {
    'listen-client-urls': cfg.listenClientUrls,
    'data-dir': cfg.dataDir,
    'cluster-id': idToHex(st.clusterId),
    'applied-index': st.loaded.appliedIndex,
    revision: server.store.currentRevision,
  });

  return {
    server,
    grpc: g,
    clientPorts,
    stop: async () => {
      serving = false;
      leaseRunner.stop();
      watchHub.close();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          g.forceShutdown();
          resolve();
        }, 2000);
        g.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await server.stop();
      st.lock.release();
    },
  };
}
