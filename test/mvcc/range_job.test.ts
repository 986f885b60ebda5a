// mvcc/range_job.ts: a range walked a few keys at a time gives what the one-pass range gives at the
// revision fixed when it started, whatever is written in between, for every option; it goes stale
// when a compaction passes its revision or the state is replaced, and not for a compaction below.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MvccStore, NO_LEASE, SortOrder, SortTarget, type KeyValue, type RangeJob, type RangeOptions } from '../../src/mvcc';
import { SpillFile } from '../../src/storage/spill_file';
import { b, del, put, rng } from './helpers';

/** Runs a job to its answer, `keysPerStep` keys and `valuesPerStep` values at a time, calling
 *  `between` after every step; returns the answer and the number of steps. */
function drive(job: RangeJob, keysPerStep: number, valuesPerStep: number, between: () => void = () => undefined) {
  let steps = 0;
  for (;;) {
    const st = job.scan(keysPerStep);
    assert.notEqual(st, 'stale');
    steps++;
    if (st === 'done') break;
    between();
  }
  if (job.valuesNeededForSort) {
    while (job.hydratedCount < job.kvs.length) {
      assert.notEqual(job.hydrateForSort(valuesPerStep), 'stale');
      between();
    }
  }
  job.finish();
  const kvs: KeyValue[] = [];
  for (let i = 0; i < job.kvs.length && !job.countOnly; i += valuesPerStep) {
    const got = job.readValues(i, valuesPerStep);
    assert.notEqual(got, 'stale');
    kvs.push(...(got as KeyValue[]));
    between();
  }
  return { kvs, count: job.count, more: job.more, steps };
}

const plain = (kvs: readonly KeyValue[]) => kvs.map((kv) => ({ ...kv }));

function seeded(store: MvccStore, keys: number): void {
  const r = rng(7);
  for (let i = 0; i < keys * 3; i++) {
    const k = `k${String(Math.floor(r() * keys)).padStart(4, '0')}`;
    if (r() < 0.1) del(store, k);
    else put(store, k, `v${Math.floor(r() * 1000)}:${'x'.repeat(Math.floor(r() * 300))}`);
  }
}

describe('mvcc: sliced range (RangeJob)', () => {
  const optionSets: RangeOptions[] = [
    {},
    { limit: 7 },
    { keysOnly: true },
    { countOnly: true },
    { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.KEY, limit: 11 },
    { sortOrder: SortOrder.ASCEND, sortTarget: SortTarget.VALUE },
    { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.MOD, limit: 5 },
    { sortOrder: SortOrder.NONE, sortTarget: SortTarget.CREATE },
    { minModRevision: 100, maxCreateRevision: 400 },
  ];

  it('equals the one-pass range for every option, read 3 keys and 2 values at a time, with values spilled', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-rangejob-'));
    const store = new MvccStore();
    store.attachSpill(SpillFile.open(path.join(dir, 'spill')), 2000);
    try {
      seeded(store, 200);
      while (store.spillStep()) {
        // spill everything beyond 2,000 bytes of heap values
      }
      assert.ok(store.spillBytes.live > 0, 'values were spilled');
      const revs = [0, store.currentRevision - 50];
      for (const revision of revs) {
        for (const o of optionSets) {
          const opts = { ...o, revision };
          const expected = store.range(b('k0010'), b('k0150'), opts);
          const got = drive(store.rangeJob(b('k0010'), b('k0150'), opts), 3, 2);
          assert.deepEqual(plain(got.kvs), plain(expected.kvs), JSON.stringify(opts));
          assert.equal(got.count, expected.count, JSON.stringify(opts));
          assert.equal(got.more, expected.more, JSON.stringify(opts));
          assert.ok(got.steps > 10, 'the walk took several steps');
        }
      }
    } finally {
      store.closeSpill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers at its revision while puts and deletes go on between steps', () => {
    const store = new MvccStore();
    seeded(store, 300);
    const expected = store.range(b('k'), b('l'), {});
    let n = 0;
    const got = drive(store.rangeJob(b('k'), b('l'), {}), 5, 4, () => {
      n++;
      if (n % 2 === 0) put(store, `k${String(n % 300).padStart(4, '0')}`, `new${n}`);
      else del(store, `k${String((n * 7) % 300).padStart(4, '0')}`);
    });
    assert.ok(n > 50);
    assert.deepEqual(plain(got.kvs), plain(expected.kvs));
    assert.equal(got.count, expected.count);
  });

  it('goes stale when a compaction passes its revision or the state is replaced; not for one at or below it', () => {
    const store = new MvccStore();
    seeded(store, 100);
    const job = store.rangeJob(b('k'), b('l'), { revision: store.currentRevision - 5 });
    assert.equal(job.scan(3), 'more');
    store.compact(store.currentRevision - 5); // at the job's revision: nothing it reads is freed
    assert.equal(job.scan(3), 'more');
    put(store, 'k0001', 'later');
    store.compact(store.currentRevision);
    assert.equal(job.scan(3), 'stale');

    const job2 = store.rangeJob(b('k'), b('l'), {});
    assert.equal(job2.scan(3), 'more');
    const other = new MvccStore();
    put(other, 'k9', 'replaced');
    store.replaceWith(other);
    assert.equal(job2.scan(3), 'stale');
  });

  it('a lease survives the walk (values with and without one)', () => {
    const store = new MvccStore();
    put(store, 'a1', 'x', 0x7fffffffffffffffn);
    put(store, 'a2', 'y', NO_LEASE);
    const got = drive(store.rangeJob(b('a'), b('b'), {}), 1, 1);
    assert.deepEqual(got.kvs.map((kv) => kv.lease), [0x7fffffffffffffffn, NO_LEASE]);
  });
});
