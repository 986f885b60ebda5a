// Opening a member's data dir: lock it, load the backend, and recover (or create) the WAL, deciding
// the member's identity and the cluster it belongs to.
//
//   new cluster, first start: every member derives the same member IDs (hash of peer URLs and the
//     cluster token) and cluster ID from --initial-cluster, and writes the same bootstrap log: one
//     ConfChange AddNode entry per member at indexes 1..n, term 1, committed. So every member's log
//     holds the whole membership history, and a member added later learns it by replaying the log.
//   existing cluster, first start (a member added with MemberAdd): asks a member listed in
//     --initial-cluster for the cluster ID and member list, finds itself by its peer URLs, and
//     starts with an empty log; the leader sends it the log (or a snapshot).
//   restart: identity from the WAL's metadata, membership from the backend (as of its applied
//     index), Raft state from the WAL.
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { ServerConfig } from '../config/flags';
import type { Logger } from '../util/log';
import { computeClusterId } from '../util/ids';
import { Backend, type LoadedState } from '../storage/backend/backend';
import { SpillFile } from '../storage/spill_file';
import { Wal } from '../storage/wal';
import { lockDataDir, type DataDirLock } from '../storage/lock';
import { ConfChangeType, EntryType, encodeConfChange } from '../raft';
import type { ConfState, Entry } from '../raft';
import { emptyHardState } from '../raft/types';
import type { RecoveredRaftState } from './raft_node';
import { Membership, initialMembers, memberFromJson, memberToJson, membershipFromRecords, type Member, type MemberJson } from './membership';
import { finishInterruptedSnapshotInstall } from './snapshot';
import { serviceDefinition } from '../proto';
import { credentialsForUrl, type TlsMaterial } from '../tls';

export interface OpenedStorage {
  lock: DataDirLock;
  backend: Backend;
  wal: Wal;
  recovered: RecoveredRaftState;
  /** Raft configuration as of the backend's applied index (what Raft starts with). */
  confState: ConfState;
  membership: Membership;
  memberId: bigint;
  clusterId: bigint;
  loaded: LoadedState;
}

export function encodeMetadata(memberId: bigint, clusterId: bigint): Uint8Array {
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

/** The bootstrap log of a new cluster: one AddNode per member, in member ID order. */
export function bootstrapEntries(members: readonly Member[]): Entry[] {
  return members.map((m, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: ConfChangeType.AddNode, nodeId: m.id, context: Buffer.from(JSON.stringify({ member: memberToJson(m) })) }),
  }));
}

/** Asks the members in --initial-cluster (other than us) for the cluster's member list (https://
 *  peer URLs are dialed with the peer TLS files). */
export async function fetchClusterMembers(peerUrls: string[], timeoutMs = 5000, peerTls?: TlsMaterial): Promise<{ clusterId: bigint; members: Member[] }> {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('quorumkvpb.PeerCluster'), 'PeerCluster');
  const errors: string[] = [];
  for (const url of peerUrls) {
    const u = new URL(url);
    let creds: grpc.ChannelCredentials;
    try {
      creds = credentialsForUrl(url, peerTls, 'peer URL');
    } catch (err) {
      errors.push((err as Error).message);
      continue;
    }
    const client = new Ctor(`${u.hostname}:${u.port}`, creds) as unknown as {
      Members(req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: { cluster_id: string; members_json: Buffer }) => void): void;
      close(): void;
    };
    try {
      const res = await new Promise<{ cluster_id: string; members_json: Buffer }>((resolve, reject) =>
        client.Members({}, { deadline: Date.now() + timeoutMs }, (err, r) => (err ? reject(err) : resolve(r))),
      );
      const members = (JSON.parse(res.members_json.toString('utf8')) as MemberJson[]).map(memberFromJson);
      return { clusterId: BigInt(res.cluster_id), members };
    } catch (err) {
      errors.push(`${url}: ${(err as Error).message}`);
    } finally {
      client.close();
    }
  }
  throw new Error(`cannot fetch the cluster's members from any of ${peerUrls.join(', ')} (${errors.join('; ')})`);
}

/** `p`'s value with the time (performance.now()) it was ready. */
async function timed<T>(p: Promise<T>): Promise<{ opened: T; doneMs: number }> {
  const opened = await p;
  return { opened, doneMs: performance.now() };
}

async function openAndLoadBackend(memberDir: string, cfg: ServerConfig, log: Logger): Promise<{ backend: Backend; loaded: LoadedState; doneMs: number }> {
  const backend = await Backend.open(path.join(memberDir, 'backend'));
  try {
    // Values beyond --hot-value-bytes live in the spill file (a cache of the backend's values).
    const spill = cfg.hotValueBytes === undefined ? undefined : { spill: SpillFile.open(path.join(memberDir, 'spill'), log), hotValueBytes: cfg.hotValueBytes };
    const loaded = await backend.load(spill);
    return { backend, loaded, doneMs: performance.now() };
  } catch (err) {
    await backend.close().catch((closeErr) => log.warn('closing the backend after a failed load failed', { error: String(closeErr) }));
    throw err;
  }
}

export async function openStorage(cfg: ServerConfig, log: Logger, peerTls?: TlsMaterial): Promise<OpenedStorage> {
  fs.mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const lock = await lockDataDir(cfg.dataDir, log);
  // The first start-up phase (docs/performance.md "start"): the process's modules are loaded by
  // now; what follows is this member's own data.
  log.info('locked the data dir', { 'data-dir': cfg.dataDir, 'since-start-ms': Math.round(performance.now()) });
  try {
    const memberDir = path.join(cfg.dataDir, 'member');
    const walDir = path.join(memberDir, 'wal');
    fs.mkdirSync(memberDir, { recursive: true, mode: 0o700 });
    finishInterruptedSnapshotInstall(memberDir, log);
    const startMs = performance.now();
    // The WAL is read and checked while the backend loads: each of them waits for the disk and
    // LevelDB on the thread pool in turns, and the other runs meanwhile (a restart's profile was
    // a quarter idle with them one after the other). What each recovers is unchanged: the WAL's
    // recovery does not depend on the backend, and the result is used only once both are done.
    const walOpening = (await Wal.exists(walDir)) ? timed(Wal.open(walDir)) : undefined;
    const backendOpened = openAndLoadBackend(memberDir, cfg, log);
    const [backendResult, walResult] = await Promise.allSettled([backendOpened, walOpening]);
    if (backendResult.status === 'rejected' || walResult.status === 'rejected') {
      // Whatever did open is closed before the lock is released; the first failure is reported.
      const warn = (what: string) => (err: unknown) => log.warn(`closing the ${what} after a failed start failed`, { error: String(err) });
      if (walResult.status === 'fulfilled' && walResult.value) await walResult.value.opened.wal.close().catch(warn('WAL'));
      if (backendResult.status === 'fulfilled') await backendResult.value.backend.close().catch(warn('backend'));
      throw backendResult.status === 'rejected' ? backendResult.reason : (walResult as PromiseRejectedResult).reason;
    }
    const { backend, loaded } = backendResult.value;
    log.info('loaded the backend', {
      'applied-index': loaded.appliedIndex,
      revision: loaded.store.currentRevision,
      'took-ms': Math.round(backendResult.value.doneMs - startMs),
      'since-start-ms': Math.round(backendResult.value.doneMs),
    });
    const saved = membershipFromRecords(loaded.members, loaded.removed);
    const initial = initialMembers(cfg.initialCluster, cfg.initialClusterToken);
    if (walResult.value !== undefined) {
      const { opened, doneMs: walDoneMs } = walResult.value;
      const st = opened.state;
      const ids = decodeMetadata(st.metadata);
      if (!ids) throw new Error(`the WAL in ${walDir} has no member metadata: refusing to start`);
      if (st.tornTail) log.warn('WAL had a torn tail (a write cut short by a crash); truncated it', { ...st.tornTail });
      // Entry payloads are slices of whole segment buffers: copy them so a segment is not kept
      // alive by the few entries that point into it.
      const entries = st.entries.map((e) => ({ ...e, data: Buffer.from(e.data) }));
      log.info('recovered from WAL', {
        entries: entries.length,
        term: st.hardState.term,
        commit: st.hardState.commit,
        'applied-index': loaded.appliedIndex,
        'took-ms': Math.round(walDoneMs - startMs),
        'since-start-ms': Math.round(walDoneMs),
      });
      // Before the bootstrap entries were applied, the backend has no members: the configuration
      // at index 0 is then the initial cluster of a new one (empty for a joining member).
      const membership = saved.members.size > 0 ? saved : cfg.initialClusterState === 'new' ? new Membership(initial) : saved;
      return {
        lock,
        backend,
        wal: opened.wal,
        recovered: { hardState: st.hardState, snapshot: st.snapshot, entries, appliedIndex: loaded.appliedIndex },
        confState: membership.confState(),
        membership,
        memberId: ids.memberId,
        clusterId: ids.clusterId,
        loaded,
      };
    }
    if (loaded.appliedIndex > 0) {
      throw new Error(`data dir ${cfg.dataDir} has a backend at applied index ${loaded.appliedIndex} but no WAL: refusing to start (restore the member from a snapshot)`);
    }
    if (cfg.initialClusterState === 'new') {
      const me = initial.find((m) => m.name === cfg.name)!;
      const clusterId = computeClusterId(initial.map((m) => m.id));
      const wal = await Wal.create(walDir, encodeMetadata(me.id, clusterId));
      const entries = bootstrapEntries(initial);
      const hardState = { term: 1, vote: 0n, commit: entries.length };
      await wal.save(hardState, entries);
      const membership = new Membership(initial);
      log.info('bootstrapped a new cluster', { members: initial.map((m) => `${m.name}=${m.id.toString(16)}`), 'cluster-id': clusterId.toString(16) });
      return { lock, backend, wal, recovered: { hardState, snapshot: undefined, entries, appliedIndex: 0 }, confState: membership.confState(), membership, memberId: me.id, clusterId, loaded };
    }
    // Joining an existing cluster.
    const others = [...cfg.initialCluster].filter(([name]) => name !== cfg.name).flatMap(([, urls]) => urls);
    const fetched = await fetchClusterMembers(others, undefined, peerTls);
    const me = fetched.members.find((m) => m.peerURLs.some((u) => cfg.initialAdvertisePeerUrls.includes(u)));
    if (!me) {
      throw new Error(
        `this member's peer URLs (${cfg.initialAdvertisePeerUrls.join(',')}) are not in the cluster's member list: add it with MemberAdd (etcdctl member add) first`,
      );
    }
    const wal = await Wal.create(walDir, encodeMetadata(me.id, fetched.clusterId));
    const membership = new Membership(fetched.members);
    log.info('joining an existing cluster', { 'member-id': me.id.toString(16), 'cluster-id': fetched.clusterId.toString(16) });
    return {
      lock,
      backend,
      wal,
      recovered: { hardState: emptyHardState(), snapshot: undefined, entries: [], appliedIndex: 0 },
      confState: { voters: [], learners: [] },
      membership,
      memberId: me.id,
      clusterId: fetched.clusterId,
      loaded,
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}
