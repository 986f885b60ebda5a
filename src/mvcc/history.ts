// The revision history: every change (put or tombstone) in the order it was applied, which is
// (revision, sub-revision) order. Watchers catch up from here.
//
// Memory: the history is one array of references to the StoredKv objects the key index already
// holds; an entry costs one pointer. There is no revision -> position table: entries are sorted by
// modRevision, so a revision is found by binary search over the entries themselves. A change's
// sub-revision is its position within its revision's run of entries.
//
// Compaction moves `head` (the first entry still served) immediately; the array is physically
// shortened later (trim), so a compaction never has to copy the array on the caller's stack.

import { assert } from '../util/assert';
import { Revision, StoredKv } from './types';

/** Trim only when the dead prefix is at least this long, so small compactions do not copy. */
const TRIM_DEAD_ENTRIES_MIN = 4096;

export class History {
  private entries: StoredKv[] = [];
  /** Index of the first entry still served (entries before it are compacted away). */
  private head = 0;

  /** Number of entries still served. */
  get length(): number {
    return this.entries.length - this.head;
  }

  append(kv: StoredKv): void {
    const n = this.entries.length;
    assert(n === this.head || this.entries[n - 1].modRevision <= kv.modRevision, 'history: revision decreased');
    this.entries.push(kv);
  }

  /** Position (absolute) of the first served entry with modRevision >= rev. */
  lowerBound(rev: Revision): number {
    let lo = this.head;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid].modRevision < rev) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Stops serving entries with modRevision < rev. */
  compact(rev: Revision): void {
    this.head = this.lowerBound(rev);
  }

  /** Whether the dead prefix is worth copying the array for. */
  get trimDue(): boolean {
    return this.head >= TRIM_DEAD_ENTRIES_MIN && this.head * 2 >= this.entries.length;
  }

  /** Physically drops the compacted prefix (O(length) copy; called from incremental compaction). */
  trim(): void {
    if (this.head === 0) return;
    this.entries = this.entries.slice(this.head);
    this.head = 0;
  }

  /** Puts `next` where `prev` (the same version) is, if `prev` is still served. */
  replace(prev: StoredKv, next: StoredKv): void {
    const entries = this.entries;
    for (let p = this.lowerBound(prev.modRevision); p < entries.length && entries[p].modRevision === prev.modRevision; p++) {
      if (entries[p] === prev) {
        entries[p] = next;
        return;
      }
    }
  }

  at(pos: number): StoredKv {
    assert(pos >= this.head && pos < this.entries.length, 'history: position out of range');
    return this.entries[pos];
  }

  /** Absolute position one past the last entry. */
  get end(): number {
    return this.entries.length;
  }

  /** Served entries in order (for snapshots). */
  *served(): Generator<StoredKv> {
    for (let i = this.head; i < this.entries.length; i++) yield this.entries[i];
  }

  /**
   * Positions [start, stop) of the entries with fromRev <= modRevision <= toRev, cut at a revision
   * boundary so that at most maxEvents are included — except that the first revision is always
   * included whole, however large (a revision's events are never split). `nextRev` is the first
   * revision not covered.
   */
  window(fromRev: Revision, toRev: Revision, maxEvents: number): { start: number; stop: number; nextRev: Revision } {
    assert(maxEvents > 0, 'history: maxEvents must be positive');
    const start = this.lowerBound(fromRev);
    const entries = this.entries;
    let stop = start;
    while (stop < entries.length) {
      const rev = entries[stop].modRevision;
      if (rev > toRev) break;
      let runEnd = stop + 1;
      while (runEnd < entries.length && entries[runEnd].modRevision === rev) runEnd++;
      if (stop > start && runEnd - start > maxEvents) return { start, stop, nextRev: rev };
      stop = runEnd;
    }
    return { start, stop, nextRev: toRev + 1 };
  }
}
