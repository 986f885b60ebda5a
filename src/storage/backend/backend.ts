// The durable applied state, in LevelDB (`level`): every MVCC version under its revision (etcd's
// "key" bucket: key = main revision + sub-revision, value = the KeyValue), the applied index and
// compaction point in a meta namespace, and room for leases and membership (the namespaces and
// record keys are in records.ts).
//
// The apply loop stages each revision's events and commits them after each applied batch of log
// entries, together with the applied index, so that the backend is always exactly "the state after
// entry N". Commits are grouped as etcd groups its bolt transactions (--backend-batch-interval
// 100 ms, --backend-batch-limit 10000): the ops of the commits made within BATCH_INTERVAL_MS go to
// LevelDB as one batch (sooner once BATCH_LIMIT_OPS are waiting, and at once for a synced commit or
// anything that reads the database: snapshots, defragment, close). One LevelDB write per applied
// batch cost a thread-pool wake-up per request at low load (~40 us of a 0.8 ms single-client put on
// this machine). Batches are not fsynced: the WAL is the source of truth, and a restart replays the
// WAL tail after the backend's applied index. Before WAL segments are released (after a snapshot),
// the backend is synced, so that the entries being dropped are durable here first.
import { levelDb, type LevelDb } from '../leveldb';
import { assert } from '../../util/assert';
import { LOOP_CLOCK } from '../../util/slice_clock';
import type { Event, KeyValue, Revision, SpillRef, StoredKv } from '../../mvcc';
import { MvccStore, SnapshotImporter, SPILL_BYTES_PER_STEP, type ValueSpill } from '../../mvcc';
import { openSnapshotRecords, openSnapshotStream, type SnapshotMeta } from './snapshot';
import { COMMIT_SUB, commitRecordKey, encodeCommitRecord, isCommitRecordKey, readCommitState, type CommitState } from './commit_record';
import {
  AUTH_ROLE,
  AUTH_USER,
  LEASE_VALUE_BYTES,
  META_ALLOCATED_BYTES,
  META_AUTH_ENABLED,
  META_AUTH_REVISION,
  META_COMPACT_REV,
  NS_ALARM,
  NS_AUTH,
  NS_KV,
  NS_LEASE,
  NS_MEMBER,
  NS_REMOVED,
  alarmKey,
  authKey,
  decodeLease,
  encodeLease,
  idKey,
  leaseIdOfKey,
  leaseKey,
  kvRecordKey,
  readU64,
  readU64Number,
  u64,
  writeU64Number,
  type LeaseRecord,
} from './records';

export { kvRecordKey } from './records';

type Db = LevelDb;
type BatchOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

/** etcd's backend batch interval and limit: how long, and for how many ops, commits are grouped. */
export const BATCH_INTERVAL_MS = 100;
export const BATCH_LIMIT_OPS = 10_000;
/** KV records read per LevelDB iterator call while loading: bounds the time between yields (each
 *  call waits for LevelDB on the thread pool, so the loop runs timers and I/O in between). 1024
 *  versions of 4 KiB decode, import and spill in ~10 ms. */
const LOAD_RECORDS_PER_STEP_MAX = 1024;
/** Key+value bytes per LevelDB iterator call (classic-level's default of 16 KiB would make every
 *  call return a handful of records: one thread-pool round trip per 4 values of 4 KiB). 1 MiB:
 *  while loading, one call's records are decoded, imported and spilled before the next yield, so
 *  this bounds the slice (a few ms) whatever the value size. */
const ITERATOR_READ_BYTES_MAX = 1024 * 1024;
/** Keys compacted per step while loading, between yields to the event loop. */
const LOAD_COMPACT_KEYS_PER_STEP_MAX = 10_000;
/** Versions examined per physical-compaction step. */
const COMPACT_RECORDS_PER_STEP_MAX = 4096;
/** What one record costs beyond its key and value bytes in the size estimate (LevelDB's internal
 *  key suffix and length varints; about bolt's per-element header too). */
const RECORD_OVERHEAD_BYTES = 16;
/** A lease record's size: key + (TTL, remaining TTL). */
const LEASE_RECORD_BYTES = 9 + LEASE_VALUE_BYTES + RECORD_OVERHEAD_BYTES;

function recordBytes(key: Buffer, value: Buffer): number {
  return key.length + value.length + RECORD_OVERHEAD_BYTES;
}

/** KeyValue encoding: createRev u64 | version u64 | lease i64 | keyLen u32 | key | value.
 *  modRevision is the record key's main revision. A tombstone is version 0 (the MVCC rule). */
export function encodeKv(kv: KeyValue): Buffer {
  const b = Buffer.allocUnsafe(28 + kv.key.length + kv.value.length);
  writeU64Number(b, kv.createRevision, 0);
  writeU64Number(b, kv.version, 8);
  if (kv.lease === NO_LEASE) b.fill(0, 16, 24);
  else b.writeBigInt64BE(kv.lease, 16);
  b.writeUInt32BE(kv.key.length, 24);
  b.write(kv.key, 28, 'latin1');
  b.write(kv.value, 28 + kv.key.length, 'latin1');
  return b;
}


const NO_LEASE = 0n;

/** A kv record's fields but its value (decodeKv, and the load that spills values as bytes). */
function decodeKvHeader(recordKey: Buffer, b: Buffer): { key: string; createRevision: number; modRevision: number; version: number; lease: bigint; valueStart: number } {
  assert(recordKey.length === 13 && recordKey[0] === NS_KV, 'backend: malformed kv record key');
  const keyLen = b.readUInt32BE(24);
  assert(28 + keyLen <= b.length, 'backend: kv record shorter than its key');
  return {
    key: b.toString('latin1', 28, 28 + keyLen),
    createRevision: readU64Number(b, 0),
    modRevision: readU64Number(recordKey, 1),
    version: readU64Number(b, 8),
    // Most versions have no lease: no BigInt made for them.
    lease: b.readUInt32BE(16) === 0 && b.readUInt32BE(20) === 0 ? NO_LEASE : b.readBigInt64BE(16),
    valueStart: 28 + keyLen,
  };
}

export function decodeKv(recordKey: Buffer, b: Buffer): KeyValue {
  const h = decodeKvHeader(recordKey, b);
  return { key: h.key, createRevision: h.createRevision, modRevision: h.modRevision, version: h.version, value: b.toString('latin1', h.valueStart), lease: h.lease };
}

export interface LoadedState {
  store: MvccStore;
  appliedIndex: number;
  appliedTerm: number;
  /** Leases saved by the lessor (records.ts LeaseRecord). */
  leases: Map<bigint, LeaseRecord>;
  /** Cluster members (JSON, see server/membership.ts) and removed member IDs. */
  members: Buffer[];
  removed: bigint[];
  /** Active alarms (server/alarms.ts). */
  alarms: { memberId: bigint; type: number }[];
  /** The auth store: users and roles (authpb encodings), enabled flag, auth revision. */
  auth: { users: Buffer[]; roles: Buffer[]; enabled: boolean; revision: number };
}

/**
 * Rebuilds an in-memory store from a backend's records fed in key order: the backend's own
 * iterator (Backend.load) or a snapshot stream as it is written into a new backend (the install
 * then needs no second pass over the database, Backend.loadImported). Records of other namespaces
 * are skipped. Each add() imports (and spills, with a spill attached) one batch synchronously: a
 * batch of ~1 MiB is a few ms.
 *
 * With a spill, the store would keep only the newest `hotValueBytes` of values in the heap and
 * write the older ones to the spill file, so most values of a large state would be made into a
 * string, written back out as bytes and dropped. Instead, the newest records (by value bytes, up
 * to the budget plus one spill write's worth) wait here undecoded, and the older ones are spilled
 * from their record's bytes and imported already spilled: the same state, with the same values
 * in the heap and in the spill, without a string per spilled value (a restart's profile had the
 * strings, the copies back and the garbage they left as a third of loading the backend).
 */
export class KvRecordLoader {
  private readonly store = new MvccStore();
  private readonly importer: SnapshotImporter;
  private readonly spill: { spill: ValueSpill; hotValueBytes: number } | undefined;
  /** KV records not imported yet (with a spill), oldest first from pendingHead, and the bytes
   *  of their values. */
  private pending: (readonly [Buffer, Buffer])[] = [];
  private pendingHead = 0;
  private pendingValueBytes = 0;
  private count = 0;
  private finished = false;
  /** What the imported versions count towards Backend.liveBytes. */
  kvBytes = 0;

  constructor(spill?: { spill: ValueSpill; hotValueBytes: number }) {
    if (spill) this.store.attachSpill(spill.spill, spill.hotValueBytes);
    this.spill = spill;
    this.importer = new SnapshotImporter(this.store);
    // The current revision is a meta record, after the versions in key order (records.ts).
    this.importer.startWithoutCurrentRevision();
  }

  add(records: readonly (readonly [Buffer, Buffer])[]): void {
    assert(!this.finished, 'KvRecordLoader: records after finish');
    for (const r of records) {
      // Commit records share the version namespace (commit_record.ts) and are no version.
      if (r[0][0] !== NS_KV || isCommitRecordKey(r[0])) continue;
      this.kvBytes += recordBytes(r[0], r[1]);
      if (this.spill === undefined) this.importDecoded(r);
      else {
        this.pending.push(r);
        this.pendingValueBytes += kvValueBytes(r[1]);
      }
    }
    if (this.spill !== undefined) this.spillPending(this.spill);
    while (this.store.spillStep()) {
      // a batch of records is ~1 spill step: memory stays near the budget during the load
    }
  }

  /** Spills and imports the oldest pending records while their values exceed the budget by more
   *  than one spill write (the store's own rule: spillSlack, SPILL_BYTES_PER_STEP). */
  private spillPending(spill: { spill: ValueSpill; hotValueBytes: number }): void {
    const slack = Math.min(SPILL_BYTES_PER_STEP, spill.hotValueBytes / 4);
    if (this.pendingValueBytes <= spill.hotValueBytes + slack) return;
    while (this.pendingValueBytes > spill.hotValueBytes && this.pendingHead < this.pending.length) {
      const batch: { h: ReturnType<typeof decodeKvHeader>; value: Buffer }[] = [];
      const spilled: Buffer[] = [];
      let bytes = 0;
      while (this.pendingValueBytes > spill.hotValueBytes && this.pendingHead < this.pending.length && bytes < SPILL_BYTES_PER_STEP) {
        const [k, v] = this.pending[this.pendingHead++]!;
        this.pendingValueBytes -= kvValueBytes(v);
        const h = decodeKvHeader(k, v);
        const value = v.subarray(h.valueStart);
        batch.push({ h, value });
        // An empty value (a tombstone's) stays in the heap: the store never spills one.
        if (value.length > 0) spilled.push(value);
        bytes += value.length;
      }
      const refs = spilled.length > 0 ? spill.spill.appendBytes(spilled) : [];
      let next = 0;
      for (const { h, value } of batch) {
        // Without refs (the spill cannot write now) the values go to the heap; the store spills
        // them later like any other.
        if (value.length === 0 || refs === undefined) this.importHeader(h, value.toString('latin1'));
        else this.importer.importHistoryVersion(makeStoredKv(h, refs[next++]!), value.length);
        this.count++;
      }
      assert(refs === undefined || next === refs.length, 'KvRecordLoader: a spilled value without its version');
    }
    if (this.pendingHead * 2 >= this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
  }

  private importDecoded([k, v]: readonly [Buffer, Buffer]): void {
    const h = decodeKvHeader(k, v);
    this.importHeader(h, v.toString('latin1', h.valueStart));
    this.count++;
  }

  private importHeader(h: ReturnType<typeof decodeKvHeader>, value: string): void {
    this.importer.importHistoryVersion(makeStoredKv(h, value), value.length);
  }

  finish(currentRevision: Revision): MvccStore {
    assert(!this.finished, 'KvRecordLoader: finished twice');
    this.finished = true;
    // The newest values stay in the heap, as the store keeps them.
    for (let i = this.pendingHead; i < this.pending.length; i++) this.importDecoded(this.pending[i]!);
    this.pending = [];
    this.pendingValueBytes = 0;
    this.importer.importRecords([{ type: 'end', kvCount: this.count }]);
    return this.importer.finishAt(currentRevision);
  }
}

/** The length of a kv record's value (encodeKv's layout). */
function kvValueBytes(b: Buffer): number {
  return b.length - 28 - b.readUInt32BE(24);
}

function makeStoredKv(h: ReturnType<typeof decodeKvHeader>, value: string | SpillRef): StoredKv {
  return { key: h.key, createRevision: h.createRevision, modRevision: h.modRevision, version: h.version, value, lease: h.lease };
}

/**
 * The size the backend quota is checked against (etcd's quota compares bolt's file size), kept in
 * memory and updated as records are staged and deleted, so the check costs nothing per request:
 *   liveBytes      = key + value + RECORD_OVERHEAD_BYTES of every MVCC version record and every
 *                    lease record (uncompressed: LevelDB's Snappy compression is not counted, so
 *                    the same data costs the same quota as in etcd and on every member);
 *   allocatedBytes = the highest liveBytes since the last defragment (saved with every commit, so
 *                    a restart does not forget space that was never defragmented).
 * allocatedBytes behaves like bolt's file: space freed by compaction is reused by later writes
 * (so a workload that compacts regularly stops growing), but the size only comes down when the
 * operator defragments. Meta, membership and alarm records are a few hundred bytes and not counted.
 */
export class Backend {
  private liveBytesValue = 0;
  private allocatedBytesValue = 0;
  /** Lease IDs with a record, so that rewriting a lease (checkpoints) is not counted twice. */
  private readonly leaseIds = new Set<bigint>();
  private staged: BatchOp[] = [];
  /** Key and value bytes of `staged` (what the commit adds to queuedBytes). */
  private stagedBytes = 0;
  /** The newest revision staged (the current revision each commit records). */
  private stagedRev = 0;
  /** Sub-revision counter within the revision being staged. */
  private stagedSub = 0;
  /** The state of the newest commit handed to LevelDB (or loaded): what a defragment's commit
   *  record repeats with the new allocated size. */
  private committed: CommitState | undefined;
  /** Commits run one after another: LevelDB applies batches in the order they are issued. */
  private tail: Promise<void> = Promise.resolve();
  /** Commits made since the last LevelDB write, waiting to go as one batch. */
  private group: { ops: BatchOp[]; state: CommitState; bytes: number; done: Promise<void>; resolve: () => void; reject: (e: unknown) => void; timer: NodeJS.Timeout } | undefined;
  /** Key and value bytes committed and not yet written to LevelDB (the waiting group and the
   *  batches queued behind a slow write): what the backend holds in memory beyond LevelDB's own. */
  private queuedBytesValue = 0;
  /** Callers of whenQueuedBelow() waiting for the queue to drain. */
  private drainWaiters: { bytes: number; resolve: () => void }[] = [];
  /** Metrics hook: the duration of every batch commit (etcd_disk_backend_commit_duration_seconds). */
  onCommit?: (durationMs: number) => void;
  private failed: Error | undefined;
  private closing = false;
  /** The physical compaction running now, and the newest compaction point asked for meanwhile. */
  private compaction: Promise<number> | undefined;
  private compactAgainRev = 0;

  private constructor(
    private readonly db: Db,
    readonly dir: string,
  ) {}

  static async open(dir: string): Promise<Backend> {
    const db = levelDb(dir);
    await db.open();
    return new Backend(db, dir);
  }

  /** Rebuilds the in-memory store from the backend, yielding to the event loop between steps.
   *  With `spill`, values move out of the heap while they are loaded (so a restart does not first
   *  hold every value in memory). */
  async load(spill?: { spill: ValueSpill; hotValueBytes: number }): Promise<LoadedState> {
    const loader = new KvRecordLoader(spill);
    const it = this.db.iterator({ gte: Buffer.from([NS_KV]), lt: Buffer.from([NS_KV + 1]), highWaterMarkBytes: ITERATOR_READ_BYTES_MAX });
    // The next batch is read (by LevelDB, on the thread pool) while this one is imported: the two
    // halves of the load overlap instead of waiting for each other (a restart's profile had the
    // loop idle for every read).
    let next = it.nextv(LOAD_RECORDS_PER_STEP_MAX);
    try {
      for (;;) {
        const batch = await next;
        if (batch.length === 0) break;
        next = it.nextv(LOAD_RECORDS_PER_STEP_MAX);
        loader.add(batch);
      }
    } finally {
      // A read still in flight (the import failed) ends before the iterator closes; its own
      // failure, if any, is the iterator's and the import's error is the one that propagates.
      await next.then(
        () => undefined,
        () => undefined,
      );
      await it.close();
    }
    return this.loadRest(loader);
  }

  /**
   * load() for a backend whose versions were already imported by `loader` as they were written
   * (a snapshot restored from a stream, server/snapshot.ts): only the current revision, the
   * compaction and the small namespaces are read. The database must hold exactly what the loader
   * saw.
   */
  loadImported(loader: KvRecordLoader): Promise<LoadedState> {
    return this.loadRest(loader);
  }

  private async loadRest(loader: KvRecordLoader): Promise<LoadedState> {
    const state = await readCommitState(this.db);
    const compactRev = readU64(await this.db.get(META_COMPACT_REV));
    const currentRev = Math.max(1, state.currentRevision);
    // Every version was imported as history in revision order; compaction is now redone in memory.
    // (Versions below the compaction point that physical compaction had not yet deleted are
    // dropped again by it.)
    const store = loader.finish(currentRev);
    this.liveBytesValue += loader.kvBytes;
    if (compactRev > 0) {
      // In slices: a member installing a snapshot keeps its heartbeats and clients meanwhile.
      store.scheduleCompaction(compactRev);
      while (!store.compactStep(LOAD_COMPACT_KEYS_PER_STEP_MAX)) await LOOP_CLOCK.yieldToLoop();
    }
    const leases = new Map<bigint, LeaseRecord>();
    for await (const [k, v] of this.db.iterator({ gte: Buffer.from([NS_LEASE]), lt: Buffer.from([NS_LEASE + 1]) })) {
      leases.set(leaseIdOfKey(k), decodeLease(v));
      this.leaseIds.add(leaseIdOfKey(k));
      this.liveBytesValue += LEASE_RECORD_BYTES;
    }
    this.allocatedBytesValue = Math.max(this.liveBytesValue, state.allocatedBytes);
    this.stagedRev = currentRev;
    this.committed = { ...state, currentRevision: currentRev, allocatedBytes: this.allocatedBytesValue };
    const members: Buffer[] = [];
    for await (const v of this.db.values({ gte: Buffer.from([NS_MEMBER]), lt: Buffer.from([NS_MEMBER + 1]) })) members.push(v);
    const removed: bigint[] = [];
    for await (const k of this.db.keys({ gte: Buffer.from([NS_REMOVED]), lt: Buffer.from([NS_REMOVED + 1]) })) removed.push(k.readBigUInt64BE(1));
    const alarms: { memberId: bigint; type: number }[] = [];
    for await (const k of this.db.keys({ gte: Buffer.from([NS_ALARM]), lt: Buffer.from([NS_ALARM + 1]) })) {
      alarms.push({ memberId: k.readBigUInt64BE(1), type: k.readUInt32BE(9) });
    }
    const auth = await this.loadAuth();
    return { store, appliedIndex: state.appliedIndex, appliedTerm: state.appliedTerm, leases, members, removed, alarms, auth };
  }

  private async loadAuth(): Promise<LoadedState['auth']> {
    const [enabled, revision] = await this.db.getMany([META_AUTH_ENABLED, META_AUTH_REVISION]);
    const users: Buffer[] = [];
    for await (const v of this.db.values({ gte: authKey(AUTH_USER, ''), lt: Buffer.from([NS_AUTH, AUTH_USER + 1]) })) users.push(v);
    const roles: Buffer[] = [];
    for await (const v of this.db.values({ gte: authKey(AUTH_ROLE, ''), lt: Buffer.from([NS_AUTH, AUTH_ROLE + 1]) })) roles.push(v);
    return { users, roles, enabled: enabled !== undefined && enabled[0] === 1, revision: readU64(revision) };
  }

  /** Stages one revision's events (called from the apply path, synchronously). */
  stageEvents(events: readonly Event[], revision: Revision): void {
    if (revision !== this.stagedRev) {
      this.stagedRev = revision;
      this.stagedSub = 0;
    }
    for (const ev of events) {
      const op = { type: 'put' as const, key: kvRecordKey(revision, this.stagedSub++), value: encodeKv(ev.kv) };
      this.stage(op);
      this.grow(recordBytes(op.key, op.value));
    }
    assert(this.stagedSub <= COMMIT_SUB, 'backend: a revision with more versions than its sub-revisions allow');
  }

  /** Sets the current revision recorded with the next commit (a restore's revision bump: the
   *  store then starts at `rev` with no event at it). Never moves it backwards. */
  stageCurrentRevision(rev: Revision): void {
    assert(rev >= this.stagedRev, 'the current revision never moves backwards');
    this.stagedRev = rev;
    this.stagedSub = 0;
  }

  stageCompaction(rev: Revision): void {
    this.stage({ type: 'put', key: META_COMPACT_REV, value: u64(rev) });
  }

  /** A lease's record (granted, checkpointed), or its deletion (revoked, expired). */
  stageLease(id: bigint, record: LeaseRecord | undefined): void {
    const key = leaseKey(id);
    this.stage(record ? { type: 'put', key, value: encodeLease(record) } : { type: 'del', key });
    if (record && !this.leaseIds.has(id)) {
      this.leaseIds.add(id);
      this.grow(LEASE_RECORD_BYTES);
    } else if (!record && this.leaseIds.delete(id)) {
      this.liveBytesValue -= LEASE_RECORD_BYTES;
    }
  }

  /** An alarm raised (active) or cleared. */
  stageAlarm(memberId: bigint, type: number, active: boolean): void {
    const key = alarmKey(memberId, type);
    this.stage(active ? { type: 'put', key, value: Buffer.alloc(0) } : { type: 'del', key });
  }

  private stage(op: BatchOp): void {
    this.staged.push(op);
    this.stagedBytes += op.type === 'put' ? op.key.length + op.value.length : op.key.length;
  }

  /** Bytes of live records (what a defragment would bring allocatedBytes down to). */
  get liveBytes(): number {
    return this.liveBytesValue;
  }

  /** The size the quota is checked against (see the class comment). */
  get allocatedBytes(): number {
    return this.allocatedBytesValue;
  }

  private grow(bytes: number): void {
    this.liveBytesValue += bytes;
    if (this.liveBytesValue > this.allocatedBytesValue) this.allocatedBytesValue = this.liveBytesValue;
  }

  /** An auth user's record (authpb.User), or its deletion. */
  stageAuthUser(name: string, record: Buffer | undefined): void {
    const key = authKey(AUTH_USER, name);
    this.stage(record ? { type: 'put', key, value: record } : { type: 'del', key });
  }

  /** An auth role's record (authpb.Role), or its deletion. */
  stageAuthRole(name: string, record: Buffer | undefined): void {
    const key = authKey(AUTH_ROLE, name);
    this.stage(record ? { type: 'put', key, value: record } : { type: 'del', key });
  }

  stageAuthState(enabled: boolean, revision: number): void {
    this.stage({ type: 'put', key: META_AUTH_ENABLED, value: Buffer.from([enabled ? 1 : 0]) });
    this.stage({ type: 'put', key: META_AUTH_REVISION, value: u64(revision) });
  }

  /** A member's record (JSON), or its removal. */
  stageMember(id: bigint, json: Buffer | undefined): void {
    if (json) this.stage({ type: 'put', key: idKey(NS_MEMBER, id), value: json });
    else {
      this.stage({ type: 'del', key: idKey(NS_MEMBER, id) });
      this.stage({ type: 'put', key: idKey(NS_REMOVED, id), value: Buffer.alloc(0) });
    }
  }

  /** Writes everything staged plus the applied index, atomically: within BATCH_INTERVAL_MS, in one
   *  LevelDB batch with the other commits of that interval. The promise resolves once that batch
   *  is written; with `sync`, the batch is written now and is (with every batch before it) on disk
   *  when the promise resolves. */
  commit(appliedIndex: number, appliedTerm: number, sync = false): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closing) return Promise.reject(new Error('backend: closed'));
    const ops = this.staged;
    const bytes = this.stagedBytes;
    this.staged = [];
    this.stagedBytes = 0;
    // The group's commit record (written with it, see writeGroup) says what its newest commit says.
    const state: CommitState = { appliedIndex, appliedTerm, currentRevision: this.stagedRev, allocatedBytes: this.allocatedBytesValue };
    this.queuedBytesValue += bytes;
    let g = this.group;
    if (!g) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      // The server attaches its own handler to every commit; this one keeps an unobserved group
      // (a commit nobody awaited) from being an unhandled rejection.
      done.catch(() => undefined);
      g = { ops, state, bytes, done, resolve, reject, timer: setTimeout(() => this.writeGroup(false), BATCH_INTERVAL_MS).unref() };
      this.group = g;
    } else {
      for (const op of ops) g.ops.push(op);
      g.state = state;
      g.bytes += bytes;
    }
    const done = g.done;
    if (sync || g.ops.length >= BATCH_LIMIT_OPS) this.writeGroup(sync);
    return done;
  }

  /** Hands the waiting commits to LevelDB as one batch (after the batches before them). */
  private writeGroup(sync: boolean): void {
    const g = this.group;
    if (!g) return;
    this.group = undefined;
    clearTimeout(g.timer);
    // Last in the batch, as in key order: after the versions of its revision (commit_record.ts).
    g.ops.push({ type: 'put', key: commitRecordKey(g.state.currentRevision), value: encodeCommitRecord(g.state) });
    this.committed = g.state;
    const run = async () => {
      // After a failed write nothing later may land: the backend would claim an applied index
      // whose earlier revisions are missing, and a restart would not replay them.
      try {
        if (this.failed) throw this.failed;
        const startMs = performance.now();
        await this.writeBatch(g.ops, sync);
        this.onCommit?.(performance.now() - startMs);
      } catch (err) {
        this.failed = err as Error;
        throw err;
      } finally {
        this.dequeued(g.bytes);
      }
    };
    const p = this.tail.then(run);
    // The failure reaches the commits through g.reject (and is kept in this.failed); the tail
    // only orders the next write after this one.
    this.tail = p.catch(() => undefined);
    p.then(g.resolve, g.reject);
  }

  /** Deletes, in bounded steps, every version record the store no longer retains below `rev`.
   *  Reads never touch the backend (spilled values are read from the spill file), so this only reclaims space. A compaction asked for while one
   *  runs is done right after it (at the newest point asked for). */
  compactPhysical(store: MvccStore, rev: Revision): Promise<number> {
    if (this.compaction) {
      this.compactAgainRev = Math.max(this.compactAgainRev, rev);
      return Promise.resolve(0);
    }
    const run = async () => {
      let deleted = await this.compactPhysicalTo(store, rev);
      while (this.compactAgainRev > 0) {
        const again = this.compactAgainRev;
        this.compactAgainRev = 0;
        deleted += await this.compactPhysicalTo(store, again);
      }
      return deleted;
    };
    const p = run().finally(() => (this.compaction = undefined));
    this.compaction = p;
    return p;
  }

  /** Resolves when no physical compaction runs (the one running now, and those asked for while it
   *  ran, are done or failed: a failure was reported to compactPhysical's caller). */
  compactionSettled(): Promise<void> {
    return (this.compaction ?? Promise.resolve(0)).then(
      () => undefined,
      () => undefined,
    );
  }

  private async compactPhysicalTo(store: MvccStore, rev: Revision): Promise<number> {
    // Versions still waiting in a commit group must be in LevelDB before the scan, or one the
    // store no longer retains would be written after the scan passed it.
    await this.flush();
    let deleted = 0;
    const it = this.db.iterator({ gte: Buffer.from([NS_KV]), lt: kvRecordKey(rev, 0), highWaterMarkBytes: ITERATOR_READ_BYTES_MAX });
    try {
      for (;;) {
        const batch = await it.nextv(COMPACT_RECORDS_PER_STEP_MAX);
        if (batch.length === 0) break;
        const ops: BatchOp[] = [];
        let freedBytes = 0;
        let commitRecords = 0;
        for (const [k, v] of batch) {
          if (isCommitRecordKey(k)) {
            // Below the compaction point, so older than the newest commit record (at the current
            // revision, which the compaction point never passes): stale.
            ops.push({ type: 'del', key: k });
            commitRecords++;
            continue;
          }
          const kv = decodeKv(k, v);
          if (!store.retains(kv.key, kv.modRevision)) {
            ops.push({ type: 'del', key: k });
            freedBytes += recordBytes(k, v);
          }
        }
        if (ops.length > 0) await this.db.batch(ops);
        this.liveBytesValue -= freedBytes;
        deleted += ops.length - commitRecords;
      }
    } finally {
      await it.close();
    }
    return deleted;
  }

  /** A consistent snapshot of everything (see snapshot.ts), taken without stopping writes. */
  async openSnapshot(): Promise<{ meta: SnapshotMeta; chunks: AsyncGenerator<Buffer>; close: () => Promise<void> }> {
    await this.flush(); // what the apply loop already handed over is part of it
    return openSnapshotStream(this.db);
  }

  /** openSnapshot's view as record batches, without the stream's encoding (a local consumer:
   *  snapshot save converts the records themselves). */
  async openSnapshotRecords(): Promise<{ meta: SnapshotMeta; records: AsyncGenerator<[Buffer, Buffer][]>; close: () => Promise<void> }> {
    await this.flush();
    return openSnapshotRecords(this.db);
  }

  /** Compacts LevelDB's files (etcd's defragment: reclaims the space of deleted records). Waits
   *  for a physical compaction still deleting records first, so that `compact` then `defrag`
   *  reclaims what the compaction freed; then allocatedBytes comes down to the live bytes. */
  async defragment(): Promise<void> {
    // A failed compaction was reported to its caller (the server logs it); defrag still runs.
    await this.compaction?.catch(() => undefined);
    await this.flush();
    await this.db.compactRange(Buffer.from([0x00]), Buffer.from([0xff]));
    this.allocatedBytesValue = this.liveBytesValue;
    // Commits made during the compaction carry the old size: they go first, the new size after.
    this.writeGroup(false);
    // In line with the commits, so that an older value can never land after this one: the newest
    // commit's record again (same key), with the new size.
    const c = this.committed;
    const record: [Buffer, Buffer] = c
      ? [commitRecordKey(c.currentRevision), encodeCommitRecord({ ...c, allocatedBytes: this.allocatedBytesValue })]
      : [META_ALLOCATED_BYTES, u64(this.allocatedBytesValue)];
    if (c) this.committed = { ...c, allocatedBytes: this.allocatedBytesValue };
    const p = this.tail.then(() => this.db.put(record[0], record[1]));
    this.tail = p.catch(() => undefined); // the failure goes to defragment()'s caller through `await p`
    await p;
  }

  /**
   * One LevelDB write of already-encoded Buffer operations, as a chained batch: abstract-level's
   * array form clones and re-validates every operation object first (64-op batches of 256-byte
   * values: array form 1.5 s, chained 0.40-0.45 s for 2,000 batches on this machine), and the
   * chained form is as cheap as calling the implementation's private _batch() was.
   */
  private writeBatch(ops: BatchOp[], sync: boolean): Promise<void> {
    const batch = this.db.batch();
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
    return batch.write({ sync });
  }

  /** Approximate bytes on disk (etcd's dbSize). */
  async sizeBytes(): Promise<number> {
    return this.db.approximateSize(Buffer.from([0x00]), Buffer.from([0xff]));
  }

  /** Key and value bytes committed and not yet written to LevelDB. */
  get queuedBytes(): number {
    return this.queuedBytesValue;
  }

  /** Resolves once fewer than `bytes` are queued (at once if so already), or the backend failed
   *  or closed (then the next commit says so). */
  whenQueuedBelow(bytes: number): Promise<void> {
    if (this.queuedBytesValue < bytes || this.failed || this.closing) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push({ bytes, resolve }));
  }

  private dequeued(bytes: number): void {
    this.queuedBytesValue -= bytes;
    assert(this.queuedBytesValue >= 0, 'backend: queued bytes went negative');
    if (this.drainWaiters.length === 0) return;
    const waiting = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiting) {
      if (this.queuedBytesValue < w.bytes || this.failed || this.closing) w.resolve();
      else this.drainWaiters.push(w);
    }
  }

  /** Resolves once every commit made so far is written (a waiting group goes now). */
  flush(): Promise<void> {
    this.writeGroup(false);
    return this.tail;
  }

  /**
   * Closes this backend, runs `move` (which renames its directory to `dir`) and opens it there,
   * keeping what load() counted (live and allocated bytes, lease IDs): a backend restored and
   * loaded beside the member's is moved into place without a second load.
   */
  async reopenAt(dir: string, move: () => void): Promise<Backend> {
    await this.close();
    move();
    const moved = await Backend.open(dir);
    moved.liveBytesValue = this.liveBytesValue;
    moved.allocatedBytesValue = this.allocatedBytesValue;
    for (const id of this.leaseIds) moved.leaseIds.add(id);
    return moved;
  }

  async close(): Promise<void> {
    await this.flush();
    this.closing = true;
    for (const w of this.drainWaiters.splice(0)) w.resolve();
    await this.flush(); // a group formed while the last one was written
    await this.db.close();
  }
}
