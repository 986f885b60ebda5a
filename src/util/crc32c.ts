// CRC32-C (Castagnoli), slice-by-8: the one implementation used by the WAL, the backend snapshot
// stream and the MVCC hash.
//
// Why our own: Node 20 has no native CRC32-C, and the WAL checksums every byte it writes and reads,
// so the checksum sits on the hot path of every Raft Ready. Slice-by-8 consumes 8 bytes per step with
// 8 lookups; measured here at ~900 MB/s against ~300 MB/s for a byte-at-a-time loop (same
// polynomial, same results: test/util/crc32c.test.ts checks it against that reference).
// The 8 tables live in one flat Int32Array: V8 ran that twice as fast as 8 separate arrays.

const POLY_REFLECTED = 0x82f63b78;
const TABLE_ENTRIES = 256;
const TABLES = 8;

/** TABLE[k * 256 + n]: the CRC of byte n followed by k zero bytes. */
const TABLE: Int32Array = (() => {
  const t = new Int32Array(TABLE_ENTRIES * TABLES);
  for (let n = 0; n < TABLE_ENTRIES; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? POLY_REFLECTED ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let k = 1; k < TABLES; k++) {
    for (let n = 0; n < TABLE_ENTRIES; n++) {
      const prev = t[(k - 1) * TABLE_ENTRIES + n]!;
      t[k * TABLE_ENTRIES + n] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  }
  return t;
})();

/**
 * CRC32-C of buf[start, end), continuing from `crc` (0 to start). Returns an unsigned 32-bit value.
 * crc32c(crc32c(0, a), b) === crc32c(0, a ++ b).
 */
export function crc32c(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  const T = TABLE;
  let c = ~crc | 0;
  let i = start;
  const end8 = start + ((end - start) & ~7);
  while (i < end8) {
    const lo = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      T[0x700 + (lo & 0xff)]! ^
      T[0x600 + ((lo >>> 8) & 0xff)]! ^
      T[0x500 + ((lo >>> 16) & 0xff)]! ^
      T[0x400 + (lo >>> 24)]! ^
      T[0x300 + buf[i + 4]!]! ^
      T[0x200 + buf[i + 5]!]! ^
      T[0x100 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = T[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
