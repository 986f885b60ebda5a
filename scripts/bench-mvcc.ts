// MVCC micro-benchmark: apply throughput, range latency and memory per key of src/mvcc.
//
//   npm run bench:mvcc                 (1M keys; runs node with --expose-gc)
//   npm run bench:mvcc -- --keys 200000
//
// Measures, in one process with no I/O:
//   1. apply: puts/s of one-put write txns, 16-byte keys, 1 KiB values (200k puts, scaled by --keys)
//   2. memory: heapUsed + external growth after gc for N keys with 256 B values and 16-byte keys
//   3. range latency on that N-key store: single-key gets and 100-key range scans, p50/p99 in µs
//   4. compaction: the longest compactStep() slice after overwriting 10% of the keys

import { MvccStore, NO_LEASE } from '../src/mvcc';

const KEYS_DEFAULT = 1_000_000;
const APPLY_PUTS_DEFAULT = 200_000;
const GET_SAMPLES = 100_000;
const SCAN_SAMPLES = 10_000;
const SCAN_KEYS = 100;

function flag(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const keysTotal = flag('--keys', KEYS_DEFAULT);
const applyPuts = Math.min(APPLY_PUTS_DEFAULT, Math.max(1000, Math.floor(keysTotal / 5)));

/** 16-byte keys in byte order of i. */
function keyOf(i: number): Buffer {
  return Buffer.from(`key/${String(i).padStart(12, '0')}`, 'latin1');
}

/** Cheap deterministic PRNG (the bench must not differ run to run). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

function memBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

function percentile(sortedUs: Float64Array, p: number): number {
  return sortedUs[Math.min(sortedUs.length - 1, Math.floor(sortedUs.length * p))];
}

function benchApply(): void {
  const keys = Array.from({ length: applyPuts }, (_, i) => keyOf(i));
  const values = Array.from({ length: 256 }, (_, i) => Buffer.alloc(1024, i));
  const st = new MvccStore();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < applyPuts; i++) {
    const txn = st.write();
    txn.put(keys[i], values[i & 255], NO_LEASE);
    txn.end();
  }
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`apply: ${applyPuts} puts (16 B keys, 1 KiB values) in ${sec.toFixed(2)} s = ${Math.round(applyPuts / sec)} puts/s`);
  // overwrite pass: the key exists, so each put also grows the key's version list
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < applyPuts; i++) {
    const txn = st.write();
    txn.put(keys[i], values[(i + 1) & 255], NO_LEASE);
    txn.end();
  }
  const sec2 = Number(process.hrtime.bigint() - t1) / 1e9;
  console.log(`apply: ${applyPuts} overwrites in ${sec2.toFixed(2)} s = ${Math.round(applyPuts / sec2)} puts/s`);
}

function buildStore(): { st: MvccStore; bytesPerKey: number } {
  gc();
  const before = memBytes();
  const st = new MvccStore();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < keysTotal; i++) {
    const value = Buffer.allocUnsafe(256).fill(i & 255);
    const txn = st.write();
    txn.put(keyOf(i), value, NO_LEASE);
    txn.end();
  }
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  gc();
  const bytesPerKey = (memBytes() - before) / keysTotal;
  console.log(`load: ${keysTotal} keys (16 B keys, 256 B values) in ${sec.toFixed(2)} s = ${Math.round(keysTotal / sec)} puts/s`);
  console.log(
    `memory: ${bytesPerKey.toFixed(0)} bytes/key (heapUsed+external after gc; raw key+value = 272 B, ` +
      `overhead ${(bytesPerKey - 272).toFixed(0)} B/key; total ${((memBytes() - before) / 2 ** 20).toFixed(0)} MiB)`,
  );
  return { st, bytesPerKey };
}

function benchReads(st: MvccStore): void {
  const r = prng(1);
  const gets = new Float64Array(GET_SAMPLES);
  for (let i = 0; i < GET_SAMPLES; i++) {
    const k = keyOf(Math.floor(r() * keysTotal));
    const t = process.hrtime.bigint();
    const res = st.range(k, undefined);
    gets[i] = Number(process.hrtime.bigint() - t) / 1000;
    if (res.count !== 1) throw new Error('bench: missing key');
  }
  gets.sort();
  console.log(`range get (1 key): p50 ${percentile(gets, 0.5).toFixed(2)} µs, p99 ${percentile(gets, 0.99).toFixed(2)} µs over ${GET_SAMPLES}`);
  const scans = new Float64Array(SCAN_SAMPLES);
  for (let i = 0; i < SCAN_SAMPLES; i++) {
    const start = Math.floor(r() * (keysTotal - SCAN_KEYS));
    const lo = keyOf(start);
    const hi = keyOf(start + SCAN_KEYS);
    const t = process.hrtime.bigint();
    const res = st.range(lo, hi);
    scans[i] = Number(process.hrtime.bigint() - t) / 1000;
    if (res.count !== SCAN_KEYS) throw new Error('bench: short scan');
  }
  scans.sort();
  console.log(`range scan (${SCAN_KEYS} keys): p50 ${percentile(scans, 0.5).toFixed(1)} µs, p99 ${percentile(scans, 0.99).toFixed(1)} µs over ${SCAN_SAMPLES}`);
}

function benchCompaction(st: MvccStore): void {
  const r = prng(2);
  const value = Buffer.alloc(256, 7);
  const overwrites = Math.floor(keysTotal / 10);
  for (let i = 0; i < overwrites; i++) {
    const txn = st.write();
    txn.put(keyOf(Math.floor(r() * keysTotal)), value, NO_LEASE);
    txn.end();
  }
  st.scheduleCompaction(st.currentRevision);
  let steps = 0;
  let maxMs = 0;
  const t0 = process.hrtime.bigint();
  for (;;) {
    const t = process.hrtime.bigint();
    const done = st.compactStep();
    maxMs = Math.max(maxMs, Number(process.hrtime.bigint() - t) / 1e6);
    steps++;
    if (done) break;
  }
  const totalMs = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`compaction: ${keysTotal} keys after ${overwrites} overwrites: ${steps} steps, longest ${maxMs.toFixed(1)} ms, total ${totalMs.toFixed(0)} ms`);
}

function main(): void {
  if (!(globalThis as { gc?: () => void }).gc) console.log('note: run with --expose-gc (npm run bench:mvcc) for memory figures');
  console.log(`bench-mvcc: node ${process.version}, --keys ${keysTotal}`);
  benchApply();
  gc();
  const { st } = buildStore();
  benchReads(st);
  benchCompaction(st);
}

main();
