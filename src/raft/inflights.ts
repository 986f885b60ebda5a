// Inflights: a bounded ring buffer of the MsgApps sent to one follower in StateReplicate and not
// yet acknowledged, recorded as (last index, bytes). Flow control: when full, the leader stops
// sending until acknowledgements free slots (etcd tracker/inflights.go).

import { assert } from '../util/assert';
import type { Index } from './types';

export class Inflights {
  private start = 0;
  private count = 0;
  private bytes = 0;
  private readonly indexes: Index[];
  private readonly sizes: number[];

  constructor(
    readonly capacity: number,
    /** 0 = no byte limit. */
    readonly maxBytes: number,
  ) {
    assert(capacity > 0, 'inflights capacity must be positive');
    this.indexes = new Array<Index>(capacity).fill(0);
    this.sizes = new Array<number>(capacity).fill(0);
  }

  /** Records a MsgApp whose last entry is `index`. Indexes must increase. */
  add(index: Index, bytes: number): void {
    assert(!this.full(), 'cannot add into a full inflights');
    if (this.count > 0) {
      const lastIdx = this.indexes[(this.start + this.count - 1) % this.capacity] as Index;
      assert(index > lastIdx, `inflights must increase: ${index} after ${lastIdx}`);
    }
    const slot = (this.start + this.count) % this.capacity;
    this.indexes[slot] = index;
    this.sizes[slot] = bytes;
    this.count++;
    this.bytes += bytes;
  }

  /** Frees every in-flight message whose last index is <= to (they were acknowledged). */
  freeLE(to: Index): void {
    while (this.count > 0 && (this.indexes[this.start] as Index) <= to) {
      this.bytes -= this.sizes[this.start] as number;
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
    assert(this.bytes >= 0, 'inflight bytes went negative');
  }

  /** Frees the oldest in-flight message (a heartbeat response showed the follower is alive). */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.freeLE(this.indexes[this.start] as Index);
  }

  full(): boolean {
    return this.count === this.capacity || (this.maxBytes !== 0 && this.bytes >= this.maxBytes);
  }

  size(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}
