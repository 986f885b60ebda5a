// hashKV: a CRC32-C over the retained MVCC state up to a revision, for comparing replicas
// (etcd's Maintenance.HashKV and its corruption check). Two replicas with the same history and the
// same compaction point give the same hash, whatever their physical compaction progress: the hash
// covers the *logical* retained set (firstRetained), not what the index happens to still hold.
//
// Order: keys in byte order; for each key its retained versions in revision order. Each version
// contributes: key length + key, modRevision, createRevision, version, tombstone flag, lease (int64),
// value length + value.

import { crc32c } from '../util/crc32c';
import { KeyIndex, firstRetained, isTombstone, versionAt, versionCount } from './key_index';
import { Bytes, KeyValue, Revision, StoredKv } from './types';

export { crc32c };

/** Reused scratch for the fixed-size fields of one version (the hash runs synchronously). */
const scratch = Buffer.alloc(8 * 5 + 1 + 4);

/** Reused buffer the key and value bytes are written into for the CRC (grown on demand). */
let bytesScratch = Buffer.alloc(4096);

function crcBytes(crc: number, s: Bytes): number {
  if (s.length > bytesScratch.length) bytesScratch = Buffer.alloc(Math.max(s.length, bytesScratch.length * 2));
  const n = bytesScratch.write(s, 0, 'latin1');
  return crc32c(crc, bytesScratch, 0, n);
}

function hashVersion(crc: number, kv: StoredKv, value: Bytes): number {
  let o = 0;
  o = scratch.writeUInt32BE(kv.key.length, o);
  crc = crc32c(crc, scratch.subarray(0, o));
  crc = crcBytes(crc, kv.key);
  o = 0;
  o = scratch.writeBigInt64BE(BigInt(kv.modRevision), o);
  o = scratch.writeBigInt64BE(BigInt(kv.createRevision), o);
  o = scratch.writeBigInt64BE(BigInt(kv.version), o);
  o = scratch.writeUInt8(isTombstone(kv) ? 1 : 0, o);
  o = scratch.writeBigInt64BE(BigInt.asIntN(64, kv.lease), o);
  o = scratch.writeUInt32BE(value.length, o);
  crc = crc32c(crc, scratch.subarray(0, o));
  return crcBytes(crc, value);
}

/** Versions gathered before their values are read (together) and hashed. */
const HASH_BATCH_VERSIONS = 4096;

/** Hash of every retained version with modRevision <= rev, given the compaction point.
 *  `hydrateAll` gives versions their value bytes, in place (reading spilled ones together). */
export function hashIndex(index: KeyIndex, compactRev: Revision, rev: Revision, hydrateAll: (kvs: StoredKv[]) => KeyValue[]): number {
  let crc = 0;
  let batch: StoredKv[] = [];
  const flush = (): void => {
    for (const kv of hydrateAll(batch)) crc = hashVersion(crc, kv, kv.value);
    batch = [];
  };
  index.forEach((_key, v) => {
    const n = versionCount(v);
    for (let i = firstRetained(v, compactRev); i < n; i++) {
      const kv = versionAt(v, i);
      if (kv.modRevision > rev) break;
      batch.push(kv);
    }
    if (batch.length >= HASH_BATCH_VERSIONS) flush();
  });
  flush();
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
  hydrateAll: (kvs: StoredKv[]) => KeyValue[],
): { crc: number; nextKey: Bytes | undefined } {
  let crc = crcIn;
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
  for (const kv of hydrateAll(batch)) crc = hashVersion(crc, kv, kv.value);
  return { crc, nextKey };
}
