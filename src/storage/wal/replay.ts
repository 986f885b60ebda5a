// ReplayLog: rebuilds the Raft log from records in the order they were written, with Raft's rules.
//
//  - An entry at index i <= the last index replaces the tail from i (a new leader overwrote a
//    conflicting, uncommitted suffix): truncate, then append. An entry past last + 1 is a gap.
//  - A snapshot marker at S drops the entries <= S and keeps those after it (as etcd's WAL does; if
//    they conflict with the leader's log, Raft overwrites them before they can commit). Markers never
//    move backwards.
//  - The last hard state wins; metadata must be the same in every segment.
//
// lastIndex() follows exactly the rule Wal uses while writing (max(last entry, snapshot index)), so
// the first index in a segment's name can be checked against it: writer and reader are paired.

import type { Entry, HardState } from '../../raft/types';
import { emptyHardState } from '../../raft/types';
import { assert } from '../../util/assert';
import type { SnapshotMarker } from './encoder';

export class ReplayLog {
  /** entries[k].index === base + 1 + k. */
  private entries: Entry[] = [];
  private base: number;
  snapshot: SnapshotMarker | undefined = undefined;
  hardState: HardState = emptyHardState();
  metadata: Uint8Array | undefined = undefined;

  /** `base`: the log's last index before the first segment read (from that segment's name). */
  constructor(base: number) {
    this.base = base;
  }

  lastIndex(): number {
    return this.base + this.entries.length;
  }

  snapshotIndex(): number {
    return this.snapshot?.index ?? 0;
  }

  /** Returns a reason if the entry breaks the log's shape (corruption), else appends it. */
  appendEntry(e: Entry): string | undefined {
    const last = this.lastIndex();
    if (e.index > last + 1) return `entry ${e.index} leaves a gap after index ${last}`;
    if (e.index <= this.snapshotIndex()) return `entry ${e.index} is at or below the snapshot marker ${this.snapshotIndex()}`;
    if (e.index <= this.base) {
      // Overwrites entries of a released segment (possible only above the snapshot marker).
      this.entries = [];
      this.base = e.index - 1;
    } else {
      this.entries.length = e.index - this.base - 1;
    }
    this.entries.push(e);
    return undefined;
  }

  applySnapshot(s: SnapshotMarker): string | undefined {
    if (s.index < this.snapshotIndex()) return `snapshot marker ${s.index} is behind the previous one at ${this.snapshotIndex()}`;
    this.snapshot = { index: s.index, term: s.term };
    if (s.index >= this.lastIndex()) {
      this.entries = [];
      this.base = s.index;
    } else if (s.index > this.base) {
      this.entries = this.entries.slice(s.index - this.base);
      this.base = s.index;
    }
    return undefined;
  }

  applyMetadata(m: Uint8Array): string | undefined {
    if (this.metadata === undefined) this.metadata = m;
    else if (Buffer.compare(this.metadata, m) !== 0) return 'metadata differs from the first segment';
    return undefined;
  }

  /** Gives the entries whose data are views into `backing` copies of their own (one allocation
   *  for all of them), so that the caller may drop `backing`. */
  copyOut(backing: ArrayBufferLike): void {
    let bytes = 0;
    for (const e of this.entries) if (e.data.buffer === backing) bytes += e.data.length;
    if (bytes === 0) return;
    const copy = Buffer.allocUnsafeSlow(bytes);
    let off = 0;
    this.entries = this.entries.map((e) => {
      if (e.data.buffer !== backing) return e;
      copy.set(e.data, off);
      const data = copy.subarray(off, off + e.data.length);
      off += e.data.length;
      return { ...e, data };
    });
    assert(off === bytes, 'wal replay: copied entry bytes');
  }

  /** The entries after the snapshot marker, or a reason why some of them are missing. */
  finish(): { entries: Entry[] } | { missing: string } {
    const s = this.snapshotIndex();
    if (this.base > s) {
      return { missing: `entries ${s + 1}..${this.base} are missing (segments were removed before a snapshot covered them)` };
    }
    return { entries: this.entries };
  }
}
