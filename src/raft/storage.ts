// Storage: the durable log raft reads from, and MemoryStorage, an in-memory implementation.
//
// Raft only reads Storage; the application writes it while handling a Ready (entries, hard state,
// snapshot), before calling advance(). Everything in Storage is treated as durable ("stable").

import { assert } from '../util/assert';
import type { StorageErr } from './errors';
import type { ConfState, Entry, HardState, Index, Snapshot, Term } from './types';
import { entrySize, emptyHardState, EntryType, None } from './types';

export interface InitialState {
  hardState: HardState;
  confState: ConfState;
}

export interface Storage {
  /** The persisted HardState and the ConfState of the latest snapshot (plus applied conf changes the app saved). */
  initialState(): InitialState;
  /** Entries in [lo, hi), at most maxSizeBytes in total but always at least one if any exist. */
  entries(lo: Index, hi: Index, maxSizeBytes: number): Entry[] | StorageErr;
  /** Term of entry i; i may be firstIndex()-1 (the snapshot's index). */
  term(i: Index): Term | StorageErr;
  /** Index of the first entry available (the snapshot index + 1). */
  firstIndex(): Index;
  lastIndex(): Index;
  /** The most recent snapshot. */
  snapshot(): Snapshot | StorageErr;
}

/**
 * In-memory Storage. ents[0] is a dummy entry holding the snapshot's (index, term), so that
 * term(firstIndex-1) is answerable. Invariant: ents[k].index === ents[0].index + k.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = emptyHardState();
  private snap: Snapshot;
  private ents: Entry[];

  constructor(confState: ConfState = { voters: [], learners: [] }) {
    this.snap = {
      data: new Uint8Array(0),
      metadata: { index: 0, term: 0, confState: cloneConfState(confState) },
    };
    this.ents = [{ index: 0, term: 0, type: EntryType.Normal, data: new Uint8Array(0) }];
  }

  /**
   * A storage for a member of a brand-new cluster with these voters: the initial membership is an
   * (empty-data) snapshot at index 1, term 1, already committed. Members added later start from an
   * empty MemoryStorage and receive the membership from the leader's snapshot — which is why the
   * initial configuration must not live only in a local, log-less conf state.
   */
  static bootstrap(voters: bigint[], data: Uint8Array = new Uint8Array(0)): MemoryStorage {
    const ms = new MemoryStorage({ voters: [...voters], learners: [] });
    ms.snap = { data, metadata: { index: 1, term: 1, confState: { voters: [...voters], learners: [] } } };
    ms.ents = [{ index: 1, term: 1, type: EntryType.Normal, data: new Uint8Array(0) }];
    ms.hardState = { term: 1, vote: None, commit: 1 };
    return ms;
  }

  initialState(): InitialState {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.metadata.confState) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private offset(): Index {
    return (this.ents[0] as Entry).index;
  }

  entries(lo: Index, hi: Index, maxSizeBytes: number): Entry[] | StorageErr {
    const offset = this.offset();
    if (lo <= offset) return 'compacted';
    if (hi > this.lastIndex() + 1) return 'unavailable';
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSizeBytes);
  }

  term(i: Index): Term | StorageErr {
    const offset = this.offset();
    if (i < offset) return 'compacted';
    if (i - offset >= this.ents.length) return 'unavailable';
    return (this.ents[i - offset] as Entry).term;
  }

  firstIndex(): Index {
    return this.offset() + 1;
  }

  lastIndex(): Index {
    return this.offset() + this.ents.length - 1;
  }

  snapshot(): Snapshot | StorageErr {
    return this.snap;
  }

  /** Installs a snapshot (received from the leader), discarding the whole log. */
  applySnapshot(snap: Snapshot): 'out-of-date' | null {
    if (this.snap.metadata.index >= snap.metadata.index) return 'out-of-date';
    this.snap = { data: snap.data, metadata: { ...snap.metadata, confState: cloneConfState(snap.metadata.confState) } };
    this.ents = [{ index: snap.metadata.index, term: snap.metadata.term, type: EntryType.Normal, data: new Uint8Array(0) }];
    return null;
  }

  /**
   * Records a snapshot of the application state at applied index i (i <= lastIndex). Does not
   * compact; call compact() separately to drop log entries.
   */
  createSnapshot(i: Index, cs: ConfState, data: Uint8Array): Snapshot | 'out-of-date' {
    if (i <= this.snap.metadata.index) return 'out-of-date';
    assert(i <= this.lastIndex(), `snapshot ${i} is out of bound lastindex(${this.lastIndex()})`);
    const term = this.term(i);
    assert(typeof term === 'number', `createSnapshot: term of ${i} unavailable`);
    this.snap = { data, metadata: { index: i, term, confState: cloneConfState(cs) } };
    return this.snap;
  }

  /**
   * The lowest index i ≤ `index` such that the entries (i, index] number at most `maxEntries` and
   * their data at most `maxBytes` in total: where to compact to, keeping that much behind a
   * snapshot at `index`. Never below the first index (nothing to drop then).
   */
  compactionPoint(index: Index, maxEntries: number, maxBytes: number): Index {
    const offset = this.offset();
    assert(index <= this.lastIndex(), `compactionPoint: ${index} is beyond the last index ${this.lastIndex()}`);
    let i = index;
    let bytes = 0;
    while (i > offset && index - i < maxEntries) {
      const size = entrySize(this.ents[i - offset] as Entry);
      if (bytes + size > maxBytes) break;
      bytes += size;
      i--;
    }
    return i;
  }

  /** Discards all entries before compactIndex. The app must not compact past its applied index. */
  compact(compactIndex: Index): 'compacted' | null {
    const offset = this.offset();
    if (compactIndex <= offset) return 'compacted';
    assert(compactIndex <= this.lastIndex(), `compact ${compactIndex} is out of bound lastindex(${this.lastIndex()})`);
    const i = compactIndex - offset;
    const head = this.ents[i] as Entry;
    const rest = this.ents.slice(i + 1);
    this.ents = [{ index: head.index, term: head.term, type: EntryType.Normal, data: new Uint8Array(0) }, ...rest];
    return null;
  }

  /**
   * Appends entries, replacing any existing entries at or after entries[0].index (a follower
   * overwriting an uncommitted conflicting suffix). Entries already compacted are ignored.
   */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = (entries[entries.length - 1] as Entry).index;
    if (last < first) return; // entirely compacted
    let ents = entries;
    if (first > (entries[0] as Entry).index) ents = entries.slice(first - (entries[0] as Entry).index);
    const start = (ents[0] as Entry).index;
    const offset = start - this.offset();
    assert(offset <= this.ents.length, `missing log entry [last: ${this.lastIndex()}, append at: ${start}]`);
    for (let k = 1; k < ents.length; k++) {
      assert((ents[k] as Entry).index === start + k, 'append: entries not contiguous');
    }
    if (offset < this.ents.length) this.ents.length = offset;
    for (const e of ents) this.ents.push(e);
  }

  /** The term of the HardState's vote; for tests. */
  hardStateSnapshot(): HardState {
    return { ...this.hardState };
  }
}

export function cloneConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}

/** Truncates ents so that their total size is <= maxSizeBytes, keeping at least one entry. */
export function limitSize(ents: Entry[], maxSizeBytes: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entrySize(ents[0] as Entry);
  let k = 1;
  for (; k < ents.length; k++) {
    size += entrySize(ents[k] as Entry);
    if (size > maxSizeBytes) break;
  }
  return k === ents.length ? ents : ents.slice(0, k);
}

export { None };
