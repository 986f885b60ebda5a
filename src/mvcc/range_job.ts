// A range read in slices, for a caller that yields to the event loop between them
// (api/range_sliced.ts): a range over a million keys, or over values spilled to disk, is read a
// few milliseconds at a time instead of in one pass that stops heartbeats and every other client.
//
// The answer is the one evaluateRange (range.ts) gives at the read revision fixed when the job
// starts. Writes may go on between slices: they add versions above that revision, which the walk
// skips. Two things can take the view away, and make the job 'stale' (the caller starts over):
//   - a compaction beyond the read revision (its physical half may free versions the walk has not
//     reached; a compaction at or below it frees nothing visible at it);
//   - a snapshot install replacing the state, or the spill file's rewrite emptying the file that
//     the collected versions' SpillRefs point into (spill.ts): their values must be read anew.
// Collected versions are immutable objects (store.ts never mutates one), so a value held in the
// heap when it was collected stays readable whatever happens to the index.
import { assert } from '../util/assert';
import { indexAtOrBelow, isTombstone, makeKv, versionAt, type Versions } from './key_index';
import { comparatorFor, effectiveOrder, hasFilters, passesFilters, type KeyBounds } from './range';
import type { KeyIndex } from './key_index';
import { EMPTY_BYTES, SortOrder, SortTarget, type Bytes, type KeyValue, type RangeOptions, type Revision, type StoredKv } from './types';

/** What a job needs of the store (MvccStore implements it). */
export interface RangeJobSource {
  readonly compactRevision: Revision;
  /** @internal bumped when the whole state is replaced (snapshot install). */
  readonly replacedEpoch: number;
  /** @internal bumped when spilled values move (a spill file emptied, the state replaced). */
  readonly valuesEpoch: number;
  /** @internal the values of `kvs`, in place (spilled ones read from the file). */
  hydrateVersions(kvs: StoredKv[]): KeyValue[];
  /** @internal the bytes of the spilled values among `kvs` (fn's buffer is valid during the call). */
  forEachSpilledValue(kvs: readonly StoredKv[], fn: (i: number, buf: Buffer, off: number, len: number) => void): void;
}

export type RangeStepState = 'more' | 'done' | 'stale';

export class RangeJob {
  /** Key the walk resumes from; undefined once the walk is done. */
  private cursor: Bytes | undefined;
  private readonly collected: StoredKv[] = [];
  private countValue = 0;
  private matched = 0;
  private finished = false;
  private readonly limit: number;
  private readonly order: SortOrder;
  private readonly filtered: boolean;
  /** Versions kept during the walk: limit+1 in key order, every match when sorting. */
  private readonly keep: number;
  private readonly startReplaced: number;
  private readonly startValues: number;
  /** kvs[0, hydrated) carry their values. */
  private hydratedUpTo = 0;

  constructor(
    private readonly source: RangeJobSource,
    private readonly index: KeyIndex,
    private readonly bounds: KeyBounds,
    /** The revision the range reads at. */
    readonly revision: Revision,
    /** The store's revision when the job started: the response header's. */
    readonly headRevision: Revision,
    private readonly opts: RangeOptions,
  ) {
    this.limit = opts.limit && opts.limit > 0 ? opts.limit : Infinity;
    this.order = effectiveOrder(opts);
    this.filtered = hasFilters(opts);
    this.keep = this.order === SortOrder.NONE ? this.limit : Infinity;
    this.startReplaced = source.replacedEpoch;
    this.startValues = source.valuesEpoch;
    this.cursor = bounds.empty ? undefined : bounds.lo;
  }

  /** The view is gone (a compaction beyond the revision, the state replaced): start over. */
  get stale(): boolean {
    return this.source.replacedEpoch !== this.startReplaced || this.source.compactRevision > this.revision;
  }

  /** Walks up to `maxKeys` keys of the range. 'done': the walk is over (then finish()). */
  scan(maxKeys: number): RangeStepState {
    assert(maxKeys > 0, 'range job: maxKeys must be positive');
    if (this.stale) return 'stale';
    if (this.cursor === undefined) return 'done';
    const visit = (_key: Bytes, v: Versions): void => {
      const i = indexAtOrBelow(v, this.revision);
      if (i < 0) return;
      const kv = versionAt(v, i);
      if (isTombstone(kv)) return;
      this.countValue++;
      if (this.opts.countOnly) return;
      if (this.filtered && !passesFilters(kv, this.opts)) return;
      this.matched++;
      if (this.collected.length < this.keep) this.collected.push(kv);
    };
    if (this.bounds.single) {
      const v = this.index.get(this.bounds.lo);
      if (v !== undefined) visit(this.bounds.lo, v);
      this.cursor = undefined;
    } else {
      this.cursor = this.index.forRangeSlice(this.cursor, this.bounds.hi, maxKeys, visit);
    }
    return this.cursor === undefined ? 'done' : 'more';
  }

  /** A VALUE sort compares values: every match must be hydrated (hydrate()) before finish(). */
  get valuesNeededForSort(): boolean {
    return this.order !== SortOrder.NONE && (this.opts.sortTarget ?? SortTarget.KEY) === SortTarget.VALUE;
  }

  /** After the walk: sorts (one synchronous sort of the matches) and cuts at the limit. */
  finish(): void {
    assert(this.cursor === undefined && !this.finished, 'range job: finish before the walk is done, or twice');
    this.finished = true;
    const kvs = this.collected;
    if (this.order !== SortOrder.NONE) {
      assert(!this.valuesNeededForSort || this.hydratedUpTo === kvs.length, 'range job: a VALUE sort before every value was read');
      const cmp = comparatorFor(this.opts.sortTarget ?? SortTarget.KEY);
      // Array.prototype.sort is stable: ties keep key-ascending order in both directions.
      kvs.sort(this.order === SortOrder.DESCEND ? (a, b) => cmp(b, a) : cmp);
    }
    if (kvs.length > this.limit) kvs.length = this.limit;
  }

  /** The versions collected (after finish(): those to return, in order). Values of the first
   *  `hydratedCount` are in the heap; keys-only and count-only answers need none. */
  get kvs(): readonly StoredKv[] {
    return this.collected;
  }

  get hydratedCount(): number {
    return this.hydratedUpTo;
  }

  get count(): number {
    return this.countValue;
  }

  get more(): boolean {
    return this.matched > this.limit;
  }

  get keysOnly(): boolean {
    return this.opts.keysOnly === true;
  }

  get countOnly(): boolean {
    return this.opts.countOnly === true;
  }

  private get valuesMoved(): boolean {
    return this.source.replacedEpoch !== this.startReplaced || this.source.valuesEpoch !== this.startValues;
  }

  /** Before a VALUE sort: reads the values of the next `n` matches into the job (in place).
   *  Returns the end of the hydrated prefix, or 'stale' when the spilled values moved since the
   *  walk (start over). */
  hydrateForSort(n: number): number | 'stale' {
    assert(n > 0 && !this.finished, 'range job: hydrateForSort needs a positive count, before finish');
    if (this.valuesMoved) return 'stale';
    const from = this.hydratedUpTo;
    const to = Math.min(this.collected.length, from + n);
    if (to === from) return to;
    const values = this.source.hydrateVersions(this.collected.slice(from, to));
    for (let i = 0; i < values.length; i++) this.collected[from + i] = values[i];
    this.hydratedUpTo = to;
    return to;
  }

  /** readValues for a caller that copies the bytes out at once (an encoder): the versions
   *  [from, from + n) as stored (a value in the heap is a string, a spilled one a SpillRef), and
   *  spilled(fn) gives the spilled ones' bytes, fn(i, buf, off, len) for slice[i], without a
   *  string each. With keys_only the values are not wanted: spilled is undefined. */
  versionsWithValues(from: number, n: number): { kvs: readonly StoredKv[]; spilled: ((fn: (i: number, buf: Buffer, off: number, len: number) => void) => void) | undefined } | 'stale' {
    // Before finish() (measuring what a sort by value will hold): the walk's versions, in key order.
    assert(from >= 0 && n > 0, 'range job: versionsWithValues of an empty slice');
    const kvs = this.collected.slice(from, Math.min(this.collected.length, from + n));
    if (this.keysOnly) return { kvs, spilled: undefined };
    if (this.valuesMoved) return 'stale';
    return { kvs, spilled: (fn) => this.source.forEachSpilledValue(kvs, fn) };
  }

  /** The answer's versions [from, from + n) as KeyValues with their values (none with
   *  keys_only), without keeping them in the job: a caller encoding the answer slice by slice
   *  holds each value once. 'stale': the spilled values moved since the walk (start over). */
  readValues(from: number, n: number): KeyValue[] | 'stale' {
    assert(this.finished && from >= 0 && n > 0, 'range job: readValues before finish, or an empty slice');
    const slice = this.collected.slice(from, Math.min(this.collected.length, from + n));
    if (this.keysOnly) return slice.map((kv) => makeKv(kv.key, kv.createRevision, kv.modRevision, kv.version, EMPTY_BYTES, kv.lease));
    if (this.valuesMoved) return 'stale';
    return this.source.hydrateVersions(slice);
  }
}
