// hashKV: a CRC32-C over the retained MVCC state up to a revision, for comparing replicas
// (etcd's Maintenance.HashKV and its corruption check). Two replicas with the same history and the
// same compaction point give the same hash, whatever their physical compaction progress: the hash
// covers the *logical* retained set (firstRetained), not what the index happens to still hold.
//
// Order: keys in byte order; for each key its retained versions in revision order. Each version
// contributes: key length + key, modRevision, createRevision, version, tombstone flag, lease (int64),
// value length + value.

import { KeyIndex, firstRetained, isTombstone, versionAt, versionCount } from './key_index';
import { KeyValue, Revision } from './types';

const CRC32C_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** Incremental CRC32-C (Castagnoli). `crc` is the running value (start with 0). */
export function crc32c(crc: number, data: Uint8Array): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Reused scratch for the fixed-size fields of one version (the hash runs synchronously). */
const scratch = Buffer.alloc(8 * 5 + 1 + 4);

function hashVersion(crc: number, kv: KeyValue): number {
  let o = 0;
  o = scratch.writeUInt32BE(kv.key.length, o);
  crc = crc32c(crc, scratch.subarray(0, o));
  crc = crc32c(crc, kv.key);
  o = 0;
  o = scratch.writeBigInt64BE(BigInt(kv.modRevision), o);
  o = scratch.writeBigInt64BE(BigInt(kv.createRevision), o);
  o = scratch.writeBigInt64BE(BigInt(kv.version), o);
  o = scratch.writeUInt8(isTombstone(kv) ? 1 : 0, o);
  o = scratch.writeBigInt64BE(BigInt.asIntN(64, kv.lease), o);
  o = scratch.writeUInt32BE(kv.value.length, o);
  crc = crc32c(crc, scratch.subarray(0, o));
  return crc32c(crc, kv.value);
}

/** Hash of every retained version with modRevision <= rev, given the compaction point. */
export function hashIndex(index: KeyIndex, compactRev: Revision, rev: Revision): number {
  let crc = 0;
  index.forEach((_key, v) => {
    const n = versionCount(v);
    for (let i = firstRetained(v, compactRev); i < n; i++) {
      const kv = versionAt(v, i);
      if (kv.modRevision > rev) break;
      crc = hashVersion(crc, kv);
    }
  });
  return crc;
}
