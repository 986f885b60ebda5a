// MVCC snapshots as a stream of plain records (the format is MvccSnapshotRecord in types.ts):
//   header {currentRevision, compactRevision}
//   kv (base)    — per key, the version that survives below the compaction point, in key order
//   kv (history) — every change from the compaction point on, in (revision, sub-revision) order
//   end {kvCount} — paired check of the number of kv records
// Importing the stream rebuilds a store with the same ranges, history, events and hashKV.
//
// Export is a generator of chunks so a caller can spread it over event-loop turns. The store must
// not change while an export is in progress (asserted on every chunk): the durable copy is taken
// from a backend snapshot, and this stream is the in-memory view of the same point.

import { assert } from '../util/assert';
import { firstRetained, KeyIndex, makeKv, versionAt, versionCount } from './key_index';
import { MvccStore } from './store';
import { Bytes, EMPTY_BYTES, KeyValue, MvccSnapshotRecord, Revision, StoredKv } from './types';

/** Records per yielded chunk. */
export const SNAPSHOT_CHUNK_RECORDS_MAX = 1024;

/** Copies a KeyValue so the snapshot never takes in objects the caller shares. */
function plainKv(kv: KeyValue): KeyValue {
  return makeKv(kv.key, kv.createRevision, kv.modRevision, kv.version, kv.value, kv.lease);
}

/** Base versions: for each key, its retained versions below the compaction point (at most one). */
function* baseVersions(index: KeyIndex, compactRev: Revision): Generator<StoredKv> {
  if (compactRev === 0) return;
  const keyed: StoredKv[] = [];
  // Walk the index in slices of keys, so no tree iterator is held across a yield.
  let from: Bytes | undefined = EMPTY_BYTES;
  while (from !== undefined) {
    keyed.length = 0;
    let next: Bytes | undefined;
    let seen = 0;
    for (const [key, v] of index.entriesFrom(from)) {
      if (seen === SNAPSHOT_CHUNK_RECORDS_MAX) {
        next = key;
        break;
      }
      seen++;
      const n = versionCount(v);
      for (let i = firstRetained(v, compactRev); i < n; i++) {
        const kv = versionAt(v, i);
        if (kv.modRevision >= compactRev) break;
        keyed.push(kv);
      }
    }
    yield* keyed;
    from = next;
  }
}

export function* exportSnapshot(store: MvccStore): Generator<MvccSnapshotRecord[]> {
  const { index, history } = store.snapshotSources();
  const epoch = store.stateEpoch;
  const compactRevision = store.compactRevision;
  let chunk: MvccSnapshotRecord[] = [
    { type: 'header', currentRevision: store.currentRevision, compactRevision },
  ];
  let kvCount = 0;
  const emit = (base: boolean, kv: StoredKv): boolean => {
    chunk.push({ type: 'kv', base, kv: store.copyOut(kv) });
    kvCount++;
    return chunk.length >= SNAPSHOT_CHUNK_RECORDS_MAX;
  };
  for (const kv of baseVersions(index, compactRevision)) {
    assert(store.stateEpoch === epoch, 'store changed during a snapshot export');
    if (emit(true, kv)) {
      yield chunk;
      chunk = [];
    }
  }
  for (const kv of history.served()) {
    assert(store.stateEpoch === epoch, 'store changed during a snapshot export');
    if (emit(false, kv)) {
      yield chunk;
      chunk = [];
    }
  }
  chunk.push({ type: 'end', kvCount });
  yield chunk;
}

/** Rebuilds a store from snapshot records, fed in chunks (e.g. as they arrive from a stream). */
export class SnapshotImporter {
  /** `store`: an empty store to import into (e.g. one with a spill attached); a new one if not given. */
  constructor(private readonly store: MvccStore = new MvccStore()) {
    assert(store.currentRevision === 1 && store.keyCount === 0, 'snapshot: import into a used store');
  }

  private header: { currentRevision: Revision; compactRevision: Revision } | undefined;
  /** The header's currentRevision is not known yet (finishAt gives it): records are checked
   *  against it at the end instead of as they come. */
  private currentRevisionLate = false;
  private modRevisionMax: Revision = 0;
  private kvCount = 0;
  private lastHistoryRev: Revision = 0;
  private done = false;

  importRecords(records: Iterable<MvccSnapshotRecord>): void {
    for (const r of records) this.importRecord(r);
  }

  private importRecord(r: MvccSnapshotRecord): void {
    assert(!this.done, 'snapshot: record after the end record');
    if (r.type === 'header') {
      assert(this.header === undefined, 'snapshot: second header');
      assert(r.compactRevision >= 0 && r.compactRevision <= r.currentRevision, 'snapshot: bad header revisions');
      this.header = { currentRevision: r.currentRevision, compactRevision: r.compactRevision };
      return;
    }
    const h = this.header;
    assert(h !== undefined, 'snapshot: record before the header');
    if (r.type === 'end') {
      assert(r.kvCount === this.kvCount, 'snapshot: kv record count mismatch');
      this.done = true;
      return;
    }
    this.importKv(plainKv(r.kv), r.base, r.kv.value.length);
  }

  /**
   * A history version, in the stream's order like a kv record, handed over by the caller (a fresh
   * object, taken without a copy). Its value is `valueBytes` long: a string, or a ref into the
   * store's spill for a value already there (a backend's version spilled straight from its
   * record's bytes, with no string made for it: storage/backend KvRecordLoader).
   */
  importHistoryVersion(kv: StoredKv, valueBytes: number): void {
    assert(!this.done, 'snapshot: record after the end record');
    this.importKv(kv, false, valueBytes);
  }

  private importKv(kv: StoredKv, base: boolean, valueBytes: number): void {
    const h = this.header;
    assert(h !== undefined, 'snapshot: record before the header');
    assert(kv.modRevision <= h.currentRevision, 'snapshot: version above the current revision');
    if (kv.modRevision > this.modRevisionMax) this.modRevisionMax = kv.modRevision;
    if (base) {
      assert(this.lastHistoryRev === 0, 'snapshot: base record after history records');
      assert(kv.modRevision < h.compactRevision, 'snapshot: base record at or above the compaction point');
    } else {
      assert(kv.modRevision >= h.compactRevision, 'snapshot: history record below the compaction point');
      assert(kv.modRevision >= this.lastHistoryRev, 'snapshot: history out of revision order');
      this.lastHistoryRev = kv.modRevision;
    }
    this.store.restoreVersion(kv, base, valueBytes);
    this.kvCount++;
  }

  /** Starts an import whose current revision comes last (a backend's, whose meta records follow
   *  its versions in key order): records are imported as they arrive, `finishAt` checks them. */
  startWithoutCurrentRevision(): void {
    assert(this.header === undefined, 'snapshot: header already given');
    this.header = { currentRevision: Number.MAX_SAFE_INTEGER, compactRevision: 0 };
    this.currentRevisionLate = true;
  }

  /** finish() of an import started by startWithoutCurrentRevision, at the current revision now known. */
  finishAt(currentRevision: Revision): MvccStore {
    assert(this.currentRevisionLate && this.header !== undefined, 'snapshot: finishAt without startWithoutCurrentRevision');
    assert(this.modRevisionMax <= currentRevision, 'snapshot: version above the current revision');
    this.header.currentRevision = currentRevision;
    this.currentRevisionLate = false;
    return this.finish();
  }

  /** Returns the rebuilt store; the stream must have ended. */
  finish(): MvccStore {
    assert(!this.currentRevisionLate, 'snapshot: an import without its current revision ends with finishAt');
    assert(this.done && this.header !== undefined, 'snapshot: stream ended without its end record');
    this.store.restoreFinish(this.header.currentRevision, this.header.compactRevision);
    return this.store;
  }
}

export function storeFromSnapshot(chunks: Iterable<MvccSnapshotRecord[]>): MvccStore {
  const importer = new SnapshotImporter();
  for (const chunk of chunks) importer.importRecords(chunk);
  return importer.finish();
}
