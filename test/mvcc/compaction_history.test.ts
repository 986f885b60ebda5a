// Compaction (logical point + incremental physical cleanup) and the event history for watchers.
import { strict as assert } from 'node:assert';
import { MvccStore, EventType, NO_LEASE, Event } from '../../src/mvcc';
import { Errors } from '../../src/util/errors';
import { b, s, put, del, get } from './helpers';

const isCompacted = (e: unknown) => e === Errors.Compacted;
const isFuture = (e: unknown) => e === Errors.FutureRev;
const brief = (evs: Event[]) =>
  evs.map((e) => `${e.type === EventType.PUT ? 'P' : 'D'}${s(e.kv.key)}@${e.kv.modRevision}${e.prevKv ? `<${s(e.prevKv.value)}` : ''}`);

/** a@2 b@3 a@4 del b@5 c@6 a@7 */
function sample(): MvccStore {
  const st = new MvccStore();
  put(st, 'a', '1');
  put(st, 'b', '1');
  put(st, 'a', '2');
  del(st, 'b');
  put(st, 'c', '1');
  put(st, 'a', '3');
  return st;
}

function snapshotReads(st: MvccStore, fromRev: number): string[][] {
  const out: string[][] = [];
  for (let rev = fromRev; rev <= st.currentRevision; rev++) {
    out.push(st.range(b('\0'), b('\0'), { revision: rev }).kvs.map((kv) => `${s(kv.key)}=${s(kv.value)}/${kv.version}/${kv.createRevision}/${kv.modRevision}`));
  }
  return out;
}

describe('mvcc compaction', () => {
  it('reads below the compaction point fail; reads at or above it are unchanged', () => {
    const st = sample();
    const before = snapshotReads(st, 4);
    st.compact(4);
    assert.equal(st.compactRevision, 4);
    assert.throws(() => st.range(b('a'), undefined, { revision: 3 }), isCompacted);
    assert.deepEqual(snapshotReads(st, 4), before);
    assert.equal(s(get(st, 'a')!.value), '3');
  });

  it('compacting at or below the compaction point fails with Compacted, above current with FutureRev', () => {
    const st = sample();
    st.compact(3);
    assert.throws(() => st.compact(3), isCompacted);
    assert.throws(() => st.compact(2), isCompacted);
    assert.throws(() => st.compact(8), isFuture);
    st.compact(7);
    assert.equal(st.compactRevision, 7);
  });

  it('drops superseded versions and deleted keys, freeing their bytes', () => {
    const st = sample();
    const sizeBefore = st.sizeBytes;
    st.compact(7);
    // left: a=3 (a@7), c=1 (c@6); gone: a@2, a@4, b@3, b's tombstone @5
    assert.equal(st.sizeBytes, 2 + 2);
    assert.ok(sizeBefore > st.sizeBytes);
    assert.equal(st.keyCount, 2);
    assert.deepEqual(snapshotReads(st, 7), [['a=3/3/2/7', 'c=1/1/6/6']]);
    put(st, 'b', 'new');
    assert.deepEqual([get(st, 'b')!.version, get(st, 'b')!.createRevision], [1, 8]);
    put(st, 'a', '4');
    assert.deepEqual([get(st, 'a')!.version, get(st, 'a')!.createRevision], [4, 2]);
  });

  it('incremental compaction: reads are exact at every step', () => {
    const st = new MvccStore();
    for (let i = 0; i < 50; i++) {
      put(st, `k${i % 17}`, `v${i}`);
      if (i % 7 === 0) del(st, `k${(i * 3) % 17}`);
    }
    const compactAt = st.currentRevision - 10;
    const expected = snapshotReads(st, compactAt);
    st.scheduleCompaction(compactAt);
    const hash = st.hashKV().hash;
    assert.equal(st.compactionPending, true);
    assert.throws(() => st.range(b('k1'), undefined, { revision: compactAt - 1 }), isCompacted);
    let steps = 0;
    for (;;) {
      assert.deepEqual(snapshotReads(st, compactAt), expected);
      assert.equal(st.hashKVFullPass().hash, hash, 'the hash does not depend on physical progress');
      steps++;
      if (st.compactStep(3)) break;
    }
    assert.ok(steps >= 5, `compaction ran in ${steps} steps`);
    assert.equal(st.compactionPending, false);
    assert.deepEqual(snapshotReads(st, compactAt), expected);
  });

  it('writes and a newer compaction between steps stay correct', () => {
    const st = new MvccStore();
    for (let i = 0; i < 40; i++) put(st, `k${i % 10}`, `v${i}`);
    st.scheduleCompaction(20);
    st.compactStep(2);
    put(st, 'k0', 'late');
    put(st, 'a-new', 'x');
    st.compactStep(2);
    st.scheduleCompaction(st.currentRevision - 1);
    const expected = snapshotReads(st, st.compactRevision);
    while (!st.compactStep(4)) assert.deepEqual(snapshotReads(st, st.compactRevision), expected);
    assert.deepEqual(snapshotReads(st, st.compactRevision), expected);
  });

  it('compaction while a write txn is open is a bug', () => {
    const st = sample();
    const txn = st.write();
    assert.throws(() => st.compact(3));
    txn.end();
  });
});

describe('mvcc eventsBetween', () => {
  it('returns every event in revision and sub-revision order with prevKv', () => {
    const st = sample();
    const { events, nextRev } = st.eventsBetween(2, 7);
    assert.deepEqual(brief(events), ['Pa@2', 'Pb@3', 'Pa@4<1', 'Db@5<1', 'Pc@6', 'Pa@7<2']);
    assert.equal(nextRev, 8);
    const d = events[3];
    assert.deepEqual([d.kv.createRevision, d.kv.version, d.kv.value.length, d.kv.lease], [0, 0, 0, 0n]);
  });

  it('bounds are inclusive and toRev is capped at the current revision', () => {
    const st = sample();
    assert.deepEqual(brief(st.eventsBetween(4, 5).events), ['Pa@4<1', 'Db@5<1']);
    assert.equal(st.eventsBetween(4, 5).nextRev, 6);
    const tail = st.eventsBetween(7, 100);
    assert.deepEqual(brief(tail.events), ['Pa@7<2']);
    assert.equal(tail.nextRev, 8);
    assert.deepEqual(st.eventsBetween(8, 100), { events: [], nextRev: 8 });
  });

  it('maxEvents stops only between revisions and never splits one', () => {
    const st = new MvccStore();
    put(st, 'a', '1'); // 2
    const txn = st.write(); // 3: three events
    txn.put(b('x'), b('1'), NO_LEASE);
    txn.put(b('y'), b('1'), NO_LEASE);
    txn.put(b('z'), b('1'), NO_LEASE);
    txn.end();
    put(st, 'a', '2'); // 4
    const r1 = st.eventsBetween(2, 4, 2);
    assert.deepEqual(brief(r1.events), ['Pa@2']);
    assert.equal(r1.nextRev, 3);
    const r2 = st.eventsBetween(r1.nextRev, 4, 2);
    assert.deepEqual(brief(r2.events), ['Px@3', 'Py@3', 'Pz@3'], 'a revision larger than maxEvents comes whole');
    assert.equal(r2.nextRev, 4);
    const r3 = st.eventsBetween(r2.nextRev, 4, 2);
    assert.deepEqual(brief(r3.events), ['Pa@4<1']);
    assert.equal(r3.nextRev, 5);
    assert.equal(st.eventsBetween(2, 4, 4).events.length, 4);
    assert.equal(st.eventsBetween(2, 4, 4).nextRev, 4);
  });

  it('the events of an open txn are not served before it commits', () => {
    const st = sample();
    const txn = st.write();
    txn.put(b('z'), b('1'), NO_LEASE);
    assert.equal(st.eventsBetween(8, 8).events.length, 0);
    txn.end();
    assert.deepEqual(brief(st.eventsBetween(8, 8).events), ['Pz@8']);
  });

  it('reading below the compaction point fails; from it on works, prevKv only if it survived compaction', () => {
    const st = sample();
    st.compact(4);
    assert.throws(() => st.eventsBetween(3, 7), isCompacted);
    // a@4's predecessor a@2 is compacted away; b@3 is b's newest version <= 4, so it survives.
    assert.deepEqual(brief(st.eventsBetween(4, 7).events), ['Pa@4', 'Db@5<1', 'Pc@6', 'Pa@7<2']);
  });

  it('a delete at the compaction point is still served to a watcher resuming there', () => {
    const st = sample();
    st.compact(5);
    assert.deepEqual(brief(st.eventsBetween(5, 5).events), ['Db@5']);
    assert.equal(get(st, 'b'), undefined);
  });

  it('events match the WriteResults that produced them', () => {
    const st = new MvccStore();
    const results = [put(st, 'a', '1'), put(st, 'a', '2'), del(st, 'a'), put(st, 'a', '3')];
    const fromWrites = results.flatMap((r) => r.events);
    assert.deepEqual(brief(st.eventsBetween(2, st.currentRevision).events), brief(fromWrites));
  });
});
