// Offline work on snapshot files (layout: storage/snapshot_file.ts), for `quorumkv snapshot
// restore|status` (src/cli/snapshot.ts parses their argv and prints the results).
//
// restore: checks the SHA-256, refuses a data dir that is not empty, writes the backend from the
// snapshot into <data-dir>/member/backend, and creates a WAL whose snapshot marker and hard state
// sit at the snapshot's applied index, so the member starts from the restored state (Raft's log
// begins at the snapshot; nothing is replayed). Member and cluster IDs are derived from the flags,
// as a new cluster's are, so the restored member is a new one-member (or --initial-cluster)
// cluster: the membership records of the snapshot are dropped and --initial-cluster's written.
//
// A file's payload is either an etcd (bbolt) database (what quorumkv and etcd serve to `etcdctl
// snapshot save`) or, for files of earlier quorumkv versions, a backend snapshot stream.
import fs from 'node:fs';
import path from 'node:path';
import { levelDb } from '../storage/leveldb';
import { assert } from '../util/assert';
import { computeClusterId, computeMemberId } from '../util/ids';
import {
  SNAPSHOT_ALIGN_BYTES,
  SNAPSHOT_SHA256_BYTES,
  SnapshotFileError,
  emptyBackendStreamFileStats,
  isEtcdDbFile,
  readBackendStreamFile,
  verifySnapshotFile,
  type OnBytes,
} from '../storage/snapshot_file';
import { restoreSnapshotInto, writeRecordsInto, type SnapshotMeta } from '../storage/backend/snapshot';
import { MEMBERSHIP_NAMESPACES } from '../storage/backend/records';
import { Backend } from '../storage/backend/backend';
import { BoltReader } from '../storage/etcddb/bolt';
import { etcdDbAsSnapshotStream, etcdDbStatus } from '../storage/etcddb/etcd_db';
import { Wal } from '../storage/wal';
import { LOCK_DB_NAME, lockDataDir, type DataDirLock } from '../storage/lock';
import { initialMembers, memberRecord } from './membership';
import { encodeMetadata } from './bootstrap';

export interface RestoreOptions {
  dataDir: string;
  name: string;
  initialCluster: Map<string, string[]>;
  initialClusterToken: string;
  /** etcdctl's --skip-hash-check: an etcd database without the SHA-256 (a `member/snap/db`
   *  copied from an etcd data dir) is restored as it is. */
  skipHashCheck?: boolean;
  /** Revisions to add to the snapshot's (0: none); with `markCompacted`, history below the new
   *  revision is compacted (cli/snapshot.ts explains the defaults). */
  bumpRevision?: number;
  markCompacted?: boolean;
  /** Progress over both passes (SHA-256 check, then restore): bytes done of 2 × the file size. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface RestoreResult {
  meta: SnapshotMeta;
  /** The restored store's revision (after a bump). */
  revision: number;
  /** The snapshot's own revision, when it was bumped. */
  bumpedFrom?: number;
  memberId: bigint;
  clusterId: bigint;
  dataDir: string;
}

function isEmptyOrMissing(dir: string): boolean {
  try {
    // A lock database alone is no data (a member that never got further, or a rerun restore).
    return fs.readdirSync(dir).every((n) => n === LOCK_DB_NAME);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

export async function restoreSnapshot(file: string, o: RestoreOptions): Promise<RestoreResult> {
  const bump = o.bumpRevision ?? 0;
  assert(Number.isSafeInteger(bump) && bump >= 0, 'restore: the bump is a non-negative revision count (checked by the CLI)');
  if (!isEmptyOrMissing(o.dataDir)) throw new SnapshotFileError(`data-dir ${JSON.stringify(o.dataDir)} exists and is not empty`);
  const size = (await fs.promises.stat(file)).size;
  const progress = o.onProgress;
  const etcdDb = await isEtcdDbFile(file);
  if (etcdDb && size % SNAPSHOT_ALIGN_BYTES !== SNAPSHOT_SHA256_BYTES && !o.skipHashCheck) {
    throw new SnapshotFileError('snapshot missing hash but --skip-hash-check=false');
  }
  const body = etcdDb && o.skipHashCheck ? size : await verifySnapshotFile(file, progress && ((n) => progress(n, 2 * size)));
  const ids = [...o.initialCluster].map(([name, urls]) => ({ name, id: computeMemberId(urls, o.initialClusterToken) }));
  const me = ids.find((m) => m.name === o.name);
  assert(me !== undefined, 'restore: --name is in --initial-cluster (checked by the flag parser)');
  const clusterId = computeClusterId(ids.map((m) => m.id));
  const createdDataDir = !fs.existsSync(o.dataDir);
  fs.mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  // The data-dir lock, as a member takes it: a member starting on this dir at the same moment is
  // refused (or refuses us), and the emptiness check is repeated under the lock.
  let lock: DataDirLock;
  try {
    lock = await lockDataDir(o.dataDir);
  } catch (err) {
    if (createdDataDir) fs.rmSync(o.dataDir, { recursive: true, force: true });
    throw err;
  }
  const memberDir = path.join(o.dataDir, 'member');
  try {
    const others = fs.readdirSync(o.dataDir).filter((n) => n !== LOCK_DB_NAME);
    if (others.length > 0) throw new SnapshotFileError(`data-dir ${JSON.stringify(o.dataDir)} exists and is not empty`);
    fs.mkdirSync(memberDir, { recursive: true, mode: 0o700 });
    const backendDir = path.join(memberDir, 'backend');
    const second: OnBytes | undefined = progress && ((n) => progress(size + n, 2 * size));
    const { meta, revision } = etcdDb ? await restoreEtcdDb(file, backendDir) : await restoreBackendStream(file, body, backendDir, second);
    progress?.(2 * size, 2 * size);
    await dropMembership(backendDir);
    // The new cluster's membership is --initial-cluster (as etcd's restore rewrites its members
    // bucket); store it, so later membership changes apply on top of it after a restart.
    const backend = await Backend.open(backendDir);
    try {
      for (const m of initialMembers(o.initialCluster, o.initialClusterToken)) backend.stageMember(m.id, memberRecord(m));
      if (bump > 0) {
        backend.stageCurrentRevision(revision + bump);
        if (o.markCompacted) backend.stageCompaction(revision + bump);
      }
      await backend.commit(meta.appliedIndex, meta.appliedTerm, true);
    } finally {
      await backend.close();
    }
    await createWal(path.join(memberDir, 'wal'), meta, me.id, clusterId);
    return bump > 0
      ? { meta, revision: revision + bump, bumpedFrom: revision, memberId: me.id, clusterId, dataDir: o.dataDir }
      : { meta, revision, memberId: me.id, clusterId, dataDir: o.dataDir };
  } catch (err) {
    // Leave the data dir as it was (empty or missing), so the restore can simply be rerun.
    fs.rmSync(createdDataDir ? o.dataDir : memberDir, { recursive: true, force: true });
    if (!createdDataDir) fs.rmSync(path.join(o.dataDir, LOCK_DB_NAME), { recursive: true, force: true });
    throw err;
  } finally {
    lock.release();
  }
}

/** An etcd database: its records mapped onto the backend's (storage/etcddb/etcd_db.ts). */
async function restoreEtcdDb(file: string, backendDir: string): Promise<{ meta: SnapshotMeta; revision: number }> {
  const db = BoltReader.open(file);
  try {
    let info: { revision: number } | undefined;
    const meta = await restoreSnapshotInto(backendDir, etcdDbAsSnapshotStream(db, (i) => (info = i)));
    assert(info !== undefined, 'restore: the etcd database reader reports its revision at the end');
    return { meta, revision: Math.max(1, info.revision) };
  } finally {
    db.close();
  }
}

/** A backend snapshot stream (a file of an earlier quorumkv version). */
async function restoreBackendStream(file: string, body: number, backendDir: string, onBytes?: OnBytes): Promise<{ meta: SnapshotMeta; revision: number }> {
  const stats = emptyBackendStreamFileStats();
  await writeRecordsInto(backendDir, readBackendStreamFile(file, body, stats, onBytes));
  assert(stats.meta !== undefined, 'restore: a parsed stream has its header');
  return { meta: stats.meta, revision: Math.max(1, stats.currentRevision) };
}

/** Raft's log starts at the snapshot: index and term of the last entry in the backend, which is
 *  also the commit index (everything applied was committed). No vote yet in this term. */
async function createWal(walDir: string, meta: SnapshotMeta, memberId: bigint, clusterId: bigint): Promise<void> {
  const wal = await Wal.create(walDir, encodeMetadata(memberId, clusterId));
  try {
    if (meta.appliedIndex > 0) {
      await wal.saveSnapshot({ index: meta.appliedIndex, term: meta.appliedTerm });
      await wal.save({ term: meta.appliedTerm, vote: 0n, commit: meta.appliedIndex }, []);
    }
  } finally {
    await wal.close();
  }
}

/** A restore starts a new cluster: the snapshot's membership records go. */
async function dropMembership(backendDir: string): Promise<void> {
  const db = levelDb(backendDir);
  await db.open();
  try {
    for (const ns of MEMBERSHIP_NAMESPACES) await db.clear({ gte: Buffer.from([ns]), lt: Buffer.from([ns + 1]) });
  } finally {
    await db.close();
  }
}

// --- status ---------------------------------------------------------------------------------------

export interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

/** What `etcdctl snapshot status` shows. For an etcd database (quorumkv's snapshots, and etcd's):
 *  the same figures etcdctl computes (etcd_db.ts etcdDbStatus). For a file of an earlier quorumkv
 *  version (a backend stream): hash = CRC32-C of the payload, revision = the store's, total keys =
 *  records in the backend, total size = the file's size. */
export async function snapshotStatus(file: string): Promise<SnapshotStatus> {
  const body = await verifySnapshotFile(file);
  if (await isEtcdDbFile(file)) {
    const db = BoltReader.open(file);
    try {
      return etcdDbStatus(db);
    } finally {
      db.close();
    }
  }
  const stats = emptyBackendStreamFileStats();
  for await (const _ of readBackendStreamFile(file, body, stats)) {
    // the reader parses and checks the payload, filling in stats; the records are not needed
  }
  return { hash: stats.payloadCrc >>> 0, revision: Math.max(1, stats.currentRevision), totalKey: stats.records, totalSize: (await fs.promises.stat(file)).size };
}
