// Key-range permission checking (etcd's auth/range_perm_cache.go): a user's grants of one type are
// merged into sorted, disjoint intervals, so that "is [key, range_end) covered by the union of the
// user's grants" is one binary search. Pure; no I/O.
//
// Interval conventions (etcd's): range_end empty = the single key, i.e. [key, key+"\0");
// range_end = "\0" = every key >= key (open ended, `end === null` here).
import { assert } from '../util/assert';

export const PermType = { READ: 0, WRITE: 1, READWRITE: 2 } as const;
export type PermType = (typeof PermType)[keyof typeof PermType];

export interface Permission {
  permType: PermType;
  key: Buffer;
  range_end: Buffer;
}

/** [start, end); `end === null` means unbounded. */
export interface Interval {
  start: Buffer;
  end: Buffer | null;
}

const ZERO = Buffer.from([0]);

function isOpenEnd(rangeEnd: Buffer): boolean {
  return rangeEnd.length === 1 && rangeEnd[0] === 0;
}

/** The interval a (key, range_end) pair names. */
export function toInterval(key: Buffer, rangeEnd: Buffer | undefined | null): Interval {
  if (!rangeEnd || rangeEnd.length === 0) return { start: key, end: Buffer.concat([key, ZERO]) };
  if (isOpenEnd(rangeEnd)) return { start: key, end: null };
  return { start: key, end: rangeEnd };
}

function endCompare(a: Buffer | null, b: Buffer | null): number {
  if (a === null) return b === null ? 0 : 1;
  if (b === null) return -1;
  return Buffer.compare(a, b);
}

/** Sorts and merges overlapping or touching intervals. Empty intervals are dropped. */
export function mergeIntervals(input: readonly Interval[]): Interval[] {
  const ivs = input.filter((iv) => iv.end === null || Buffer.compare(iv.start, iv.end) < 0);
  ivs.sort((a, b) => Buffer.compare(a.start, b.start));
  const out: Interval[] = [];
  for (const iv of ivs) {
    const last = out[out.length - 1];
    if (last && (last.end === null || Buffer.compare(iv.start, last.end) <= 0)) {
      if (endCompare(iv.end, last.end) > 0) last.end = iv.end;
    } else {
      out.push({ start: iv.start, end: iv.end });
    }
  }
  return out;
}

/** True if the union of `merged` (from mergeIntervals) covers all of [key, range_end). */
export function covers(merged: readonly Interval[], key: Buffer, rangeEnd: Buffer | undefined | null): boolean {
  const want = toInterval(key, rangeEnd);
  // A backwards range selects nothing; we still require the start key (conservative).
  if (want.end !== null && Buffer.compare(want.start, want.end) >= 0) want.end = Buffer.concat([key, ZERO]);
  // Last interval starting at or before the key.
  let lo = 0;
  let hi = merged.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (Buffer.compare(merged[mid]!.start, want.start) <= 0) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (found < 0) return false;
  // Merged intervals are disjoint and non-touching, so one interval must hold the whole request.
  return endCompare(merged[found]!.end, want.end) >= 0;
}

/** A user's merged read and write grants. */
export interface UnifiedPerms {
  read: Interval[];
  write: Interval[];
}

export function unify(perms: Iterable<Permission>): UnifiedPerms {
  const read: Interval[] = [];
  const write: Interval[] = [];
  for (const p of perms) {
    const iv = toInterval(p.key, p.range_end);
    assert(p.permType >= 0 && p.permType <= 2, `auth: bad permission type ${p.permType}`);
    if (p.permType !== PermType.WRITE) read.push(iv);
    if (p.permType !== PermType.READ) write.push({ ...iv });
  }
  return { read: mergeIntervals(read), write: mergeIntervals(write) };
}
