// Unstable: entries and a snapshot raft has accepted but the application has not yet persisted.
//
// Invariant: entries[k].index === offset + k; if a snapshot is present, offset === snapshot.index + 1.
// Entries move to Storage when the application advances past the Ready that carried them.

import { assert } from '../util/assert';
import type { Entry, Index, Snapshot, Term } from './types';

export class Unstable {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  offset: Index;

  constructor(offset: Index) {
    this.offset = offset;
  }

  /** Index of the first possible entry, if a snapshot is pending. */
  maybeFirstIndex(): Index | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): Index | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    if (this.snapshot !== undefined) return this.snapshot.metadata.index;
    return undefined;
  }

  maybeTerm(i: Index): Term | undefined {
    if (i < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return (this.entries[i - this.offset] as Entry).term;
  }

  /**
   * Marks entries up to (i, t) as persisted. If the entry at i was replaced since the Ready that
   * carried it (term differs), nothing is marked: the replacement still needs persisting.
   */
  stableTo(i: Index, t: Term): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return;
    const n = i + 1 - this.offset;
    this.entries = n === this.entries.length ? [] : this.entries.slice(n);
    this.offset = i + 1;
  }

  stableSnapTo(i: Index): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) this.snapshot = undefined;
  }

  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: Entry[]): void {
    if (ents.length === 0) return;
    const fromIndex = (ents[0] as Entry).index;
    const after = this.offset + this.entries.length;
    if (fromIndex === after) {
      for (const e of ents) this.entries.push(e);
    } else if (fromIndex <= this.offset) {
      // Replace the whole unstable tail; Storage will truncate its own suffix when these are written.
      this.offset = fromIndex;
      this.entries = ents.slice();
    } else {
      // Truncate to fromIndex (exclusive) and append.
      this.entries.length = fromIndex - this.offset;
      for (const e of ents) this.entries.push(e);
    }
  }

  /** Entries in [lo, hi). Requires offset <= lo <= hi <= offset + len. */
  slice(lo: Index, hi: Index): Entry[] {
    assert(lo <= hi, `unstable.slice: invalid [${lo}, ${hi})`);
    const upper = this.offset + this.entries.length;
    assert(lo >= this.offset && hi <= upper, `unstable.slice[${lo},${hi}) out of bound [${this.offset},${upper}]`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
