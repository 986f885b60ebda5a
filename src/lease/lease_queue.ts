// A binary min-heap of (time, lease) items, ordered by time. Used for lease expiry and checkpoint
// schedules. Items are never updated in place: a newer item for the same lease is pushed and the
// stale one is recognised and skipped when it reaches the top (the lessor keeps the current time
// of each lease's schedule to compare against).
import type { LeaseId } from '../mvcc';

export interface TimedLease {
  readonly atMs: number;
  readonly id: LeaseId;
}

export class LeaseHeap {
  private items: TimedLease[] = [];

  get size(): number {
    return this.items.length;
  }

  clear(): void {
    this.items = [];
  }

  peek(): TimedLease | undefined {
    return this.items[0];
  }

  push(item: TimedLease): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent].atMs <= a[i].atMs) break;
      [a[parent], a[i]] = [a[i], a[parent]];
      i = parent;
    }
  }

  pop(): TimedLease | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l].atMs < a[m].atMs) m = l;
        if (r < a.length && a[r].atMs < a[m].atMs) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}
