// CRC32-C throughput by input size, in one process: the JavaScript slice-by-16 (crc32cJs), the
// native module called directly on a view of the range, and crc32c (the dispatch the code uses:
// JavaScript below NATIVE_MIN_BYTES, native from there). Rounds alternate the implementations;
// prints the best and the range over the rounds after the first (a warm-up) in MB/s.
//
// Usage: npx tsc -p . && node dist/scripts/bench-crc32c.js [--rounds=6] [--sizes=64,300,4096,1048576]
import crypto from 'node:crypto';
import { crc32c, crc32cImplementation, crc32cJs, NATIVE_MIN_BYTES } from '../src/util/crc32c';

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

const ROUNDS = Number(arg('rounds', '6'));
const SIZES = arg('sizes', '64,128,256,300,512,1024,4096,1048576').split(',').map(Number);
/** Bytes hashed per size per round (small sizes are many calls). */
const BYTES_PER_RUN = 64 << 20;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const native = (require('@node-rs/crc32') as typeof import('@node-rs/crc32')).crc32c as (input: Uint8Array, initialState?: number) => number;
const big = crypto.randomBytes(16 << 20);

type Impl = (off: number, len: number) => number;
const impls: [string, Impl][] = [
  ['js', (off, len) => crc32cJs(0, big, off, off + len)],
  ['native', (off, len) => native(new Uint8Array(big.buffer, big.byteOffset + off, len), 0)],
  ['crc32c', (off, len) => crc32c(0, big, off, off + len)],
];

function run(f: Impl, size: number): number {
  const calls = Math.max(1, Math.floor(BYTES_PER_RUN / size));
  let off = 0;
  let acc = 0;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < calls; k++) {
    acc ^= f(off, size);
    off += size;
    if (off + size > big.length) off = 0;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  if (acc === -1) console.log('unreachable');
  return (calls * size * 1e3) / ns; // MB/s
}

for (const size of SIZES) {
  const a = impls.map(([, f]) => f(3, size));
  if (a.some((x) => x !== a[0])) throw new Error(`implementations differ at ${size} B: ${a.join(' ')}`);
}
const mbps = new Map<string, number[]>();
for (let r = 0; r < ROUNDS; r++) {
  for (const size of SIZES) {
    for (const [name, f] of impls) {
      const v = run(f, size);
      if (r > 0 || ROUNDS === 1) mbps.set(`${name} ${size}`, [...(mbps.get(`${name} ${size}`) ?? []), v]);
    }
  }
}
console.log(`crc32c: ${crc32cImplementation()} from ${NATIVE_MIN_BYTES} B; ${ROUNDS} rounds (the first a warm-up); MB/s best (min-max)`);
const fmt = (xs: number[]) => `${Math.round(Math.max(...xs))} (${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))})`;
console.log('| bytes | JavaScript | native | crc32c (dispatch) | native / JavaScript, best |');
console.log('|---:|---:|---:|---:|---:|');
for (const size of SIZES) {
  const [j, n, d] = impls.map(([name]) => mbps.get(`${name} ${size}`)!);
  console.log(`| ${size} | ${fmt(j!)} | ${fmt(n!)} | ${fmt(d!)} | ${(Math.max(...n!) / Math.max(...j!)).toFixed(2)} |`);
}
