// RaftLog: the log as raft sees it — stable entries in Storage followed by unstable entries not yet
// persisted — plus the commit and applied indexes.
//
// Invariants: applied <= committed <= lastIndex(); firstIndex()-1 <= applied (entries before the
// snapshot are gone); every entry at index >= firstIndex is readable from storage or unstable.

import { assert } from '../util/assert';
import { isStorageErr } from './errors';
import type { Storage } from './storage';
import { limitSize } from './storage';
import { Unstable } from './log_unstable';
import type { Entry, Index, Snapshot, Term } from './types';
import { entrySize } from './types';

export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  /** Highest index known to be stored on a quorum. Invariant: committed <= lastIndex(). */
  committed: Index;
  /** Highest index handed to the application in a Ready. Invariant: applied <= committed. */
  applied: Index;
  private readonly maxApplyingBytes: number;

  constructor(storage: Storage, maxApplyingBytes: number) {
    this.storage = storage;
    this.maxApplyingBytes = maxApplyingBytes;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): Index {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): Index {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): Term {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, `unexpected error when getting the last term at ${this.lastIndex()}`);
    return t;
  }

  /** Term of entry i, or undefined if i is compacted or beyond the last index. term(0) === 0. */
  term(i: Index): Term | undefined {
    const ut = this.unstable.maybeTerm(i);
    if (ut !== undefined) return ut;
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    const t = this.storage.term(i);
    if (isStorageErr(t)) return undefined;
    return t;
  }

  matchTerm(i: Index, t: Term): boolean {
    const ours = this.term(i);
    return ours !== undefined && ours === t;
  }

  /** Section 5.4.1: a candidate's log is at least as up-to-date as ours. */
  isUpToDate(lastIndex: Index, lastTerm: Term): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Follower side of MsgApp: if our log matches (index, logTerm), append ents (dropping what we
   * already have, truncating a conflicting uncommitted suffix) and advance commit. Returns the last
   * new index, or undefined if the log does not match.
   */
  maybeAppend(index: Index, logTerm: Term, committed: Index, ents: Entry[]): Index | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNewIndex = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      assert(ci > this.committed, `entry ${ci} conflict with committed entry [committed(${this.committed})]`);
      this.append(ents.slice(ci - (index + 1)));
    }
    // Only entries verified to match the leader's log may be committed: min(committed, lastNewIndex).
    this.commitTo(Math.min(committed, lastNewIndex));
    return lastNewIndex;
  }

  append(ents: Entry[]): Index {
    if (ents.length === 0) return this.lastIndex();
    const after = (ents[0] as Entry).index - 1;
    assert(after >= this.committed, `after(${after}) is out of range [committed(${this.committed})]`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry in ents whose term differs from ours, or the first new entry
   * past our last index; 0 if every entry is already present.
   */
  findConflict(ents: Entry[]): Index {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast backtracking (etcd's findConflictByTerm): the largest index <= index whose term is <= term,
   * with that term. Every entry in (result, index] has a term > `term`, so cannot match the leader.
   */
  findConflictByTerm(index: Index, term: Term): { index: Index; term: Term } {
    for (let i = index; i > 0; i--) {
      const ours = this.term(i);
      if (ours === undefined) return { index: i, term: 0 }; // compacted: cannot see further back
      if (ours <= term) return { index: i, term: ours };
    }
    return { index: 0, term: 0 };
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries.slice();
  }

  /** Committed entries the application has not yet been given, bounded in size. */
  nextCommittedEnts(): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    const ents = this.slice(lo, hi, this.maxApplyingBytes);
    assert(ents !== undefined, `nextCommittedEnts: [${lo}, ${hi}) unavailable`);
    return ents;
  }

  hasNextCommittedEnts(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  snapshot(): Snapshot | undefined {
    if (this.unstable.snapshot !== undefined) return this.unstable.snapshot;
    const s = this.storage.snapshot();
    return isStorageErr(s) ? undefined : s;
  }

  commitTo(toCommit: Index): void {
    // Never decrease commit.
    if (this.committed < toCommit) {
      assert(this.lastIndex() >= toCommit, `tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]`);
      this.committed = toCommit;
    }
  }

  appliedTo(i: Index): void {
    if (i === 0) return;
    assert(this.committed >= i && i >= this.applied, `applied(${i}) out of range [prevApplied(${this.applied}), committed(${this.committed})]`);
    this.applied = i;
  }

  stableTo(i: Index, t: Term): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: Index): void {
    this.unstable.stableSnapTo(i);
  }

  /** Leader: advance commit to maxIndex if that entry is from `term` (never commit old terms by counting). */
  maybeCommit(maxIndex: Index, term: Term, allowPreviousTerm = false): boolean {
    if (maxIndex > this.committed && (allowPreviousTerm || this.term(maxIndex) === term)) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  restore(s: Snapshot): void {
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  /** Entries from lo to the end, at most maxSize bytes; undefined if lo is compacted. */
  entries(lo: Index, maxSizeBytes: number): Entry[] | undefined {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, maxSizeBytes);
  }

  /** Entries in [lo, hi), at most maxSize bytes (at least one); undefined if lo is compacted. */
  slice(lo: Index, hi: Index, maxSizeBytes: number): Entry[] | undefined {
    assert(lo <= hi, `invalid slice ${lo} > ${hi}`);
    const fi = this.firstIndex();
    if (lo < fi) return undefined;
    assert(hi <= this.lastIndex() + 1, `slice[${lo},${hi}) out of bound [${fi},${this.lastIndex()}]`);
    if (lo === hi) return [];
    let ents: Entry[] = [];
    const uOffset = this.unstable.offset;
    if (lo < uOffset) {
      const stored = this.storage.entries(lo, Math.min(hi, uOffset), maxSizeBytes);
      if (stored === 'compacted') return undefined;
      assert(!isStorageErr(stored), `storage entries [${lo}, ${Math.min(hi, uOffset)}) unavailable`);
      // Storage returned fewer entries than asked: the size limit was hit, stop here.
      if (stored.length < Math.min(hi, uOffset) - lo) return stored;
      ents = stored;
    }
    if (hi > uOffset) {
      // Copy only what fits: the unstable tail of a busy leader can be long.
      let size = RaftLog.sizeOf(ents);
      const from = Math.max(lo, uOffset);
      let to = from;
      while (to < hi) {
        const e = this.unstable.entries[to - uOffset] as Entry;
        size += entrySize(e);
        if (size > maxSizeBytes && (ents.length > 0 || to > from)) break;
        to++;
      }
      const u = this.unstable.slice(from, to);
      ents = ents.length > 0 ? ents.concat(u) : u;
      return ents;
    }
    return limitSize(ents, maxSizeBytes);
  }

  /** Total size of entries in a slice; used for flow-control accounting. */
  static sizeOf(ents: Entry[]): number {
    let n = 0;
    for (const e of ents) n += entrySize(e);
    return n;
  }
}
