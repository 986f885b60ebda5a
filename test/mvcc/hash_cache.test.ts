// The hash cache (mvcc/hash_cache.ts): a hash answered from the cache, or extended from the cached
// per-key CRCs, equals one streaming pass over the retained versions (hashKVFullPass) across random
// puts, deletes, multi-op txns, lease-attached keys and their revokes, compactions, spilled values,
// writes between slices and restarts (a store rebuilt from a snapshot: no cache).
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MvccStore, NO_LEASE } from '../../src/mvcc';
import { SpillFile } from '../../src/storage/spill_file';
import { b, del, put, rng, runHashJob } from './helpers';

const KEYS = 40;

/** One random change: a put (some with a lease), a delete or range delete, a txn that puts one key
 *  twice and may delete a range, a lease revoke (its keys deleted in one txn), or a compaction. */
function randomChange(st: MvccStore, r: () => number, i: number, leases: Map<bigint, Set<string>>): void {
  const k = `k${String(Math.floor(r() * KEYS)).padStart(2, '0')}`;
  const x = r();
  if (x < 0.45) {
    const lease = r() < 0.3 ? BigInt(1 + Math.floor(r() * 3)) : NO_LEASE;
    put(st, k, `v${i}:${'x'.repeat(Math.floor(r() * 300))}`, lease);
    for (const keys of leases.values()) keys.delete(k);
    if (lease !== NO_LEASE) leases.set(lease, (leases.get(lease) ?? new Set()).add(k));
  } else if (x < 0.6) {
    del(st, k, r() < 0.2 ? `k${String(Math.floor(r() * KEYS)).padStart(2, '0')}` : undefined);
  } else if (x < 0.75) {
    const txn = st.write();
    txn.put(b(k), b(`t${i}`), NO_LEASE);
    txn.put(b(k), b(`u${i}`), NO_LEASE);
    if (r() < 0.5) txn.deleteRange(b('k1'), b('k2'));
    txn.end();
  } else if (x < 0.85) {
    // A lease revoke: the lessor deletes its keys in one txn.
    const lease = BigInt(1 + Math.floor(r() * 3));
    const keys = [...(leases.get(lease) ?? [])].sort();
    leases.delete(lease);
    const txn = st.write();
    for (const key of keys) txn.deleteRange(b(key), undefined);
    txn.end();
  } else if (x < 0.9 && st.currentRevision > st.compactRevision + 5) {
    st.compact(st.currentRevision - Math.floor(r() * 5));
  } else if (x < 0.95) {
    put(st, `new${i}`, `n${i}`);
  }
}

describe('mvcc hash cache', () => {
  it('cached, extended and restarted hashes equal a full pass across random histories (seeded)', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const r = rng(seed * 104729);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-hash-cache-'));
      const spills: SpillFile[] = [];
      const openStore = (): MvccStore => {
        const st = new MvccStore();
        if (seed % 2 === 0) {
          const spill = SpillFile.open(fs.mkdtempSync(path.join(dir, 's-')), undefined, { rewriteGarbageBytesMin: 256 });
          spills.push(spill);
          st.attachSpill(spill, 512);
        }
        return st;
      };
      let st = openStore();
      const leases = new Map<bigint, Set<string>>();
      try {
        for (let round = 0; round < 25; round++) {
          const changes = Math.floor(r() * 30);
          for (let i = 0; i < changes; i++) randomChange(st, r, round * 100 + i, leases);
          while (st.spillStep()) {
            // values of older versions leave the heap
          }
          const what = r();
          if (what < 0.5) {
            // The current revision, synchronously: extended from the last hash, or from scratch.
            assert.deepEqual(st.hashKV(), st.hashKVFullPass(), `seed ${seed} round ${round}`);
            assert.equal(st.hashKVJob().fromCache, true, `seed ${seed} round ${round}: asked again, answered by the cache`);
          } else if (what < 0.7) {
            // An older revision: a full pass that leaves the newer cache alone.
            const before = st.cachedHash;
            const rev = Math.max(1, st.compactRevision) + Math.floor(r() * (st.currentRevision - Math.max(1, st.compactRevision) + 1));
            assert.deepEqual(st.hashKV(rev), st.hashKVFullPass(rev), `seed ${seed} round ${round} rev ${rev}`);
            if (before !== undefined && before.revision > rev) assert.deepEqual(st.cachedHash, before);
          } else if (what < 0.9) {
            // In slices with writes (and sometimes a compaction) between them.
            const rev = st.currentRevision;
            const expected = st.hashKVFullPass(rev);
            const compactBetween = r() < 0.2 && rev > st.compactRevision + 3;
            let i = 0;
            const got = runHashJob(st, rev, 1 + Math.floor(r() * 5), () => {
              put(st, `k${String(Math.floor(r() * KEYS)).padStart(2, '0')}`, `between${round}.${i++}`);
              if (compactBetween && i === 1) st.compact(rev - 1);
            });
            if (compactBetween && got === 'stale') continue;
            assert.deepEqual(got, expected, `seed ${seed} round ${round}: sliced`);
          } else {
            // A restart: the state rebuilt (as a backend load does) has no cache; its first hash
            // is a full pass over what was loaded.
            st = MvccStore.fromSnapshot(st.exportSnapshot());
            assert.equal(st.cachedHash, undefined);
            assert.equal(st.hashKVJob().fromCache, false);
            assert.deepEqual(st.hashKV(), st.hashKVFullPass(), `seed ${seed} round ${round}: after the restart`);
          }
        }
      } finally {
        for (const spill of spills) spill.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('a key with more versions than a step takes is hashed over many steps, each within the bound, with writes between them', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-hash-cache-'));
    const spill = SpillFile.open(dir, undefined, { rewriteGarbageBytesMin: 256 });
    try {
      const st = new MvccStore();
      st.attachSpill(spill, 4096);
      put(st, 'a', 'first');
      for (let i = 0; i < 5000; i++) put(st, 'hot', `v${i}:${'x'.repeat(100)}`);
      put(st, 'z', 'last');
      while (st.spillStep()) {
        // the hot key's older values leave the heap
      }
      const step = 64;
      const count = (rev: number, between: () => void): number => {
        let steps = 0;
        const got = runHashJob(st, rev, step, () => {
          steps++;
          between();
        });
        assert.notEqual(got, 'stale');
        assert.deepEqual(got, st.hashKVFullPass(rev));
        return steps + 1;
      };
      // From scratch: the hot key alone takes ceil(5000 / 64) steps (one key's history is not one
      // batch: with a million versions that was the whole history's values in memory at once).
      let i = 0;
      const rev = st.currentRevision;
      assert.ok(count(rev, () => put(st, 'hot', `between${i++}`)) >= Math.ceil(5000 / step));
      // Extended from that hash: only the versions written since, in steps again.
      for (let k = 0; k < 1000; k++) put(st, 'hot', `w${k}`);
      const rev2 = st.currentRevision;
      const steps2 = count(rev2, () => put(st, 'a', `between${i++}`));
      assert.ok(steps2 >= Math.ceil(1000 / step) && steps2 < Math.ceil(5000 / step), `extended in ${steps2} steps`);
    } finally {
      spill.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a compaction keeps the runs of keys it did not shorten, and the hash equals a full pass', () => {
    const st = new MvccStore();
    for (let i = 0; i < 200; i++) put(st, `k${i % 50}`, `v${i}`);
    for (let i = 0; i < 10; i++) put(st, `k${i}`, `w${i}`);
    st.hashKV();
    st.compact(st.currentRevision - 5);
    assert.equal(st.hashKVJob().fromCache, false, 'another compaction point: not the cached hash');
    assert.deepEqual(st.hashKV(), st.hashKVFullPass());
    while (!st.compactStep(7)) {
      // physical compaction in steps; the hash does not depend on its progress
      assert.deepEqual(st.hashKV(), st.hashKVFullPass());
    }
  });
});
