// The commit record: what one backend commit (a LevelDB batch) says about the state it completes —
// the applied index and term, the current revision and the allocated size — written in the same
// batch as the versions it completes, so a restart finds them together or not at all.
//
// Where it lives decides LevelDB's write amplification. These four values used to be meta records
// ('m' namespace) rewritten by every commit. Then every table LevelDB flushed spanned from the
// commit's first version key to the meta keys, so it overlapped every older table holding meta
// keys, and each byte of every value was rewritten once per level on its way down (measured with
// 100k revision-keyed 4 KiB records in batches of 300: 1,521 MiB written for 394 MiB of data and
// 7.1 s of CPU, against 797 MiB and 4.0 s with no meta key in the batches; at 1.6 GB a member
// wrote 9.6 GB per 1.6 GB loaded, etcd 4.1 GB). The commit record is instead keyed in the version
// namespace at (current revision, COMMIT_SUB), just after that revision's versions: a commit's
// records are in key order after every earlier commit's, LevelDB flushes them to tables that
// overlap nothing, and moves those down the levels without rewriting them.
//
// The newest commit record is the last record of the version namespace (the current revision only
// grows; a commit that made no revision overwrites the record at the same key). Older ones are
// stale; physical compaction deletes those below its revision. A backend written before this record
// existed (or by a restore, or received in a snapshot stream) has the values in meta records only:
// readCommitState falls back to them. Snapshot streams carry the meta records, never commit records
// (snapshot.ts), so the stream's format is what it was.
import { assert } from '../../util/assert';
import type { LevelDb } from '../leveldb';
import { META_ALLOCATED_BYTES, META_APPLIED_INDEX, META_APPLIED_TERM, META_CURRENT_REV, NS_KV, NS_META, kvRecordKey, readU64, readU64Number, u64, writeU64Number } from './records';

type LevelDbSnapshot = ReturnType<LevelDb['snapshot']>;

/** The sub-revision of a commit record: no version has it (a revision's versions are numbered from
 *  0, one per change of a txn, bounded far below by --max-txn-ops). */
export const COMMIT_SUB = 0xffffffff;
const KEY_BYTES = 13; // kvRecordKey's
const VALUE_BYTES = 32;

export interface CommitState {
  appliedIndex: number;
  appliedTerm: number;
  /** The store's current revision after the commit. */
  currentRevision: number;
  /** Backend.allocatedBytes at the commit (the quota's size; a restart must not forget it). */
  allocatedBytes: number;
}

/** The meta records that held a CommitState before commit records existed (and still do in a
 *  snapshot stream), in key order. */
export const COMMIT_STATE_META_KEYS: readonly Buffer[] = [META_ALLOCATED_BYTES, META_APPLIED_INDEX, META_APPLIED_TERM, META_CURRENT_REV].sort((a, b) => Buffer.compare(a, b));

export function commitRecordKey(currentRevision: number): Buffer {
  return kvRecordKey(currentRevision, COMMIT_SUB);
}

export function isCommitRecordKey(k: Buffer): boolean {
  return k.length === KEY_BYTES && k[0] === NS_KV && k.readUInt32BE(9) === COMMIT_SUB;
}

export function encodeCommitRecord(s: CommitState): Buffer {
  const v = Buffer.allocUnsafe(VALUE_BYTES);
  writeU64Number(v, s.appliedIndex, 0);
  writeU64Number(v, s.appliedTerm, 8);
  writeU64Number(v, s.currentRevision, 16);
  writeU64Number(v, s.allocatedBytes, 24);
  return v;
}

export function decodeCommitRecord(v: Buffer): CommitState {
  assert(v.length === VALUE_BYTES, `commit record: ${v.length} bytes, expected ${VALUE_BYTES}`);
  return { appliedIndex: readU64Number(v, 0), appliedTerm: readU64Number(v, 8), currentRevision: readU64Number(v, 16), allocatedBytes: readU64Number(v, 24) };
}

/** The CommitState meta records for `s` (what a snapshot stream carries), in key order. */
export function commitStateMetaRecords(s: CommitState): [Buffer, Buffer][] {
  const byKey = new Map<Buffer, Buffer>([
    [META_APPLIED_INDEX, u64(s.appliedIndex)],
    [META_APPLIED_TERM, u64(s.appliedTerm)],
    [META_CURRENT_REV, u64(s.currentRevision)],
    [META_ALLOCATED_BYTES, u64(s.allocatedBytes)],
  ]);
  return COMMIT_STATE_META_KEYS.map((k) => [k, byKey.get(k)!]);
}

export function isCommitStateMetaKey(k: Buffer): boolean {
  return k[0] === NS_META && COMMIT_STATE_META_KEYS.some((m) => m.equals(k));
}

/** The state of the newest commit in `db` (or in `snapshot` of it): its newest commit record, or,
 *  in a backend without one, the meta records. */
export async function readCommitState(db: LevelDb, snapshot?: LevelDbSnapshot): Promise<CommitState> {
  const last = await db.iterator({ gte: Buffer.from([NS_KV]), lt: Buffer.from([NS_KV + 1]), reverse: true, limit: 1, ...(snapshot ? { snapshot } : {}) }).all();
  const newest = last[0];
  if (newest !== undefined && isCommitRecordKey(newest[0])) return decodeCommitRecord(newest[1]);
  const [idx, term, rev, allocated] = await db.getMany([META_APPLIED_INDEX, META_APPLIED_TERM, META_CURRENT_REV, META_ALLOCATED_BYTES], snapshot ? { snapshot } : {});
  return { appliedIndex: readU64(idx), appliedTerm: readU64(term), currentRevision: readU64(rev), allocatedBytes: readU64(allocated) };
}
