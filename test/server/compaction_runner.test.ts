// server/compaction_runner.ts: the in-memory half of compaction runs in slices across event-loop
// turns (a step-counting clock stands for time: 1 ms per reading), leaves the logical state alone
// (hash and reads are those of the compaction point from the start), and idle() resolves only
// once every unreachable version is freed.
import assert from 'node:assert/strict';
import { MvccStore, NO_LEASE } from '../../src/mvcc';
import { CompactionRunner } from '../../src/server/compaction_runner';
import type { SliceClock } from '../../src/util/slice_clock';

function twoVersionsEach(keys: number): MvccStore {
  const st = new MvccStore();
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < keys; i += 100) {
      const txn = st.write();
      for (let j = i; j < i + 100; j++) txn.put(Buffer.from(`k${j}`), Buffer.from(`v${round}`), NO_LEASE);
      txn.end();
    }
  }
  return st;
}

describe('server: in-memory compaction in slices', () => {
  it('frees every unreachable version over many turns, 1,000 keys a step, 3 ms slices of a step clock', async () => {
    const st = twoVersionsEach(20_000);
    const sizeBefore = st.sizeBytes;
    let t = 0;
    let turns = 0;
    const seenPending: boolean[] = [];
    const clock: SliceClock = {
      now: () => t++,
      yieldToLoop: () => {
        turns++;
        seenPending.push(st.compactionPending);
        return new Promise((resolve) => setImmediate(resolve));
      },
    };
    const runner = new CompactionRunner(() => st, clock, 3, 1000);
    st.scheduleCompaction(st.currentRevision);
    const hash = st.hashKV().hash;
    runner.kick();
    assert.equal(st.compactionPending, true, 'nothing is freed in the turn of the apply');
    await runner.idle();
    assert.equal(st.compactionPending, false);
    // 20,000 keys, 1,000 a step, at most 2 steps per 3 ms slice (3 clock readings a step): >= 10 turns.
    assert.ok(turns >= 10, `compaction ran in ${turns} turns`);
    assert.ok(seenPending.filter((p) => p).length >= 9, 'work was left at most turns');
    assert.equal(st.hashKV().hash, hash, 'the hash is that of the compaction point throughout');
    assert.ok(st.sizeBytes < sizeBefore, 'the old versions were freed');
    assert.equal(st.range(Buffer.from('k0'), undefined).kvs[0]?.value, 'v1');
  });

  it('idle() resolves at once with nothing pending, and on stop()', async () => {
    const st = twoVersionsEach(1000);
    const runner = new CompactionRunner(() => st);
    await runner.idle();
    st.scheduleCompaction(st.currentRevision);
    runner.stop();
    await runner.idle();
    assert.equal(st.compactionPending, true, 'a stopped runner frees nothing');
  });

  it('hold() keeps steps back until released; the compaction point moves meanwhile', async () => {
    const st = twoVersionsEach(5000);
    const runner = new CompactionRunner(() => st);
    const release = runner.hold();
    st.scheduleCompaction(st.currentRevision);
    runner.kick();
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.equal(st.compactionPending, true, 'nothing freed while held');
    let idle = false;
    const done = runner.idle().then(() => (idle = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(idle, false, 'idle() waits for the hold');
    release();
    await done;
    assert.equal(st.compactionPending, false);
    assert.throws(release, /released twice/);
  });
});

