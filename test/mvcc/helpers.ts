// Shared helpers for the MVCC tests.
import { MvccStore, KeyValue, WriteResult, NO_LEASE } from '../../src/mvcc';

export const b = (s: string): Buffer => Buffer.from(s, 'latin1');
export const s = (x: Buffer | string): string => (typeof x === 'string' ? x : x.toString('latin1'));

/** One txn with one put. */
export function put(store: MvccStore, key: string | Buffer, value: string | Buffer, lease = NO_LEASE): WriteResult {
  const txn = store.write();
  txn.put(typeof key === 'string' ? b(key) : key, typeof value === 'string' ? b(value) : value, lease);
  return txn.end();
}

/** One txn with one deleteRange. */
export function del(store: MvccStore, key: string, rangeEnd?: string): WriteResult {
  const txn = store.write();
  txn.deleteRange(b(key), rangeEnd === undefined ? undefined : b(rangeEnd));
  return txn.end();
}

export function keysOf(kvs: readonly KeyValue[]): string[] {
  return kvs.map((kv) => s(kv.key));
}

export function get(store: MvccStore, key: string, revision = 0): KeyValue | undefined {
  return store.range(b(key), undefined, { revision }).kvs[0];
}

/** Deterministic PRNG (mulberry32) so randomized tests replay from their seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs a sliced HashKV (hashKVJob) to its end, calling `between` after every step: its result, or
 *  'stale' if the job was overtaken (a compaction). */
export function runHashJob(st: MvccStore, rev: number, maxVersions: number, between: () => void): ReturnType<MvccStore['hashKV']> | 'stale' {
  const job = st.hashKVJob(rev);
  for (let steps = 0; steps < 100_000; steps++) {
    const state = job.step(maxVersions);
    if (state === 'done') return job.result();
    if (state === 'stale') return 'stale';
    between();
  }
  throw new Error('sliced hash did not finish');
}
