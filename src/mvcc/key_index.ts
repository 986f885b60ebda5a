// The key index: every key the store retains, in raw byte order, each with its versions. Keys and
// values are latin1 strings (types.ts, Bytes), so the tree compares them with `<`.
//
// A key's versions are its KeyValue objects (tombstones included) ordered by modRevision; the same
// objects are referenced by the revision history (history.ts), so a version costs one object however
// many structures point at it. To keep 1M keys cheap, a key with a single retained version stores
// that KeyValue directly instead of a one-element array (an array costs ~56 bytes more per key).
//
// A tombstone is a KeyValue with version 0 (and createRevision 0, empty value, no lease): exactly
// the `kv` etcd puts in a DELETE event, so the history can hand it out as is.
//
// Invariants (asserted on append): within a key, modRevision never decreases (two puts of one key in
// one txn share a modRevision; the later one is newer); a live version's `version` is the previous
// version's + 1, or 1 after a tombstone or at creation.

import BTree from 'sorted-btree';
import { assert } from '../util/assert';
import { Bytes, compareBytes, EMPTY_BYTES, KeyValue, LeaseId, NO_LEASE, Revision, SpillRef, StoredKv } from './types';

/** A key's retained versions: one StoredKv, or several ordered by modRevision. */
export type Versions = StoredKv | StoredKv[];

/** Builds a KeyValue. Every KeyValue in the store comes from here, so they all share one hidden
 *  class (monomorphic property access on the hot paths). */
export function makeKv(key: Bytes, createRevision: Revision, modRevision: Revision, version: number, value: Bytes, lease: LeaseId): KeyValue;
export function makeKv(key: Bytes, createRevision: Revision, modRevision: Revision, version: number, value: Bytes | SpillRef, lease: LeaseId): StoredKv;
export function makeKv(
  key: Bytes,
  createRevision: Revision,
  modRevision: Revision,
  version: number,
  value: Bytes | SpillRef,
  lease: LeaseId,
): StoredKv {
  return { key, createRevision, modRevision, version, value, lease };
}

export function makeTombstone(key: Bytes, modRevision: Revision): KeyValue {
  return makeKv(key, 0, modRevision, 0, EMPTY_BYTES, NO_LEASE);
}

export function isTombstone(kv: StoredKv): boolean {
  return kv.version === 0;
}

export function versionCount(v: Versions): number {
  return Array.isArray(v) ? v.length : 1;
}

export function versionAt(v: Versions, i: number): StoredKv {
  return Array.isArray(v) ? v[i] : v;
}

export function newestVersion(v: Versions): StoredKv {
  return Array.isArray(v) ? v[v.length - 1] : v;
}

/** Index of the newest version with modRevision <= rev, or -1. Checks the newest first: most reads
 *  are at the current revision. */
export function indexAtOrBelow(v: Versions, rev: Revision): number {
  if (!Array.isArray(v)) return v.modRevision <= rev ? 0 : -1;
  let hi = v.length - 1;
  if (v[hi].modRevision <= rev) return hi;
  let lo = 0; // answer is in [lo - 1, hi - 1]
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (v[mid].modRevision <= rev) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** The key's value at `rev` (undefined if it did not exist or was deleted at `rev`). */
export function liveAt(v: Versions, rev: Revision): StoredKv | undefined {
  const i = indexAtOrBelow(v, rev);
  if (i < 0) return undefined;
  const kv = versionAt(v, i);
  return isTombstone(kv) ? undefined : kv;
}

/** First index of the versions that survive compaction at `compactRev`: the newest version with
 *  modRevision <= compactRev if it is live, and everything newer. Returns versionCount(v) when
 *  nothing survives. Used both by physical cleanup and by logical views (hash, snapshot), so the
 *  two can never disagree. */
export function firstRetained(v: Versions, compactRev: Revision): number {
  const i = indexAtOrBelow(v, compactRev);
  if (i < 0) return 0;
  return isTombstone(versionAt(v, i)) ? i + 1 : i;
}

export class KeyIndex {
  private readonly tree = new BTree<Bytes, Versions>(undefined, compareBytes);

  /** Number of keys in the index (live or not). */
  get size(): number {
    return this.tree.size;
  }

  get(key: Bytes): Versions | undefined {
    return this.tree.get(key);
  }

  /** Appends a version to its key (creating the key). Returns the key's previous newest version.
   *  `kv.key` should be the index's own key string for an existing key (see MvccStore.put). */
  append(kv: StoredKv, existing: Versions | undefined): void {
    if (existing === undefined) {
      this.tree.set(kv.key, kv);
      return;
    }
    const last = newestVersion(existing);
    assert(kv.modRevision >= last.modRevision, 'key index: modRevision decreased');
    assert(
      isTombstone(kv) || kv.version === (isTombstone(last) ? 1 : last.version + 1),
      'key index: version does not follow the previous version',
    );
    if (Array.isArray(existing)) existing.push(kv);
    else this.tree.set(kv.key, [existing, kv]);
  }

  /** Puts `next` where `prev` (the same version: key and revisions) is. Returns false if `prev`
   *  is no longer in the index (compacted away). */
  replace(prev: StoredKv, next: StoredKv): boolean {
    const v = this.tree.get(prev.key);
    if (v === undefined) return false;
    if (!Array.isArray(v)) {
      if (v !== prev) return false;
      this.tree.set(prev.key, next);
      return true;
    }
    for (let i = indexAtOrBelow(v, prev.modRevision); i >= 0 && v[i].modRevision === prev.modRevision; i--) {
      if (v[i] === prev) {
        v[i] = next;
        return true;
      }
    }
    return false;
  }

  /** Calls fn for every indexed key in [lo, hi) (hi undefined = no upper bound), in byte order. */
  forRange(lo: Bytes, hi: Bytes | undefined, fn: (key: Bytes, v: Versions) => void): void {
    if (hi === undefined) {
      const max = this.tree.maxKey();
      if (max === undefined) return;
      this.tree.forRange(lo, max, true, fn);
    } else {
      this.tree.forRange(lo, hi, false, fn);
    }
  }

  /** forRange for at most `maxKeys` keys of [lo, hi): returns the key to continue from
   *  (undefined: the range is done). A sliced range (range_job.ts) resumes from it in a later turn. */
  forRangeSlice(lo: Bytes, hi: Bytes | undefined, maxKeys: number, fn: (key: Bytes, v: Versions) => void): Bytes | undefined {
    assert(maxKeys > 0, 'forRangeSlice: maxKeys must be positive');
    let next: Bytes | undefined;
    const visit = (key: Bytes, v: Versions, counter: number): { break: true } | undefined => {
      if (counter >= maxKeys) {
        next = key;
        return { break: true };
      }
      fn(key, v);
      return undefined;
    };
    if (hi === undefined) {
      const max = this.tree.maxKey();
      if (max === undefined) return undefined;
      this.tree.forRange(lo, max, true, visit);
    } else {
      this.tree.forRange(lo, hi, false, visit);
    }
    return next;
  }

  /** Calls fn for the keys at and after `start` in byte order until it returns false; returns
   *  the key it returned false for (to continue with), or undefined when every key was visited.
   *  No [key, versions] pair per key (entriesFrom's iterator makes one). */
  visitFrom(start: Bytes, fn: (key: Bytes, v: Versions) => boolean): Bytes | undefined {
    const max = this.tree.maxKey();
    if (max === undefined) return undefined;
    let next: Bytes | undefined;
    this.tree.forRange(start, max, true, (key, v) => {
      if (fn(key, v)) return undefined;
      next = key;
      return { break: true };
    });
    return next;
  }

  /** Iterates [key, versions] pairs from `from` (inclusive) in byte order. The index must not
   *  change while the iterator is in use. */
  entriesFrom(from: Bytes): IterableIterator<[Bytes, Versions]> {
    return this.tree.entries(from);
  }

  /** Calls fn for every key in byte order. */
  forEach(fn: (key: Bytes, v: Versions) => void): void {
    this.tree.forRange(EMPTY_BYTES, this.tree.maxKey() ?? EMPTY_BYTES, true, fn);
  }

  /**
   * Physically drops the versions compaction at `compactRev` made unreachable, for at most
   * `maxKeys` keys starting at `fromKey`. Returns the key to continue from (undefined = done) and
   * the key+value bytes freed, not counting spilled values: `released` is called with the SpillRef
   * of each of those.
   */
  compactSlice(
    compactRev: Revision,
    fromKey: Bytes,
    maxKeys: number,
    released?: (ref: SpillRef) => void,
  ): { nextKey: Bytes | undefined; freedBytes: number } {
    assert(maxKeys > 0, 'compactSlice: maxKeys must be positive');
    const max = this.tree.maxKey();
    if (max === undefined) return { nextKey: undefined, freedBytes: 0 };
    let freedBytes = 0;
    let nextKey: Bytes | undefined;
    this.tree.editRange(fromKey, max, true, (key, v, counter) => {
      if (counter >= maxKeys) {
        nextKey = key;
        return { break: true };
      }
      const first = firstRetained(v, compactRev);
      if (first === 0) return undefined;
      for (let i = 0; i < first; i++) {
        const kv = versionAt(v, i);
        if (typeof kv.value === 'string') freedBytes += kv.key.length + kv.value.length;
        else {
          freedBytes += kv.key.length;
          released?.(kv.value);
        }
      }
      const n = versionCount(v);
      if (first === n) return { delete: true };
      if (first === n - 1) return { value: versionAt(v, n - 1) };
      return { value: (v as StoredKv[]).slice(first) };
    });
    return { nextKey, freedBytes };
  }
}
