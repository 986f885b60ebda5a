// MvccStore: the in-memory MVCC state machine (etcd server/storage/mvcc kvstore + index + history).
//
// Pure and synchronous: no clock, no randomness, and no I/O of its own (spilled values are read
// through the ValueSpill it is given, see below). Applying the same writes in the same order always
// yields the same state, revisions and hash — the property Raft replication depends on.
//
// Revisions: the store starts at revision 1 (as etcd). A write txn that changes anything gets
// currentRevision + 1 for all of its changes; each change also has a sub-revision (0, 1, 2, ...),
// which is its position within that revision in the history. A txn that changes nothing leaves the
// revision alone.
//
// Compaction has a logical and a physical half. scheduleCompaction(rev) moves the compaction point
// at once (reads below it fail from then on); compactStep() then frees the unreachable versions a
// slice of keys at a time, so a large compaction never blocks the event loop. Reads, hashes and
// snapshots only look at the logical retained set, so they are exact whatever the physical progress.
//
// Representation: keys and values are held as latin1 strings (Bytes, see types.ts). Methods accept
// Buffers or Bytes and copy Buffers into strings, so the store never keeps a caller's buffer (or
// the decoded Raft entry it is a view of) alive. KeyValues handed out carry Bytes.
//
// Values out of the heap (spill.ts): with a spill attached, the store keeps the most recently
// written values up to a byte budget in the heap and moves older ones to the spill file. Moving a
// value replaces the version's object in the index and the history with a new one holding a
// SpillRef; objects are never mutated, so a KeyValue handed out earlier (an event in a watcher's
// queue, a range result being encoded) keeps its bytes. Reads hand out the heap object when its
// value is there and a copy with the bytes read back otherwise.

import { assert } from '../util/assert';
import { Errors } from '../util/errors';
import { hashIndex, type SpilledValues } from './hash';
import { CachedHashJob, type KeyHashes } from './hash_cache';
import { History } from './history';
import {
  KeyIndex,
  firstRetained,
  indexAtOrBelow,
  isTombstone,
  makeKv,
  makeTombstone,
  newestVersion,
  versionAt,
  versionCount,
  Versions,
} from './key_index';
import { evaluateRange, forEachLive, resolveBounds, stripValue } from './range';
import { RangeJob } from './range_job';
import { spillRefGeneration, ValueSpill } from './spill';
// snapshot.ts imports this module too; its functions are only called at run time, never at load.
import { exportSnapshot, storeFromSnapshot } from './snapshot';
import {
  Bytes,
  BytesLike,
  bytesOf,
  EMPTY_BYTES,
  Event,
  EventType,
  HashKVResult,
  KeyValue,
  LeaseId,
  MvccSnapshotRecord,
  RangeOptions,
  RangeResult,
  Revision,
  SpillRef,
  StoredKv,
  WriteResult,
} from './types';

/** Keys examined per compactStep() by default: a few ms of work on a 1M-key index. */
export const COMPACT_KEYS_PER_STEP_DEFAULT = 10_000;
/** Value bytes moved to the spill file per spillStep(): one write of about this size. */
export const SPILL_BYTES_PER_STEP = 1 << 20;
/** Keys examined per spillStep() while the spill file is being rewritten. */
export const RESPILL_KEYS_PER_STEP = 2000;
/** Versions per step of a synchronous hashKV (one batch of values read and hashed together). */
const HASH_SYNC_VERSIONS_PER_STEP = 4096;
/** Shrink the hot queue's array once this many of its leading slots are spent. */
const HOT_QUEUE_TRIM_MIN = 4096;

export class MvccStore {
  private index = new KeyIndex();
  private history = new History();
  private currentRev: Revision = 1;
  private compactRev: Revision = 0;
  private liveKeys = 0;
  private retainedBytes = 0;
  private openTxn: WriteTxn | undefined;
  /** Where physical compaction resumes; undefined = no physical work pending. */
  private compactCursor: Bytes | undefined;
  /** Bumped by every state change; a snapshot export asserts it stays put while it runs. */
  private epoch = 0;
  /** Bumped when versions at or below the current revision may leave the index (a compaction
   *  step freed versions, the whole state replaced): a sliced hash started before is stale. */
  private retainedEpoch = 0;
  /** Bumped when the whole state is replaced (a sliced range started before must start over). */
  private replacedEpochValue = 0;
  /** Bumped when spilled values move to other refs (a spill file emptied): a sliced range holding
   *  refs from before must start over. */
  private valuesEpochValue = 0;
  /** Where values leave the heap (none: every value stays in the heap). */
  private spill: ValueSpill | undefined;
  /** Heap value bytes the store keeps before it spills the oldest. */
  private hotBytesMax = Infinity;
  /** Versions whose values are in the heap, oldest first (spilling takes from hotHead). Spent
   *  slots are undefined. May hold versions compacted away since; spilling skips them. */
  private hot: (StoredKv | undefined)[] = [];
  private hotHead = 0;
  /** Value bytes of the versions in `hot`. */
  private hotBytes = 0;
  /** While the spill file is rewritten: the key to continue copying from. */
  private respillCursor: Bytes | undefined;
  /** The newest hash computed on this state with its per-key CRCs (hash_cache.ts). Not saved: a
   *  restarted member hashes its loaded state afresh, which is what lets a corruption check find
   *  a backend damaged while the member was down (test/integration/corrupt_check.test.ts). */
  private hashTable: KeyHashes | undefined;

  /** Whether a PUT event must carry the key's previous version (Event.prevKv, value included).
   *  Only watchers that asked for prev_kv read it, so the watch layer (the WatchableStore built on
   *  this store) replaces this with "a synced watcher has prev_kv": reading a spilled previous
   *  value back is a synchronous read of the spill file on the apply path, which an overwrite of
   *  4 KiB values otherwise pays for every put. The same holds for a DELETE event (a DeleteRange
   *  reads the deleted values only for its own prev_kv). */
  prevKvWanted: () => boolean = () => true;

  /** The revision of the last committed change (1 on an empty store). */
  get currentRevision(): Revision {
    return this.currentRev;
  }

  /** Reads below this revision fail with Errors.Compacted (0 before any compaction). */
  get compactRevision(): Revision {
    return this.compactRev;
  }

  /** Live keys at the current revision. */
  get keyCount(): number {
    return this.liveKeys;
  }

  /** Approximate key+value bytes held by the index (retained versions, tombstones included). */
  get sizeBytes(): number {
    return this.retainedBytes;
  }

  /** True while physical compaction still has keys to visit. */
  get compactionPending(): boolean {
    return this.compactCursor !== undefined;
  }

  /** @internal changes whenever the state changes (writes, compaction, import). */
  get stateEpoch(): number {
    return this.epoch;
  }

  /** Value bytes the spill budget counts as held in the heap (0 without a spill). */
  get heapValueBytes(): number {
    return this.hotBytes;
  }

  /** The spill file's size and live bytes (both 0 without a spill). */
  get spillBytes(): { file: number; live: number } {
    return { file: this.spill?.fileBytes ?? 0, live: this.spill?.liveBytes ?? 0 };
  }

  range(key: BytesLike, rangeEnd: BytesLike | undefined, opts: RangeOptions = {}): RangeResult {
    return this.rangeAt(key, rangeEnd, opts, this.currentRev);
  }

  /** @internal a range read that treats `headRev` as the current revision (a txn's own writes). */
  rangeAt(key: BytesLike, rangeEnd: BytesLike | undefined, opts: RangeOptions, headRev: Revision): RangeResult {
    const rev = this.checkReadRevision(opts.revision ?? 0, headRev);
    const { kvs, count, more } = evaluateRange(this.index, resolveBounds(key, rangeEnd), rev, opts, this.hydrateAll);
    return { kvs, count, more, revision: headRev };
  }

  /** @internal the live version of one key at `headRev`, its value only if asked: what
   *  rangeAt(key, undefined, { keysOnly: !withValue }, headRev).kvs[0] gives, without a range's
   *  bounds, options and result (a put's lookup of the version it replaces; issue 20). */
  latestAt(keyIn: BytesLike, headRev: Revision, withValue: boolean): KeyValue | undefined {
    const v = this.index.get(bytesOf(keyIn));
    if (v === undefined) return undefined;
    const i = indexAtOrBelow(v, headRev);
    if (i < 0) return undefined;
    const kv = versionAt(v, i);
    if (isTombstone(kv)) return undefined;
    return withValue ? this.hydrateAll([kv])[0] : stripValue(kv);
  }

  /** A range read in slices (range_job.ts), at the revision fixed now. Throws the errors range()
   *  throws (Compacted, FutureRev). */
  rangeJob(key: BytesLike, rangeEnd: BytesLike | undefined, opts: RangeOptions = {}): RangeJob {
    const rev = this.checkReadRevision(opts.revision ?? 0, this.currentRev);
    return new RangeJob(this, this.index, resolveBounds(key, rangeEnd), rev, this.currentRev, opts);
  }

  /** @internal see RangeJobSource */
  get replacedEpoch(): number {
    return this.replacedEpochValue;
  }

  /** @internal see RangeJobSource */
  get valuesEpoch(): number {
    return this.valuesEpochValue;
  }

  /** @internal the values of `kvs`, in place (RangeJobSource). */
  hydrateVersions(kvs: StoredKv[]): KeyValue[] {
    return this.hydrateAll(kvs);
  }

  /** @internal the values of the spilled versions among `kvs`, without a string each
   *  (RangeJobSource): fn(i, buf, off, len) for each kvs[i] whose value is spilled. */
  forEachSpilledValue(kvs: readonly StoredKv[], fn: (i: number, buf: Buffer, off: number, len: number) => void): void {
    const at: number[] = [];
    const refs: SpillRef[] = [];
    for (let i = 0; i < kvs.length; i++) {
      const v = kvs[i].value;
      if (typeof v !== 'string') {
        at.push(i);
        refs.push(v);
      }
    }
    if (refs.length === 0) return;
    assert(this.spill !== undefined, 'a spilled value in a store without a spill');
    this.spill.forEachValue(refs, (j, buf, off, len) => fn(at[j], buf, off, len));
  }

  private readonly spilledValues: SpilledValues = (kvs, fn) => this.forEachSpilledValue(kvs, fn);

  /** Validates a requested read revision (<= 0 = headRev, as etcd's rangeKeys) and returns the
   *  one to read at. */
  private checkReadRevision(requested: Revision, headRev: Revision): Revision {
    if (requested <= 0) return headRev;
    assert(Number.isSafeInteger(requested), 'read revision must be an integer');
    if (requested < this.compactRev) throw Errors.Compacted;
    if (requested > headRev) throw Errors.FutureRev;
    return requested;
  }

  /** Opens the (only) write transaction. Its changes are visible to others once end() is called. */
  write(): WriteTxn {
    assert(this.openTxn === undefined, 'a write txn is already open');
    const txn = new WriteTxn(this, this.currentRev + 1);
    this.openTxn = txn;
    return txn;
  }

  /** @internal applies one put at `rev`; returns the PUT event. */
  applyPut(keyIn: BytesLike, valueIn: BytesLike, lease: LeaseId, rev: Revision): Event {
    assert(keyIn.length > 0, 'put: empty key');
    assert(typeof lease === 'bigint', 'put: lease must be a bigint');
    const key = bytesOf(keyIn);
    const value = bytesOf(valueIn);
    const existing = this.index.get(key);
    let prevKv: StoredKv | undefined;
    let storedKey = key;
    let createRevision = rev;
    let version = 1;
    if (existing !== undefined) {
      const last = newestVersion(existing);
      storedKey = last.key; // keep one string per key, not one per version
      if (!isTombstone(last)) {
        prevKv = last;
        createRevision = last.createRevision;
        version = last.version + 1;
      }
    }
    const kv = makeKv(storedKey, createRevision, rev, version, value, lease);
    this.index.append(kv, existing);
    this.history.append(kv);
    this.trackHot(kv);
    if (prevKv === undefined) this.liveKeys++;
    this.retainedBytes += storedKey.length + value.length;
    this.epoch++;
    return { type: EventType.PUT, kv, prevKv: prevKv === undefined || !this.prevKvWanted() ? undefined : this.hydrate(prevKv) };
  }

  /** @internal deletes every key live at `rev` in the range; returns the DELETE events in key
   *  order and the deleted versions (`deleted`, filled in: values read back from the spill only
   *  when `withValues` or prevKvWanted() asks for them). */
  applyDeleteRange(key: BytesLike, rangeEnd: BytesLike | undefined, rev: Revision, withValues: boolean, deleted: StoredKv[]): Event[] {
    forEachLive(this.index, resolveBounds(key, rangeEnd), rev, (kv) => deleted.push(kv));
    // A deleted value is read back only for a client's prev_kv or a watcher's: deleting a prefix
    // of spilled values must not read them all from the spill file on the apply path.
    const eventPrev = this.prevKvWanted();
    if (withValues || eventPrev) this.hydrateAll(deleted);
    const events: Event[] = new Array<Event>(deleted.length);
    for (let i = 0; i < deleted.length; i++) {
      const prevKv = deleted[i];
      const tomb = makeTombstone(prevKv.key, rev);
      this.index.append(tomb, this.index.get(prevKv.key));
      this.history.append(tomb);
      this.liveKeys--;
      this.retainedBytes += tomb.key.length;
      events[i] = { type: EventType.DELETE, kv: tomb, prevKv: eventPrev ? (prevKv as KeyValue) : undefined };
    }
    if (events.length > 0) this.epoch++;
    return events;
  }

  /** @internal called by WriteTxn.end(). */
  commitTxn(txn: WriteTxn, changed: boolean): Revision {
    assert(this.openTxn === txn, 'commit of a txn that is not the open one');
    this.openTxn = undefined;
    if (changed) {
      assert(txn.revision === this.currentRev + 1, 'txn revision is not current + 1');
      this.currentRev = txn.revision;
    }
    return this.currentRev;
  }

  /** Compacts at `rev` and frees everything it made unreachable before returning. */
  compact(rev: Revision): void {
    this.scheduleCompaction(rev);
    while (!this.compactStep()) {
      // run to completion
    }
  }

  /**
   * Moves the compaction point to `rev` now (reads below it fail from here on) and leaves the
   * physical cleanup to compactStep(). Throws Errors.Compacted if rev <= compactRevision and
   * Errors.FutureRev if rev > currentRevision.
   */
  scheduleCompaction(rev: Revision): void {
    assert(Number.isSafeInteger(rev), 'compaction revision must be an integer');
    assert(this.openTxn === undefined, 'compaction while a write txn is open');
    if (rev <= this.compactRev) throw Errors.Compacted;
    if (rev > this.currentRev) throw Errors.FutureRev;
    this.compactRev = rev;
    // Not retainedEpoch: a sliced hash started before keeps its own compaction point, and the
    // versions it covers stay until compactStep() frees them (which does bump it).
    this.history.compact(rev);
    // A pending cleanup at an older point restarts: keys it already visited need another pass.
    this.compactCursor = EMPTY_BYTES;
    this.epoch++;
  }

  /** Frees unreachable versions of up to `maxKeys` keys. Returns true when no work is left. */
  compactStep(maxKeys: number = COMPACT_KEYS_PER_STEP_DEFAULT): boolean {
    if (this.compactCursor === undefined) return true;
    this.retainedEpoch++;
    const freedRefs: SpillRef[] = [];
    const { nextKey, freedBytes } = this.index.compactSlice(this.compactRev, this.compactCursor, maxKeys, (ref) => freedRefs.push(ref));
    this.retainedBytes -= freedBytes;
    if (freedRefs.length > 0) this.retainedBytes -= this.spill!.releaseMany(freedRefs);
    assert(this.retainedBytes >= 0, 'retained bytes went negative');
    this.compactCursor = nextKey;
    if (nextKey !== undefined) return false;
    if (this.history.trimDue) this.history.trim();
    return true;
  }

  /**
   * Events with fromRev <= revision <= toRev (toRev is capped at the current revision), in
   * (revision, sub-revision) order. With maxEvents it may stop early, but only between revisions;
   * a single revision larger than maxEvents is returned whole. Continue from `nextRev`.
   */
  eventsBetween(fromRev: Revision, toRev: Revision, maxEvents = Infinity): { events: Event[]; nextRev: Revision } {
    if (fromRev < this.compactRev) throw Errors.Compacted;
    const to = Math.min(toRev, this.currentRev);
    if (fromRev > to) return { events: [], nextRev: fromRev };
    const { start, stop, nextRev } = this.history.window(fromRev, to, maxEvents);
    const n = stop - start;
    const kvs: StoredKv[] = new Array<StoredKv>(n);
    const prevs: StoredKv[] = [];
    const prevAt: number[] = [];
    for (let p = start; p < stop; p++) {
      const kv = this.history.at(p);
      kvs[p - start] = kv;
      const prev = this.prevLiveVersion(kv);
      if (prev !== undefined) {
        prevs.push(prev);
        prevAt.push(p - start);
      }
    }
    const live = this.hydrateAll(kvs);
    const prevLive = this.hydrateAll(prevs);
    const events: Event[] = new Array<Event>(n);
    for (let i = 0; i < n; i++) {
      const kv = live[i];
      events[i] = { type: isTombstone(kv) ? EventType.DELETE : EventType.PUT, kv, prevKv: undefined };
    }
    for (let j = 0; j < prevAt.length; j++) {
      const e = events[prevAt[j]];
      events[prevAt[j]] = { type: e.type, kv: e.kv, prevKv: prevLive[j] };
    }
    return { events, nextRev };
  }

  /** Takes over the whole state of `other` (a store rebuilt from a snapshot received from the
   *  leader), so that everything holding a reference to this store sees the new state. */
  replaceWith(other: MvccStore): void {
    assert(this.openTxn === undefined && other.openTxn === undefined, 'replaceWith during a write txn');
    this.index = other.index;
    this.history = other.history;
    this.currentRev = other.currentRev;
    this.compactRev = other.compactRev;
    this.liveKeys = other.liveKeys;
    this.retainedBytes = other.retainedBytes;
    this.compactCursor = other.compactCursor;
    this.hashTable = other.hashTable;
    this.epoch++;
    this.retainedEpoch++;
    this.replacedEpochValue++;
    this.valuesEpochValue++;
    if (other.spill !== undefined) {
      // `other` was built with a spill of its own (a second file, so that this store's values
      // stayed readable while it was built): take it over, with its hot queue; this store's
      // spill held only values of the state just replaced.
      this.spill?.close();
      this.spill = other.spill;
      this.hotBytesMax = other.hotBytesMax;
      this.hot = other.hot;
      this.hotHead = other.hotHead;
      this.hotBytes = other.hotBytes;
      this.respillCursor = other.respillCursor;
      other.spill = undefined;
      other.hot = [];
      other.hotHead = 0;
      other.hotBytes = 0;
    } else if (this.spill !== undefined) {
      // Every version of `other` holds its value in the heap; what the spill file held belonged
      // to the state just replaced.
      this.spill.reset();
      this.respillCursor = undefined;
      this.trackAllHot();
    }
  }

  /** Whether the version of `key` written at `modRevision` is still retained (not compacted away).
   *  The backend's physical compaction asks this for each record below the compaction point. */
  retains(key: BytesLike, modRevision: Revision): boolean {
    const v = this.index.get(bytesOf(key));
    if (v === undefined) return false;
    const i = indexAtOrBelow(v, modRevision);
    if (i < 0 || versionAt(v, i).modRevision !== modRevision) return false;
    return i >= firstRetained(v, this.compactRev);
  }

  /** The live version that `kv` replaced, if compaction has not made it unreachable. */
  private prevLiveVersion(kv: StoredKv): StoredKv | undefined {
    // A change at or below the compaction point: its predecessor is compacted away (and the change
    // itself may have been dropped from the index).
    if (kv.modRevision <= this.compactRev) return undefined;
    const v = this.index.get(kv.key);
    assert(v !== undefined, 'history entry above the compaction point missing from the index');
    let i = indexAtOrBelow(v, kv.modRevision);
    while (i >= 0 && versionAt(v, i) !== kv) i--;
    assert(i >= 0, 'history entry above the compaction point missing from its key');
    if (i === 0) return undefined;
    const prev = versionAt(v, i - 1);
    return isTombstone(prev) ? undefined : prev;
  }

  /** CRC32-C of the retained versions with modRevision <= rev (0 = current). Same errors as range.
   *  Synchronous: hashKVJob's steps in one call (it uses and updates the hash cache the same way). */
  hashKV(rev: Revision = 0): HashKVResult {
    const job = this.hashKVJob(rev);
    let state = job.step(HASH_SYNC_VERSIONS_PER_STEP);
    for (let steps = 0; state === 'more'; steps++) {
      assert(steps <= this.index.size, 'hashKV: more steps than keys');
      state = job.step(HASH_SYNC_VERSIONS_PER_STEP);
    }
    assert(state === 'done', 'hashKV: the store changed during a synchronous hash');
    return job.result();
  }

  /**
   * hashKV in slices, for a caller that yields to the event loop in between (server/hash_kv.ts):
   * the revision is checked (and fixed) now, each step() hashes about `maxVersions` new versions.
   * Writes may go on between steps (versions above the hash revision are skipped), and so may a
   * compaction's new point (the job answers at the compaction point it started with, as etcd's
   * HashKV does); a compaction step that frees versions or a replaced state makes the job stale
   * (step() returns 'stale'), and it must start over (server/hash_kv.ts holds compaction steps
   * back while it hashes, as etcd's hash holds its backend read transaction).
   *
   * The hash cache (hash_cache.ts): a hash at the cached revision and compaction point is answered
   * without a pass; one above it starts from the cached per-key CRCs; one below it is a full pass.
   * A finished job at or above the cached revision becomes the cache.
   */
  hashKVJob(rev: Revision = 0): HashKVJob {
    const hashRevision = this.checkReadRevision(rev, this.currentRev);
    const compactRevision = this.compactRev;
    const table = this.hashTable;
    if (table !== undefined && table.revision === hashRevision && table.compactRevision === compactRevision) {
      const result = { hash: table.hash, compactRevision, hashRevision };
      return { hashRevision, compactRevision, fromCache: true, step: () => 'done', result: () => result };
    }
    const base = table !== undefined && table.revision <= hashRevision ? table : undefined;
    const job = new CachedHashJob(this.index, compactRevision, hashRevision, base, this.spilledValues);
    const startEpoch = this.retainedEpoch;
    let installed = false;
    return {
      hashRevision,
      compactRevision,
      fromCache: false,
      step: (maxVersions: number) => {
        if (this.retainedEpoch !== startEpoch) return 'stale';
        if (!job.step(maxVersions)) return 'more';
        if (!installed) {
          installed = true;
          const done = job.result();
          // The newest hash becomes the cache (an older revision's would only be a worse base).
          if (this.hashTable === undefined || this.hashTable.revision <= hashRevision) this.hashTable = done;
        }
        return 'done';
      },
      result: () => {
        assert(job.done, 'hashKVJob: result before the last step');
        return { hash: job.result().hash, compactRevision, hashRevision };
      },
    };
  }

  /** @internal hashKV by one streaming pass (hash.ts hashIndex), neither using nor filling the
   *  cache: the reference the cache's per-key joins are tested against. */
  hashKVFullPass(rev: Revision = 0): HashKVResult {
    const hashRevision = this.checkReadRevision(rev, this.currentRev);
    return { hash: hashIndex(this.index, this.compactRev, hashRevision, this.spilledValues), compactRevision: this.compactRev, hashRevision };
  }

  /** The newest hash computed on this state (the one a HashKV at its revision is answered with). */
  get cachedHash(): CachedHash | undefined {
    const t = this.hashTable;
    return t === undefined ? undefined : { revision: t.revision, compactRevision: t.compactRevision, hash: t.hash };
  }

  /** Streams the retained state as chunks of plain records (see snapshot.ts for the format). The
   *  store must not change until the generator is exhausted. */
  exportSnapshot(): Generator<MvccSnapshotRecord[]> {
    return exportSnapshot(this);
  }

  /** Rebuilds a store from exportSnapshot()'s chunks. */
  static fromSnapshot(chunks: Iterable<MvccSnapshotRecord[]>): MvccStore {
    return storeFromSnapshot(chunks);
  }

  /** @internal for snapshot export: the index and history, read-only. */
  snapshotSources(): { index: KeyIndex; history: History } {
    assert(this.openTxn === undefined, 'snapshot while a write txn is open');
    return { index: this.index, history: this.history };
  }

  /** @internal snapshot import: appends one version (base = below the compaction point, so not in
   *  the history). Versions must arrive in per-key revision order. */
  restoreVersion(kv: StoredKv, base: boolean, valueBytes: number): void {
    // A value already out of the heap comes only into a store with a spill (a backend's version
    // spilled straight from its record: storage/backend KvRecordLoader).
    assert(typeof kv.value === 'string' ? kv.value.length === valueBytes : this.spill !== undefined && valueBytes > 0, 'restoreVersion: value and its length');
    const existing: Versions | undefined = this.index.get(kv.key);
    const wasLive = existing !== undefined && !isTombstone(newestVersion(existing));
    const stored = existing === undefined ? kv : makeKv(newestVersion(existing).key, kv.createRevision,
      kv.modRevision, kv.version, kv.value, kv.lease);
    this.index.append(stored, existing);
    if (!base) this.history.append(stored);
    this.trackHot(stored);
    this.liveKeys += (isTombstone(stored) ? 0 : 1) - (wasLive ? 1 : 0);
    this.retainedBytes += stored.key.length + valueBytes;
    this.epoch++;
  }

  // ---- values out of the heap (spill.ts) ----------------------------------------------------------

  /** `kv` as a KeyValue: itself when its value is in the heap, else a copy with the bytes read. */
  private readonly hydrate = (kv: StoredKv): KeyValue =>
    typeof kv.value === 'string'
      ? (kv as KeyValue)
      : makeKv(kv.key, kv.createRevision, kv.modRevision, kv.version, this.readSpilled(kv.value), kv.lease);

  /** hydrate() for many versions, in place; spilled values are read together (spill.readMany). */
  private readonly hydrateAll = (kvs: StoredKv[]): KeyValue[] => {
    let cold: number[] | undefined;
    for (let i = 0; i < kvs.length; i++) if (typeof kvs[i].value !== 'string') (cold ??= []).push(i);
    if (cold === undefined) return kvs as KeyValue[];
    assert(this.spill !== undefined, 'a spilled value in a store without a spill');
    const values = this.spill.readMany(cold.map((i) => kvs[i].value as SpillRef));
    for (let j = 0; j < cold.length; j++) {
      const kv = kvs[cold[j]];
      kvs[cold[j]] = makeKv(kv.key, kv.createRevision, kv.modRevision, kv.version, values[j], kv.lease);
    }
    return kvs as KeyValue[];
  };

  private readSpilled(ref: SpillRef): Bytes {
    assert(this.spill !== undefined, 'a spilled value in a store without a spill');
    return this.spill.read(ref);
  }

  /** @internal a fresh copy of `kv` with its value bytes (snapshot export). */
  copyOut(kv: StoredKv): KeyValue {
    const value = typeof kv.value === 'string' ? kv.value : this.readSpilled(kv.value);
    return makeKv(kv.key, kv.createRevision, kv.modRevision, kv.version, value, kv.lease);
  }

  private trackHot(kv: StoredKv): void {
    if (this.spill === undefined || typeof kv.value !== 'string') return;
    const n = kv.value.length;
    if (n === 0) return;
    this.hot.push(kv);
    this.hotBytes += n;
  }

  private trackAllHot(): void {
    this.hot = [];
    this.hotHead = 0;
    this.hotBytes = 0;
    this.index.forEach((_key, v) => {
      const n = versionCount(v);
      for (let i = 0; i < n; i++) this.trackHot(versionAt(v, i));
    });
  }

  /**
   * Moves values out of the heap from now on: beyond `hotBytesMax` bytes of heap values, the
   * oldest written go to `spill` (by spillStep). The spill file must be empty.
   */
  attachSpill(spill: ValueSpill, hotBytesMax: number): void {
    assert(this.spill === undefined, 'a spill is already attached');
    assert(hotBytesMax >= 0, 'hotBytesMax must be >= 0');
    this.spill = spill;
    this.hotBytesMax = hotBytesMax;
    this.trackAllHot();
  }

  /** Closes the spill file (at shutdown: spilled values cannot be read afterwards). */
  closeSpill(): void {
    this.spill?.close();
  }

  /** True while spillStep() has work: heap values over the budget, or the spill file's rewrite. */
  get spillPending(): boolean {
    const spill = this.spill;
    // Both kinds of work write: while the spill backs off, none is pending (the next applied
    // write asks again).
    if (spill === undefined || !spill.writable) return false;
    if (this.respillCursor !== undefined || spill.rewriteDue) return true;
    return this.hotBytes > this.hotBytesMax + this.spillSlack && this.hotHead < this.hot.length;
  }

  /** Spilling starts once the heap values exceed the budget by this much, and then goes down to
   *  the budget: values leave in writes of ~SPILL_BYTES_PER_STEP, not in one small write (a system
   *  call, and a file extension for the file system to journal) per applied entry. */
  private get spillSlack(): number {
    return Math.min(SPILL_BYTES_PER_STEP, this.hotBytesMax / 4);
  }

  /**
   * One bounded step of spill work: moves up to SPILL_BYTES_PER_STEP of the oldest heap values to
   * the spill file while over the budget, then advances a rewrite of the spill file (which copies
   * live values out of the generation being emptied). Returns spillPending.
   */
  spillStep(): boolean {
    const spill = this.spill;
    if (spill === undefined) return false;
    if (this.hotBytes > this.hotBytesMax + this.spillSlack && spill.writable) this.spillOldest(spill);
    if (this.respillCursor === undefined && spill.rewriteDue) {
      spill.beginRewrite();
      this.respillCursor = EMPTY_BYTES;
    }
    if (this.respillCursor !== undefined && spill.writable) this.respillSlice(spill);
    return this.spillPending;
  }

  private spillOldest(spill: ValueSpill): void {
    const kvs: StoredKv[] = [];
    const values: Bytes[] = [];
    let bytes = 0;
    const hot = this.hot;
    while (this.hotBytes > this.hotBytesMax && this.hotHead < hot.length && bytes < SPILL_BYTES_PER_STEP) {
      const kv = hot[this.hotHead]!;
      hot[this.hotHead++] = undefined;
      const value = kv.value as Bytes;
      this.hotBytes -= value.length;
      kvs.push(kv);
      values.push(value);
      bytes += value.length;
    }
    if (this.hotHead >= HOT_QUEUE_TRIM_MIN && this.hotHead * 2 >= hot.length) {
      this.hot = hot.slice(this.hotHead);
      this.hotHead = 0;
    }
    if (kvs.length === 0) return;
    const refs = spill.append(values);
    if (refs === undefined) {
      // The spill cannot take them now: they stay in the heap, at the back of the queue.
      for (const kv of kvs) this.trackHot(kv);
      return;
    }
    for (let i = 0; i < kvs.length; i++) this.moveToSpill(kvs[i], refs[i], values[i].length, spill);
  }

  /** Replaces `kv` in the index and history by a copy holding `ref` (a value of `length` bytes);
   *  a version compacted away meanwhile is not replaced, and its ref is released at once. */
  private moveToSpill(kv: StoredKv, ref: SpillRef, length: number, spill: ValueSpill): void {
    const cold = makeKv(kv.key, kv.createRevision, kv.modRevision, kv.version, ref, kv.lease);
    if (this.index.replace(kv, cold)) this.history.replace(kv, cold);
    else spill.release(ref, length);
  }

  /** Copies the live values of the generation being rewritten, for a slice of keys. */
  private respillSlice(spill: ValueSpill): void {
    const stale = spill.rewriting;
    const from = this.respillCursor!;
    if (stale === undefined) {
      this.respillCursor = undefined;
      return;
    }
    const kvs: StoredKv[] = [];
    let next: Bytes | undefined;
    let seen = 0;
    for (const [key, v] of this.index.entriesFrom(from)) {
      if (seen === RESPILL_KEYS_PER_STEP) {
        next = key;
        break;
      }
      seen++;
      const n = versionCount(v);
      for (let i = 0; i < n; i++) {
        const kv = versionAt(v, i);
        if (typeof kv.value === 'number' && spillRefGeneration(kv.value) === stale) kvs.push(kv);
      }
    }
    if (kvs.length > 0) {
      const values = kvs.map((kv) => spill.read(kv.value as SpillRef));
      const refs = spill.append(values);
      if (refs === undefined) return; // retried from the same key on the next step
      for (let i = 0; i < kvs.length; i++) {
        spill.release(kvs[i].value as SpillRef, values[i].length);
        this.moveToSpill(kvs[i], refs[i], values[i].length, spill);
      }
    }
    this.respillCursor = next;
    if (next === undefined) {
      spill.finishRewrite();
      this.valuesEpochValue++;
      this.epoch++; // refs into the emptied file are gone: an export in progress must not go on
    }
  }

  /** @internal snapshot import: sets the revisions and drops what the compaction point hides. */
  restoreFinish(currentRevision: Revision, compactRevision: Revision): void {
    assert(this.currentRev === 1 && this.compactRev === 0, 'restoreFinish on a used store');
    assert(compactRevision <= currentRevision, 'snapshot: compact revision above current revision');
    this.currentRev = currentRevision;
    if (compactRevision > 0) this.compact(compactRevision);
    this.epoch++;
  }
}

/** A hash the store answers without a pass (MvccStore.cachedHash). */
export interface CachedHash {
  readonly revision: Revision;
  readonly compactRevision: Revision;
  readonly hash: number;
}

/** A sliced hashKV (MvccStore.hashKVJob). */
export interface HashKVJob {
  readonly hashRevision: Revision;
  readonly compactRevision: Revision;
  /** Answered by the cache: the first step is 'done'. */
  readonly fromCache: boolean;
  /** Hashes the next slice: 'more' to go, 'done' (result() is ready), or 'stale' (start over). */
  step(maxVersions: number): 'more' | 'done' | 'stale';
  result(): HashKVResult;
}

/** The only way to change the store: one revision's worth of puts and deletes. */
export class WriteTxn {
  private changes = 0;
  private ended = false;
  private readonly events: Event[] = [];

  /** @internal created by MvccStore.write(). */
  constructor(
    private readonly store: MvccStore,
    /** The revision this txn's changes get (currentRevision + 1 when it was opened). */
    readonly revision: Revision,
  ) {}

  /** The store's committed revision (this txn's changes become visible at `revision` = this + 1). */
  get currentRevision(): Revision {
    return this.store.currentRevision;
  }

  get compactRevision(): Revision {
    return this.store.compactRevision;
  }

  /** Reads as of this txn: its own earlier writes are visible (as in etcd's txn). */
  range(key: BytesLike, rangeEnd: BytesLike | undefined, opts: RangeOptions = {}): RangeResult {
    assert(!this.ended, 'range on an ended txn');
    const headRev = this.changes > 0 ? this.revision : this.store.currentRevision;
    return this.store.rangeAt(key, rangeEnd, opts, headRev);
  }

  /** One key's live version as of this txn (its own writes visible), its value only if asked:
   *  range(key, undefined, { keysOnly: !withValue }).kvs[0], without a range's work. */
  get(key: BytesLike, withValue: boolean): KeyValue | undefined {
    assert(!this.ended, 'get on an ended txn');
    return this.store.latestAt(key, this.changes > 0 ? this.revision : this.store.currentRevision, withValue);
  }

  /** Returns the PUT event: the stored kv (its key is the store's own string) and prevKv. */
  put(key: BytesLike, value: BytesLike, lease: LeaseId): Event {
    assert(!this.ended, 'put on an ended txn');
    const ev = this.store.applyPut(key, value, lease, this.revision);
    this.changes++;
    this.events.push(ev);
    return ev;
  }

  /** Deletes the keys live in the range; returns their previous kvs in key order, values
   *  included unless `withValues` is false (then a spilled value stays a reference: its key,
   *  revisions and lease are what a lease detach needs). */
  deleteRange(key: BytesLike, rangeEnd: BytesLike | undefined): { deleted: KeyValue[] };
  deleteRange(key: BytesLike, rangeEnd: BytesLike | undefined, withValues: boolean): { deleted: StoredKv[] };
  deleteRange(key: BytesLike, rangeEnd: BytesLike | undefined, withValues = true): { deleted: StoredKv[] } {
    assert(!this.ended, 'deleteRange on an ended txn');
    const deleted: StoredKv[] = [];
    const evs = this.store.applyDeleteRange(key, rangeEnd, this.revision, withValues, deleted);
    for (let i = 0; i < evs.length; i++) this.events.push(evs[i]);
    this.changes += evs.length;
    return { deleted };
  }

  /** Commits. The revision advances only if something changed. */
  end(): WriteResult {
    assert(!this.ended, 'txn ended twice');
    this.ended = true;
    const revision = this.store.commitTxn(this, this.changes > 0);
    return { revision, events: this.events };
  }
}
