// hashKV: a CRC32-C over the retained MVCC state up to a revision, for comparing replicas
// (etcd's Maintenance.HashKV and its corruption check). Two replicas with the same history and the
// same compaction point give the same hash, whatever their physical compaction progress: the hash
// covers the *logical* retained set (firstRetained), not what the index happens to still hold.
//
// Order: keys in byte order; for each key its retained versions in revision order. Each version
// contributes: key length + key, modRevision, createRevision, version, tombstone flag, lease (int64),
// value length + value.

import { assert } from '../util/assert';
import { crc32c } from '../util/crc32c';
import { KeyIndex, firstRetained, isTombstone, versionAt, versionCount } from './key_index';
import { Bytes, EMPTY_BYTES, Revision, StoredKv } from './types';

export { crc32c };

/** How hashing gets the bytes of spilled values: fn(i, buf, off, len) for each kvs[i] whose value
 *  is not in the heap, in any order, the bytes valid only during the call
 *  (MvccStore.forEachSpilledValue). */
export type SpilledValues = (kvs: readonly StoredKv[], fn: (i: number, buf: Buffer, off: number, len: number) => void) => void;

/** Fixed-size fields of one version after its key: modRevision, createRevision, version (int64
 *  each), the tombstone flag, lease (int64), value length (u32). */
const FIELDS_BYTES = 8 * 3 + 1 + 8 + 4;
const TWO_32 = 2 ** 32;

/**
 * Hashes versions with their values, in order, into a CRC. Reused across calls (the hash runs
 * synchronously): the spilled values of a batch are copied into `arena` (one memcpy each, in
 * whatever order the spill reads them) and hashed from there in version order, so a value costs
 * no string, no KeyValue and no garbage; a version's key and fixed fields go to the CRC as one run.
 */
export class VersionHasher {
  private header = Buffer.alloc(4 + 256 + FIELDS_BYTES);
  private arena = Buffer.alloc(1 << 20);
  private arenaUsed = 0;
  private valueOff: number[] = [];
  private valueLen: number[] = [];

  hashAll(crc: number, kvs: readonly StoredKv[], spilled: SpilledValues): number {
    this.load(kvs, spilled);
    return this.hashRange(crc, kvs, 0, kvs.length);
  }

  /** Reads the spilled values of `kvs` into the arena: hashRange and bytesOf may then be called
   *  for any part of `kvs` (the same array), until the next load. */
  load(kvs: readonly StoredKv[], spilled: SpilledValues): void {
    this.arenaUsed = 0;
    this.valueOff.length = kvs.length;
    this.valueLen.length = kvs.length;
    spilled(kvs, this.copyIn);
  }

  /** Continues `crc` over the versions kvs[from, to) (loaded). */
  hashRange(crc: number, kvs: readonly StoredKv[], from: number, to: number): number {
    for (let i = from; i < to; i++) {
      const kv = kvs[i];
      const value = kv.value;
      const valueLength = typeof value === 'string' ? value.length : this.valueLen[i];
      crc = this.hashHeader(crc, kv, valueLength);
      if (typeof value === 'string') crc = this.hashString(crc, value);
      else crc = crc32c(crc, this.arena, this.valueOff[i], this.valueOff[i] + valueLength);
    }
    return crc;
  }

  /** How many bytes the versions kvs[from, to) (loaded) feed to the CRC. */
  bytesOf(kvs: readonly StoredKv[], from: number, to: number): number {
    let n = 0;
    for (let i = from; i < to; i++) {
      const kv = kvs[i];
      const value = kv.value;
      n += 4 + kv.key.length + FIELDS_BYTES + (typeof value === 'string' ? value.length : this.valueLen[i]);
    }
    return n;
  }

  private readonly copyIn = (i: number, buf: Buffer, off: number, len: number): void => {
    if (this.arenaUsed + len > this.arena.length) {
      const bigger = Buffer.alloc(Math.max(this.arena.length * 2, this.arenaUsed + len));
      this.arena.copy(bigger, 0, 0, this.arenaUsed);
      this.arena = bigger;
    }
    buf.copy(this.arena, this.arenaUsed, off, off + len);
    this.valueOff[i] = this.arenaUsed;
    this.valueLen[i] = len;
    this.arenaUsed += len;
  };

  /** key length (u32) + key + FIELDS_BYTES, as one CRC run. */
  private hashHeader(crc: number, kv: StoredKv, valueLength: number): number {
    const need = 4 + kv.key.length + FIELDS_BYTES;
    if (need > this.header.length) this.header = Buffer.alloc(Math.max(need, this.header.length * 2));
    const h = this.header;
    let o = h.writeUInt32BE(kv.key.length, 0);
    o += h.write(kv.key, o, 'latin1');
    o = writeInt64(h, kv.modRevision, o);
    o = writeInt64(h, kv.createRevision, o);
    o = writeInt64(h, kv.version, o);
    o = h.writeUInt8(isTombstone(kv) ? 1 : 0, o);
    o = kv.lease === 0n ? writeInt64(h, 0, o) : h.writeBigInt64BE(BigInt.asIntN(64, kv.lease), o);
    o = h.writeUInt32BE(valueLength, o);
    return crc32c(crc, h, 0, o);
  }

  private hashString(crc: number, s: Bytes): number {
    if (s.length > this.arena.length - this.arenaUsed) {
      // A heap value larger than the arena's free end: hash it through a buffer of its own.
      return crc32c(crc, Buffer.from(s, 'latin1'));
    }
    const n = this.arena.write(s, this.arenaUsed, 'latin1');
    return crc32c(crc, this.arena, this.arenaUsed, this.arenaUsed + n);
  }
}

/** A non-negative safe integer as an int64 (big-endian) without a BigInt. */
function writeInt64(buf: Buffer, n: number, o: number): number {
  assert(n >= 0 && n <= Number.MAX_SAFE_INTEGER, 'hash: a revision or version outside [0, 2^53)');
  o = buf.writeUInt32BE(Math.floor(n / TWO_32), o);
  return buf.writeUInt32BE(n % TWO_32, o);
}

/** The one hasher (hashing is synchronous): also hash_cache.ts's. */
export const hasher = new VersionHasher();

/** Versions gathered before their values are read (together) and hashed. */
const HASH_BATCH_VERSIONS = 4096;

/** Hash of every retained version with modRevision <= rev, given the compaction point: the
 *  slices of hashIndexSlice, chained in one call (for a store small enough to hash in one turn). */
export function hashIndex(index: KeyIndex, compactRev: Revision, rev: Revision, spilled: SpilledValues): number {
  let crc = 0;
  let from: Bytes | undefined = EMPTY_BYTES;
  while (from !== undefined) ({ crc, nextKey: from } = hashIndexSlice(index, compactRev, rev, from, HASH_BATCH_VERSIONS, crc, spilled));
  return crc;
}

/**
 * hashIndex in slices: hashes the retained versions (modRevision <= rev) of the keys from
 * `fromKey` on, stopping after the key at which `maxVersions` versions have been hashed. Returns
 * the CRC so far and the key to continue from (undefined: done). Feeding the same versions in the
 * same order, slices chained from EMPTY_BYTES give exactly hashIndex's result.
 */
export function hashIndexSlice(
  index: KeyIndex,
  compactRev: Revision,
  rev: Revision,
  fromKey: Bytes,
  maxVersions: number,
  crcIn: number,
  spilled: SpilledValues,
): { crc: number; nextKey: Bytes | undefined } {
  const batch: StoredKv[] = [];
  let nextKey: Bytes | undefined;
  for (const [key, v] of index.entriesFrom(fromKey)) {
    if (batch.length >= maxVersions) {
      nextKey = key;
      break;
    }
    const n = versionCount(v);
    for (let i = firstRetained(v, compactRev); i < n; i++) {
      const kv = versionAt(v, i);
      if (kv.modRevision > rev) break;
      batch.push(kv);
    }
  }
  return { crc: hasher.hashAll(crcIn, batch, spilled), nextKey };
}
