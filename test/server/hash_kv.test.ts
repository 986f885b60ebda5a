// server/hash_kv.ts: HashKV in slices across event-loop turns gives the synchronous answer at the
// revision fixed when it started, lets timers run meanwhile, restarts after a compaction, and fails
// as etcd does when that compaction passed its revision.
import assert from 'node:assert/strict';
import { MvccStore, NO_LEASE } from '../../src/mvcc';
import { hashKVSliced } from '../../src/server/hash_kv';
import { CompactionRunner } from '../../src/server/compaction_runner';
import { LOOP_CLOCK } from '../../src/util/slice_clock';
import { Errors } from '../../src/util/errors';
import { Logger } from '../../src/util/log';

function bigStore(keys: number): MvccStore {
  const st = new MvccStore();
  const value = Buffer.alloc(1024, 'v');
  for (let i = 0; i < keys; i++) {
    const txn = st.write();
    txn.put(Buffer.from(`k${i % (keys / 2)}`), value, NO_LEASE);
    txn.end();
  }
  return st;
}

describe('server: sliced HashKV', function () {
  this.timeout(60_000);
  const lines: string[] = [];
  const log = new Logger('info', {}, (l) => lines.push(l));

  it('equals the synchronous hash at its revision while writes go on; timers run between slices', async () => {
    const st = bigStore(60_000);
    // From a twin: a hash on `st` itself would be cached, and the sliced one answered from it.
    const expected = bigStore(60_000).hashKV();
    let ticks = 0;
    const timer = setInterval(() => {
      ticks++;
      const txn = st.write();
      txn.put(Buffer.from(`during${ticks}`), Buffer.from('x'), NO_LEASE);
      txn.end();
    }, 1);
    const got = await hashKVSliced(() => st, 0, log).finally(() => clearInterval(timer));
    assert.deepEqual(got, expected);
    assert.ok(ticks > 0, 'the event loop ran timers (and writes) while the hash was computed');
  });

  it('restarts after a compaction below its revision, and fails with Compacted when one passes it', async () => {
    const st = bigStore(60_000);
    const twin = bigStore(60_000);
    const rev = st.currentRevision - 10;
    const expectedAtRev = twin.hashKV(rev);
    let compacted = false;
    const t = setTimeout(() => {
      st.compact(rev - 100);
      compacted = true;
    }, 1);
    const got = await hashKVSliced(() => st, rev, log);
    clearTimeout(t);
    assert.ok(compacted);
    // Below the hash revision a compaction keeps what the hash covers (its retained set at rev).
    twin.compact(rev - 100);
    assert.deepEqual(got, twin.hashKV(rev));
    assert.equal(got.hashRevision, expectedAtRev.hashRevision);
    assert.ok(lines.some((l) => l.includes('hash restarts')), 'the compaction made it start over');
    // A store with no hash cached at `rev` (on `st`, the hash just computed would answer at once).
    const fresh = bigStore(60_000);
    const t2 = setTimeout(() => fresh.compact(fresh.currentRevision), 1);
    await assert.rejects(hashKVSliced(() => fresh, rev, log), (e) => e === Errors.Compacted);
    clearTimeout(t2);
  });

  it('a compaction applied while it runs moves the compaction point, but frees nothing until the hash is done: no restart', async () => {
    const st = bigStore(60_000);
    const twin = bigStore(60_000);
    const runner = new CompactionRunner(() => st);
    const rev = st.currentRevision - 10;
    const expected = twin.hashKV(rev); // at the compaction point the hash started with (none)
    const linesBefore = lines.length;
    let during: { pending: boolean; compactRevision: number } | undefined;
    const t = setTimeout(() => {
      // What applying a compaction entry does in the server: move the point, kick the runner.
      st.scheduleCompaction(rev - 100);
      runner.kick();
      setImmediate(() => (during = { pending: st.compactionPending, compactRevision: st.compactRevision }));
    }, 1);
    const got = await hashKVSliced(() => st, rev, log, LOOP_CLOCK, () => runner.hold());
    clearTimeout(t);
    assert.deepEqual(during, { pending: true, compactRevision: rev - 100 }, 'the point moved at once; the freeing waited');
    assert.deepEqual(got, expected, 'the answer is at the compaction point the hash started with, as etcd answers');
    assert.ok(!lines.slice(linesBefore).some((l) => l.includes('hash restarts')), 'no restart');
    await runner.idle();
    assert.equal(st.compactionPending, false, 'released: the compaction finished after the hash');
    twin.compact(rev - 100);
    assert.deepEqual(st.hashKV(rev), twin.hashKV(rev), 'and the state is that of the compaction');
  });
});
