// CRC32-C (Castagnoli): the one implementation used by the WAL, the backend snapshot stream, the
// bbolt snapshot file and the MVCC hash.
//
// Two implementations behind one function, giving identical results:
// - native: @node-rs/crc32 (napi-rs, MIT; prebuilt binaries per platform, installed from the
//   lockfile with no build step), which uses the CPU's CRC32 instruction (SSE4.2 on x86-64). On
//   this machine (AMD EPYC, 2026-12-07, best of rounds, one process) it runs 4 KiB at ~5.0 GB/s
//   against 1.7 GB/s for the JavaScript below, 1 MiB at ~6.4 against 1.8 GB/s; but each call
//   crosses into C (~110 ns, plus a view of the range), so below NATIVE_MIN_BYTES the JavaScript is
//   faster (64 B: 0.44 against 1.28 GB/s; equal near 288 B).
// - JavaScript, slice-by-16: short inputs, and everything where the native module does not load.
//   Slice-by-8 consumed 8 bytes per step with 8 lookups: ~900 MB/s against ~300 MB/s for a
//   byte-at-a-time loop; slice-by-16 (16 bytes, 16 lookups) measured 1,678 against 1,448 MB/s for
//   slice-by-8 (best of 8 rounds over 4 KiB pieces, same process). The tables live in one flat
//   Int32Array: V8 ran that twice as fast as separate arrays.
// Why the checksum speed matters: the WAL checksums every byte it writes and reads (every Raft
// Ready, a restart's scan), the snapshot stream every byte sent and installed, and a full HashKV
// every retained value (about half of a pass in its profile with the JavaScript alone).
//
// If the native module does not load (a platform without a prebuilt binary, a broken install) the
// member runs on the JavaScript implementation, slower but with the same results, and says so in
// one warning line on stderr at start: refusing to start would buy no correctness. Setting
// QUORUMKV_CRC32C=js forces the JavaScript (tests of that path, A/B measurements).
// test/util/crc32c.test.ts checks both against the byte-at-a-time reference.

import { assert } from './assert';
import { Logger } from './log';

const POLY_REFLECTED = 0x82f63b78;
const TABLE_ENTRIES = 256;
const TABLES = 16;

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

/** Below this many bytes a call stays in JavaScript: the native call's fixed cost (~110 ns with the
 *  view of the range) is more than the JavaScript's CRC of the bytes (equal at ~288 B, measured
 *  over 128..512 B in one process, best of 8 rounds, 2026-12-07). Results are the same either way. */
export const NATIVE_MIN_BYTES = 288;

type NativeCrc32c = (input: Uint8Array, initialState?: number) => number;

function loadNative(): NativeCrc32c | undefined {
  let reason: string;
  if (process.env.QUORUMKV_CRC32C === 'js') {
    reason = 'QUORUMKV_CRC32C=js';
  } else {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const f = (require('@node-rs/crc32') as typeof import('@node-rs/crc32')).crc32c as NativeCrc32c;
      // The published check value ("123456789") and a continuation: a module computing anything
      // else is not used.
      if (f(Buffer.from('123456789'), 0) === 0xe3069283 && f(Buffer.from('6789'), f(Buffer.from('12345'), 0)) === 0xe3069283) return f;
      reason = 'its crc32c gave a wrong check value';
    } catch (err) {
      reason = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    }
  }
  new Logger('warn').warn('crc32c: the native @node-rs/crc32 is not used; checksums run in JavaScript (about 1/3 of its speed on 4 KiB, same results)', { reason });
  return undefined;
}

const native: NativeCrc32c | undefined = loadNative();

/** Which implementation crc32c runs for inputs of NATIVE_MIN_BYTES or more. */
export function crc32cImplementation(): 'native' | 'js' {
  return native === undefined ? 'js' : 'native';
}

/**
 * CRC32-C of buf[start, end), continuing from `crc` (0 to start). Returns an unsigned 32-bit value.
 * crc32c(crc32c(0, a), b) === crc32c(0, a ++ b).
 */
export function crc32c(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  if (end - start < NATIVE_MIN_BYTES || native === undefined) return crc32cJs(crc, buf, start, end);
  assert(start >= 0 && end <= buf.length, 'crc32c: a range outside the buffer');
  const input = start === 0 && end === buf.length ? buf : new Uint8Array(buf.buffer, buf.byteOffset + start, end - start);
  return native(input, crc >>> 0);
}

/** crc32c in JavaScript (slice-by-16), whatever the length: the fallback, and exported for tests
 *  and measurements. */
export function crc32cJs(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  const T = TABLE;
  let c = ~crc | 0;
  let i = start;
  const end16 = start + ((end - start) & ~15);
  while (i < end16) {
    const lo = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      T[0xf00 + (lo & 0xff)]! ^
      T[0xe00 + ((lo >>> 8) & 0xff)]! ^
      T[0xd00 + ((lo >>> 16) & 0xff)]! ^
      T[0xc00 + (lo >>> 24)]! ^
      T[0xb00 + buf[i + 4]!]! ^
      T[0xa00 + buf[i + 5]!]! ^
      T[0x900 + buf[i + 6]!]! ^
      T[0x800 + buf[i + 7]!]! ^
      T[0x700 + buf[i + 8]!]! ^
      T[0x600 + buf[i + 9]!]! ^
      T[0x500 + buf[i + 10]!]! ^
      T[0x400 + buf[i + 11]!]! ^
      T[0x300 + buf[i + 12]!]! ^
      T[0x200 + buf[i + 13]!]! ^
      T[0x100 + buf[i + 14]!]! ^
      T[buf[i + 15]!]!;
    i += 16;
  }
  while (i < end) c = T[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- combining CRCs of concatenated pieces -------------------------------------------------------
//
// crc32c(0, a ++ b) from crc32c(0, a), crc32c(0, b) and b's length, without a's or b's bytes: the
// CRC is linear over GF(2), so appending |b| bytes multiplies a's (conditioned) CRC by x^(8|b|)
// modulo the polynomial, and the conditioning terms cancel (zlib's crc32_combine). The MVCC hash
// cache (mvcc/hash_cache.ts) keeps one CRC per key and joins them in key order with this.
// Polynomials are in the reflected bit order of the CRC itself: bit 31 is x^0.

const X0 = 0x80000000;

/** a(x) * b(x) modulo the CRC-32C polynomial (reflected). At most 32 steps. */
function multModP(a: number, b: number): number {
  let m = X0;
  let p = 0;
  for (let step = 0; step < 32; step++) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY_REFLECTED : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k]: x^(2^k) modulo the polynomial. x^(2^k) repeats with a period below 32 for k >= 32, as
 *  zlib uses it; 64 entries cover every length below 2^61 bits without that. */
const X2N_ENTRIES = 64;
const X2N: Uint32Array = (() => {
  const t = new Uint32Array(X2N_ENTRIES);
  let p = X0 >>> 1; // x^1
  for (let k = 0; k < X2N_ENTRIES; k++) {
    t[k] = p;
    p = multModP(p, p);
  }
  return t;
})();

/** The operator that appends `bytes` bytes to a CRC (x^(8·bytes) modulo the polynomial), for
 *  crc32cCombineOp. `bytes` is a non-negative safe integer. */
export function crc32cShiftOp(bytes: number): number {
  assert(Number.isSafeInteger(bytes) && bytes >= 0, 'crc32cShiftOp: a length outside [0, 2^53)');
  let p = X0; // x^0
  let k = 3; // bytes → bits: x^(8n) = x^(n · 2^3)
  let n = bytes;
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** crc32c(0, a ++ b) given crcA = crc32c(0, a), crcB = crc32c(0, b) and op = crc32cShiftOp(|b|). */
export function crc32cCombineOp(crcA: number, crcB: number, op: number): number {
  return (multModP(op, crcA) ^ crcB) >>> 0;
}

/** crc32c(0, a ++ b) given crcA = crc32c(0, a), crcB = crc32c(0, b) and |b|. */
export function crc32cCombine(crcA: number, crcB: number, bytesB: number): number {
  return crc32cCombineOp(crcA, crcB, crc32cShiftOp(bytesB));
}
