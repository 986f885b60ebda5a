// The hash cache: hashKV (hash.ts) kept per key, so that a later hash reuses what an earlier one
// computed instead of reading and CRCing every retained value again.
//
// Why per key: the hash's order is by key, then by revision within a key (the layout is pinned, so
// members of different builds agree), so a hash at revision R cannot be extended to R' > R by
// hashing only the versions in (R, R']: they sit in the middle of the byte stream, after their key's
// older versions. But the stream is the concatenation of one run per key, and a CRC can be extended
// by more bytes (crc32c(crc(a), b) = crc(a ++ b)) and two CRCs joined without their bytes
// (crc32cCombineOp, util/crc32c.ts). So the cache holds, for the keys of the hash at (R, C), each
// key's CRC over its retained versions and that run's length. A hash at (R', C'), R' >= R:
//   - a key whose retained versions at C' start with the same version as at C (same modRevision and
//     version: versions are immutable, so the same run) keeps its CRC, extended over its versions in
//     (R, R'] (the only bytes read and hashed);
//   - any other key (new, or compaction at C' dropped some of its versions) is hashed from scratch;
//   - the runs are joined in key order: one GF(2) multiplication per key.
// After an overwrite of every key the CRC work is the new versions only; after a compaction, the
// keys that lost versions. A hash at R' < R has no cache to start from: it is a full pass (as before)
// and leaves the cache alone.
//
// Memory: about 45 bytes per key (and 8 more while a hash builds) with versions at R (the key string is the index's own), twice that
// while a hash builds the next table beside the current one.
import { assert } from '../util/assert';
import { crc32cCombineOp, crc32cShiftOp } from '../util/crc32c';
import { hasher, type SpilledValues } from './hash';
import { firstRetained, indexAtOrBelow, KeyIndex, versionAt, Versions } from './key_index';
import { Bytes, EMPTY_BYTES, Revision, StoredKv } from './types';

/** Keys visited per step, per version of maxVersions (a kept key costs a lookup and one CRC
 *  join): bounds a step's time when few versions are new. */
const KEYS_PER_VERSION_BUDGET = 16;
/** Shift operators remembered by length (most keys' runs share a few lengths). */
const SHIFT_OPS_CACHED_MAX = 4096;

/** A finished hash with its per-key CRCs: immutable once built. Keys in byte order. */
export interface KeyHashes {
  readonly revision: Revision;
  readonly compactRevision: Revision;
  readonly hash: number;
  readonly size: number;
  readonly keys: readonly Bytes[];
  /** CRC32-C of the key's run (its retained versions up to `revision`, in order). */
  readonly crc: Uint32Array;
  /** crc32cShiftOp(the run's length in bytes). */
  readonly shiftOp: Uint32Array;
  readonly runBytes: Float64Array;
  /** The first version of the run (modRevision, version): the run is the same while it is. */
  readonly firstModRevision: Float64Array;
  readonly firstVersion: Float64Array;
  /** Versions in the run. */
  readonly versions: Uint32Array;
}

const shiftOps = new Map<number, number>();
function shiftOpOf(bytes: number): number {
  let op = shiftOps.get(bytes);
  if (op === undefined) {
    if (shiftOps.size >= SHIFT_OPS_CACHED_MAX) shiftOps.clear();
    op = crc32cShiftOp(bytes);
    shiftOps.set(bytes, op);
  }
  return op;
}

/**
 * One hash at (revision, compactRevision), built key by key in steps from `base` (a cached table at
 * a revision <= this one, or undefined: every key from scratch). The index may take writes between
 * steps (versions above `revision` are not looked at); the caller makes the job stale on a
 * compaction or a replaced state.
 */
export class CachedHashJob {
  private cursor: Bytes | undefined = EMPTY_BYTES;
  /** Position in base.keys: every base key before it is below the cursor. */
  private baseAt = 0;
  private total = 0;
  private size = 0;
  private readonly keys: Bytes[] = [];
  private readonly crc: Uint32Array;
  private readonly shiftOp: Uint32Array;
  private readonly runBytes: Float64Array;
  private readonly firstModRevision: Float64Array;
  private readonly firstVersion: Float64Array;
  private readonly versions: Uint32Array;
  /** Row i's new versions are batch[batchFrom[i], batchTo[i]) of the step that added it. */
  private readonly batchFrom: Uint32Array;
  private readonly batchTo: Uint32Array;
  /** A key with more new versions than one step takes (one key rewritten a million times without
   *  a compaction): its row, and its versions [next, last] still to hash, in the steps that follow,
   *  before any later key. Its row joins the total once the last of them is hashed. */
  private partial: { row: number; versions: Versions; next: number; last: number } | undefined;

  constructor(
    private readonly index: KeyIndex,
    readonly compactRevision: Revision,
    readonly revision: Revision,
    private readonly base: KeyHashes | undefined,
    private readonly spilled: SpilledValues,
  ) {
    assert(base === undefined || base.revision <= revision, 'hash cache: a base above the hash revision');
    // Keys with versions at `revision` all exist now (later keys start above it): the capacity.
    const capacity = index.size;
    this.crc = new Uint32Array(capacity);
    this.shiftOp = new Uint32Array(capacity);
    this.runBytes = new Float64Array(capacity);
    this.firstModRevision = new Float64Array(capacity);
    this.firstVersion = new Float64Array(capacity);
    this.versions = new Uint32Array(capacity);
    this.batchFrom = new Uint32Array(capacity);
    this.batchTo = new Uint32Array(capacity);
  }

  get done(): boolean {
    return this.cursor === undefined && this.partial === undefined;
  }

  /** Hashes the next keys, at most `maxVersions` new versions (a key with more is hashed over as
   *  many steps as it takes), and at most maxVersions * KEYS_PER_VERSION_BUDGET keys. Returns true
   *  when done. */
  step(maxVersions: number): boolean {
    assert(maxVersions > 0, 'hash cache: maxVersions must be positive');
    if (this.partial !== undefined) return this.stepPartial(maxVersions);
    if (this.cursor === undefined) return true;
    // The step's keys go straight into the table (rows stepStart..size-1), their new versions
    // into `batch`; once the batch's values are read, the rows are finished and joined in order.
    const stepStart = this.size;
    const batch: StoredKv[] = [];
    const keysMax = maxVersions * KEYS_PER_VERSION_BUDGET;
    let keysVisited = 0;
    this.cursor = this.index.visitFrom(this.cursor, (key, v) => {
      if (batch.length >= maxVersions || keysVisited >= keysMax) return false;
      keysVisited++;
      this.visit(key, v, batch, maxVersions);
      return true;
    });
    hasher.load(batch, this.spilled);
    const partialRow = this.partialRow();
    for (let i = stepStart; i < this.size; i++) {
      this.extend(i, batch);
      if (i !== partialRow) this.join(i);
    }
    return this.done;
  }

  /** The row of the key left partial, or -1. */
  private partialRow(): number {
    return this.partial === undefined ? -1 : this.partial.row;
  }

  /** The next piece of the key left partial: at most `maxVersions` of its versions. */
  private stepPartial(maxVersions: number): boolean {
    const p = this.partial!;
    const to = Math.min(p.last + 1, p.next + maxVersions);
    const batch: StoredKv[] = [];
    for (let k = p.next; k < to; k++) batch.push(versionAt(p.versions, k));
    hasher.load(batch, this.spilled);
    this.batchFrom[p.row] = 0;
    this.batchTo[p.row] = batch.length;
    this.extend(p.row, batch);
    p.next = to;
    if (to > p.last) {
      this.partial = undefined;
      this.join(p.row);
    }
    return this.done;
  }

  /** The finished table (the hash is its `hash`). */
  result(): KeyHashes {
    assert(this.done, 'hash cache: result before the last step');
    return {
      revision: this.revision,
      compactRevision: this.compactRevision,
      hash: this.total,
      size: this.size,
      keys: this.keys,
      crc: this.crc,
      shiftOp: this.shiftOp,
      runBytes: this.runBytes,
      firstModRevision: this.firstModRevision,
      firstVersion: this.firstVersion,
      versions: this.versions,
    };
  }

  /** Adds the key's row: its run kept from the base (to be extended by its versions above the
   *  base's revision, queued in `batch`), or from scratch (all its versions queued). Versions past
   *  `maxVersions` in the batch are left to the next steps (`partial`). */
  private visit(key: Bytes, v: Versions, batch: StoredKv[], maxVersions: number): void {
    const first = firstRetained(v, this.compactRevision);
    const last = indexAtOrBelow(v, this.revision);
    if (last < first) return; // nothing retained at or below the revision
    const firstKv = versionAt(v, first);
    const versions = last - first + 1;
    let from = first;
    let crc = 0;
    let runBytes = 0;
    let shiftOp = 0;
    const b = this.base;
    if (b !== undefined) {
      while (this.baseAt < b.size && b.keys[this.baseAt] < key) this.baseAt++;
      const j = this.baseAt;
      if (
        j < b.size &&
        b.keys[j] === key &&
        b.firstModRevision[j] === firstKv.modRevision &&
        b.firstVersion[j] === firstKv.version &&
        b.versions[j] <= versions
      ) {
        from = first + b.versions[j];
        // The kept run is exactly the key's versions up to the base's revision.
        assert(versionAt(v, from - 1).modRevision <= b.revision, 'hash cache: a kept run past its revision');
        assert(from > last || versionAt(v, from).modRevision > b.revision, 'hash cache: a kept run short of its revision');
        crc = b.crc[j];
        runBytes = b.runBytes[j];
        shiftOp = b.shiftOp[j];
      }
    }
    const i = this.size++;
    assert(i < this.crc.length, 'hash cache: more keys than the index had');
    this.keys.push(key);
    this.crc[i] = crc;
    this.shiftOp[i] = shiftOp;
    this.runBytes[i] = runBytes;
    this.firstModRevision[i] = firstKv.modRevision;
    this.firstVersion[i] = firstKv.version;
    this.versions[i] = versions;
    this.batchFrom[i] = batch.length;
    const take = Math.min(last, from + Math.max(0, maxVersions - batch.length) - 1);
    for (let k = from; k <= take; k++) batch.push(versionAt(v, k));
    this.batchTo[i] = batch.length;
    if (take < last) {
      // The batch is full: the visit stops at the next key, and the next steps hash the rest.
      assert(this.partial === undefined, 'hash cache: two keys left partial');
      this.partial = { row: i, versions: v, next: take + 1, last };
    }
  }

  /** Row i: hashes its new versions of this step (loaded) into its run. */
  private extend(i: number, batch: readonly StoredKv[]): void {
    const from = this.batchFrom[i];
    const to = this.batchTo[i];
    if (to > from) {
      this.crc[i] = hasher.hashRange(this.crc[i], batch, from, to);
      this.runBytes[i] += hasher.bytesOf(batch, from, to);
    }
  }

  /** Row i, whole: its run joins the total. A run that grew (its last piece's versions are
   *  batch[batchFrom, batchTo)) gets the shift operator of its new length, once. */
  private join(i: number): void {
    if (this.batchTo[i] > this.batchFrom[i]) this.shiftOp[i] = shiftOpOf(this.runBytes[i]);
    this.total = crc32cCombineOp(this.total, this.crc[i], this.shiftOp[i]);
  }
}
