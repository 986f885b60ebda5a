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
// Memory: about 45 bytes per key with versions at R (the key string is the index's own), twice that
// while a hash builds the next table beside the current one.
import { assert } from '../util/assert';
import { crc32cCombineOp, crc32cShiftOp } from '../util/crc32c';
import { hasher, type SpilledValues } from './hash';
import { firstRetained, indexAtOrBelow, KeyIndex, versionAt, Versions } from './key_index';
import { Bytes, EMPTY_BYTES, Revision, StoredKv } from './types';

/** Keys visited per step (a kept key costs a lookup and one CRC join): bounds a step's time when
 *  few versions are new. */
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

/** A key of the current step: where its run starts (a kept CRC or 0) and its new versions in the
 *  step's batch. */
interface PendingKey {
  key: Bytes;
  crc: number;
  runBytes: number;
  shiftOp: number;
  firstModRevision: number;
  firstVersion: number;
  versions: number;
  batchFrom: number;
  batchTo: number;
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
  }

  get done(): boolean {
    return this.cursor === undefined;
  }

  /** Hashes the next keys, about `maxVersions` new versions' worth. Returns true when done. */
  step(maxVersions: number): boolean {
    assert(maxVersions > 0, 'hash cache: maxVersions must be positive');
    if (this.cursor === undefined) return true;
    const batch: StoredKv[] = [];
    const pending: PendingKey[] = [];
    const keysMax = maxVersions * KEYS_PER_VERSION_BUDGET;
    let next: Bytes | undefined;
    for (const [key, v] of this.index.entriesFrom(this.cursor)) {
      if (batch.length >= maxVersions || pending.length >= keysMax) {
        next = key;
        break;
      }
      this.visit(key, v, batch, pending);
    }
    this.cursor = next;
    hasher.load(batch, this.spilled);
    for (const p of pending) this.finish(p, batch);
    return this.cursor === undefined;
  }

  /** The finished table (the hash is its `hash`). */
  result(): KeyHashes {
    assert(this.cursor === undefined, 'hash cache: result before the last step');
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

  /** Queues the key's run: kept from the base and extended, or from scratch. */
  private visit(key: Bytes, v: Versions, batch: StoredKv[], pending: PendingKey[]): void {
    const first = firstRetained(v, this.compactRevision);
    const last = indexAtOrBelow(v, this.revision);
    if (last < first) return; // nothing retained at or below the revision
    const firstKv = versionAt(v, first);
    const p: PendingKey = {
      key,
      crc: 0,
      runBytes: 0,
      shiftOp: 0,
      firstModRevision: firstKv.modRevision,
      firstVersion: firstKv.version,
      versions: last - first + 1,
      batchFrom: batch.length,
      batchTo: 0,
    };
    let from = first;
    const b = this.base;
    if (b !== undefined) {
      while (this.baseAt < b.size && b.keys[this.baseAt] < key) this.baseAt++;
      const j = this.baseAt;
      if (
        j < b.size &&
        b.keys[j] === key &&
        b.firstModRevision[j] === firstKv.modRevision &&
        b.firstVersion[j] === firstKv.version &&
        b.versions[j] <= p.versions
      ) {
        from = first + b.versions[j];
        // The kept run is exactly the key's versions up to the base's revision.
        assert(versionAt(v, from - 1).modRevision <= b.revision, 'hash cache: a kept run past its revision');
        assert(from > last || versionAt(v, from).modRevision > b.revision, 'hash cache: a kept run short of its revision');
        p.crc = b.crc[j];
        p.runBytes = b.runBytes[j];
        p.shiftOp = b.shiftOp[j];
      }
    }
    for (let i = from; i <= last; i++) batch.push(versionAt(v, i));
    p.batchTo = batch.length;
    pending.push(p);
  }

  /** Hashes the key's new versions (loaded), joins its run to the total and records it. */
  private finish(p: PendingKey, batch: readonly StoredKv[]): void {
    if (p.batchTo > p.batchFrom) {
      p.crc = hasher.hashRange(p.crc, batch, p.batchFrom, p.batchTo);
      p.runBytes += hasher.bytesOf(batch, p.batchFrom, p.batchTo);
      p.shiftOp = shiftOpOf(p.runBytes);
    }
    this.total = crc32cCombineOp(this.total, p.crc, p.shiftOp);
    const i = this.size++;
    assert(i < this.crc.length, 'hash cache: more keys than the index had');
    this.keys.push(p.key);
    this.crc[i] = p.crc;
    this.shiftOp[i] = p.shiftOp;
    this.runBytes[i] = p.runBytes;
    this.firstModRevision[i] = p.firstModRevision;
    this.firstVersion[i] = p.firstVersion;
    this.versions[i] = p.versions;
  }
}
