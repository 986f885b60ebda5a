// Range reads over the key index at one revision: etcd's key/range_end conventions, count, limit,
// min/max revision filters, sorting, keys_only and count_only (etcd server/etcdserver/txn/range.go).
//
// Cost: O(log n + k) where k is the number of indexed keys in [key, range_end) — every key in the
// range is visited because `count` ignores limit and filters, as in etcd.

import { assert } from '../util/assert';
import { KeyIndex, indexAtOrBelow, isTombstone, makeKv, versionAt, Versions } from './key_index';
import {
  Bytes,
  BytesLike,
  bytesOf,
  compareBytes,
  EMPTY_BYTES,
  KeyValue,
  RangeOptions,
  Revision,
  SortOrder,
  SortTarget,
  StoredKv,
} from './types';

/** A key range resolved from etcd's (key, range_end) convention. */
export interface KeyBounds {
  /** Exactly one key (range_end empty). */
  readonly single: boolean;
  readonly lo: Bytes;
  /** Exclusive upper bound; undefined = no upper bound. */
  readonly hi: Bytes | undefined;
  /** The range is empty by construction (range_end <= key). */
  readonly empty: boolean;
}

const ZERO_BYTE: Bytes = '\0';

export function resolveBounds(keyIn: BytesLike, rangeEndIn: BytesLike | undefined): KeyBounds {
  const key = bytesOf(keyIn);
  if (rangeEndIn === undefined || rangeEndIn.length === 0) return { single: true, lo: key, hi: undefined, empty: false };
  const rangeEnd = bytesOf(rangeEndIn);
  if (rangeEnd === ZERO_BYTE) {
    // "\0" as range_end = every key >= key; key = range_end = "\0" = every key (the empty key too).
    const lo = key === ZERO_BYTE ? EMPTY_BYTES : key;
    return { single: false, lo, hi: undefined, empty: false };
  }
  if (rangeEnd <= key) return { single: false, lo: key, hi: rangeEnd, empty: true };
  return { single: false, lo: key, hi: rangeEnd, empty: false };
}

/** Calls fn for every key in bounds whose value at `rev` is live. */
export function forEachLive(index: KeyIndex, bounds: KeyBounds, rev: Revision, fn: (kv: StoredKv) => void): void {
  if (bounds.empty) return;
  const visit = (_key: Bytes, v: Versions): void => {
    const i = indexAtOrBelow(v, rev);
    if (i < 0) return;
    const kv = versionAt(v, i);
    if (!isTombstone(kv)) fn(kv);
  };
  if (bounds.single) {
    const v = index.get(bounds.lo);
    if (v !== undefined) visit(bounds.lo, v);
    return;
  }
  index.forRange(bounds.lo, bounds.hi, visit);
}

export function passesFilters(kv: StoredKv, o: RangeOptions): boolean {
  if (o.minModRevision && kv.modRevision < o.minModRevision) return false;
  if (o.maxModRevision && kv.modRevision > o.maxModRevision) return false;
  if (o.minCreateRevision && kv.createRevision < o.minCreateRevision) return false;
  if (o.maxCreateRevision && kv.createRevision > o.maxCreateRevision) return false;
  return true;
}

export function hasFilters(o: RangeOptions): boolean {
  return !!(o.minModRevision || o.maxModRevision || o.minCreateRevision || o.maxCreateRevision);
}

export function comparatorFor(target: SortTarget): (a: StoredKv, b: StoredKv) => number {
  switch (target) {
    case SortTarget.KEY:
      return (a, b) => compareBytes(a.key, b.key);
    case SortTarget.VERSION:
      return (a, b) => a.version - b.version;
    case SortTarget.CREATE:
      return (a, b) => a.createRevision - b.createRevision;
    case SortTarget.MOD:
      return (a, b) => a.modRevision - b.modRevision;
    case SortTarget.VALUE:
      // evaluateRange hydrates every match before a VALUE sort.
      return (a, b) => compareBytes(a.value as Bytes, b.value as Bytes);
    default:
      // Validating sort options is the API layer's job (Errors.InvalidSortOption).
      assert(false, `range: unknown sort target ${String(target)}`);
  }
}

/** The effective sort order, as etcd computes it: NONE with a non-KEY target sorts ascending;
 *  ASCEND by KEY is the index's natural order and needs no sort. */
export function effectiveOrder(o: RangeOptions): SortOrder {
  const order = o.sortOrder ?? SortOrder.NONE;
  const target = o.sortTarget ?? SortTarget.KEY;
  if (order === SortOrder.NONE && target !== SortTarget.KEY) return SortOrder.ASCEND;
  if (order === SortOrder.ASCEND && target === SortTarget.KEY) return SortOrder.NONE;
  return order;
}

export function stripValue(kv: StoredKv): KeyValue {
  return makeKv(kv.key, kv.createRevision, kv.modRevision, kv.version, EMPTY_BYTES, kv.lease);
}

/**
 * Evaluates a range read at `rev` (already validated against the compaction point and the current
 * revision). Returns kvs (in the requested order, cut at limit), count and more. `hydrateAll` turns
 * stored versions, in place, into ones carrying their value bytes (only the returned versions are
 * read, and with a VALUE sort every match, before sorting).
 */
export function evaluateRange(
  index: KeyIndex,
  bounds: KeyBounds,
  rev: Revision,
  o: RangeOptions,
  hydrateAll: (kvs: StoredKv[]) => KeyValue[],
): { kvs: KeyValue[]; count: number; more: boolean } {
  const limit = o.limit && o.limit > 0 ? o.limit : Infinity;
  const order = effectiveOrder(o);
  const filtered = hasFilters(o);
  const kvs: StoredKv[] = [];
  let count = 0;
  let matched = 0;
  // In key order without a sort, kvs beyond limit+1 are never needed; with a sort, every match is
  // collected first and the limit applies after sorting (as etcd does).
  const keep = order === SortOrder.NONE ? limit : Infinity;
  forEachLive(index, bounds, rev, (kv) => {
    count++;
    if (o.countOnly) return;
    if (filtered && !passesFilters(kv, o)) return;
    matched++;
    if (kvs.length < keep) kvs.push(kv);
  });
  if (o.countOnly) return { kvs: [], count, more: false };
  if (order !== SortOrder.NONE) {
    const target = o.sortTarget ?? SortTarget.KEY;
    if (target === SortTarget.VALUE) hydrateAll(kvs);
    const cmp = comparatorFor(target);
    // Array.prototype.sort is stable: ties keep key-ascending order in both directions.
    kvs.sort(order === SortOrder.DESCEND ? (a, b) => cmp(b, a) : cmp);
  }
  const more = matched > limit;
  if (kvs.length > limit) kvs.length = limit;
  if (o.keysOnly) {
    const out: KeyValue[] = new Array<KeyValue>(kvs.length);
    for (let i = 0; i < kvs.length; i++) out[i] = stripValue(kvs[i]);
    return { kvs: out, count, more };
  }
  return { kvs: hydrateAll(kvs), count, more };
}
