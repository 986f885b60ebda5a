// api/range_sliced.ts: a large Range served in slices. Time comes from a step counter (a fake
// clock), so the test sees the yields without depending on the machine's speed: the parts written
// add up to the size announced and decode to what the one-pass range encodes, the range yields
// between slices and writes nothing while its sink is full, starts over after a compaction (at the
// new head for revision 0, with etcd's Compacted for a revision that was compacted), stops when
// abandoned, refuses an answer above the size limit with grpc-go's error, and takes its cost from
// the member's budget (waiting past it, refused when the queue is full, given back in every case).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SpillFile } from '../../src/storage/spill_file';
import { MvccStore, NO_LEASE } from '../../src/mvcc';
import { protoRoot } from '../../src/proto';
import type { RangeRequest } from '../../src/proto/types';
import { applyRange } from '../../src/server/kv_ops';
import { rangeSliced, RANGE_INTERRUPTED, RANGE_KEYS_PER_STEP, type PartSink, type RangeAnswerTarget } from '../../src/api/range_sliced';
import { RangeAnswerBudget } from '../../src/api/range_budget';
import { stepClock } from './step_clock';
import { encodeHeader } from '../../src/api/watch_encoding';
import { Errors, EtcdError, GrpcCode } from '../../src/util/errors';

function storeOf(keys: number): MvccStore {
  const st = new MvccStore();
  for (let i = 0; i < keys; i++) {
    const txn = st.write();
    txn.put(Buffer.from(`key/${String(i).padStart(6, '0')}`), Buffer.from(`value ${i} `.repeat(1 + (i % 5))), i % 3 === 0 ? BigInt(1000 + i) : NO_LEASE);
    txn.end();
  }
  return st;
}

const req = (o: Partial<RangeRequest> = {}): RangeRequest => ({ key: Buffer.from('key/'), range_end: Buffer.from('key0'), ...o }) as RangeRequest;
const RangeResponse = () => protoRoot().lookupType('etcdserverpb.RangeResponse');
const header = { cluster_id: '1', member_id: '2', revision: '3', raft_term: '4' };

function decoded(parts: Buffer[]): unknown {
  return RangeResponse().toObject(RangeResponse().decode(Buffer.concat(parts)), { longs: String, bytes: String, defaults: true });
}

/** A sink that keeps the parts; with `fullEvery`, every n-th write finds it full, and it drains
 *  a turn later (a write meanwhile fails the test). */
function collector(fullEvery = 0, manual = false): { target: RangeAnswerTarget; parts: Buffer[]; declared: () => number; ended: () => boolean; drains: () => number; drainNow: () => void } {
  const parts: Buffer[] = [];
  let declared = -1;
  let ended = false;
  let full = false;
  let drains = 0;
  let waiting: (() => void) | undefined;
  const drainNow = () => {
    const fn = waiting;
    waiting = undefined;
    full = false;
    fn?.();
  };
  const sink: PartSink = {
    write: (p) => {
      assert.ok(!full, 'a write while the sink is full');
      assert.ok(!ended, 'a write after end');
      parts.push(Buffer.from(p));
      full = fullEvery > 0 && parts.length % fullEvery === 0;
      return !full;
    },
    whenDrained: (fn) => {
      drains++;
      waiting = fn;
      if (!manual) setImmediate(drainNow);
    },
    get over() {
      return false;
    },
    end: () => (ended = true),
  };
  return {
    target: {
      header: () => encodeHeader(header),
      begin: (bytes) => {
        assert.equal(declared, -1, 'begun twice');
        declared = bytes;
        return sink;
      },
    },
    parts,
    declared: () => declared,
    ended: () => ended,
    drains: () => drains,
    drainNow,
  };
}

/** Runs the sliced range and checks the parts against the size announced. */
async function sliced(st: MvccStore, r: RangeRequest, o: Parameters<typeof rangeSliced>[4] = {}, fullEvery = 0): Promise<unknown> {
  const c = collector(fullEvery);
  await rangeSliced(() => st, r, undefined, c.target, { clock: stepClock(), sliceMs: 5, ...o });
  assert.ok(c.ended(), 'the answer was ended');
  assert.equal(Buffer.concat(c.parts).length, c.declared());
  if (fullEvery > 0 && c.parts.length > fullEvery) assert.ok(c.drains() > 0);
  return decoded(c.parts);
}

function oneRound(st: MvccStore, r: RangeRequest): unknown {
  const expected = { header, ...applyRange(st, r) };
  const msg = RangeResponse().fromObject(expected);
  return RangeResponse().toObject(RangeResponse().decode(RangeResponse().encode(msg).finish()), { longs: String, bytes: String, defaults: true });
}

describe('api: sliced Range', () => {
  it('decodes to the one-pass answer and yields between slices (5 ms slices on a 1 ms-per-reading clock); waits when the sink is full', async () => {
    const st = storeOf(3 * RANGE_KEYS_PER_STEP);
    for (const r of [req(), req({ limit: 10 }), req({ keys_only: true }), req({ sort_order: 2, sort_target: 4 }), req({ count_only: true })]) {
      const clock = stepClock();
      assert.deepEqual(await sliced(st, r, { clock }), oneRound(st, r));
      if (!r.limit && !r.count_only) assert.ok(clock.yields >= 20, `yielded ${clock.yields} times`);
      assert.deepEqual(await sliced(st, r, {}, 3), oneRound(st, r));
    }
  });

  it('encodes spilled values read straight from the spill file, with values of every size (0 to 40 KiB)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-rangesliced-'));
    const st = new MvccStore();
    st.attachSpill(SpillFile.open(path.join(dir, 'spill')), 0);
    try {
      for (let i = 0; i < 3000; i++) {
        const txn = st.write();
        const len = i % 97 === 0 ? 0 : i % 211 === 0 ? 40_000 : (i * 37) % 3000;
        txn.put(Buffer.from(`key/${String(i).padStart(6, '0')}`), Buffer.alloc(len, 97 + (i % 26)), NO_LEASE);
        txn.end();
        while (st.spillStep()) {
          // everything goes to the spill file (budget 0)
        }
      }
      assert.ok(st.spillBytes.live > 1_000_000);
      for (const r of [req(), req({ keys_only: true }), req({ limit: 100 }), req({ sort_order: 1, sort_target: 4 })]) {
        assert.deepEqual(await sliced(st, r, { sliceMs: 2 }, 2), oneRound(st, r));
      }
    } finally {
      st.closeSpill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts over at the new head after a compaction passes the revision (revision 0), fails with Compacted for an explicit one', async () => {
    const st = storeOf(2 * RANGE_KEYS_PER_STEP);
    const compactOnFirstYield = (n: number) => {
      if (n !== 1) return;
      const txn = st.write();
      txn.put(Buffer.from('key/000001'), Buffer.from('after'), NO_LEASE);
      txn.end();
      st.compact(st.currentRevision);
    };
    // 1 ms slices: the first yield comes after the walk's first step.
    let headRevision = 0;
    const c = collector();
    const target = { ...c.target, header: (rev: number) => ((headRevision = rev), encodeHeader(header)) };
    await rangeSliced(() => st, req(), undefined, target, { clock: stepClock(compactOnFirstYield), sliceMs: 1 });
    assert.equal(headRevision, st.currentRevision);
    assert.equal((decoded(c.parts) as { kvs: { value: string }[] }).kvs[1]?.value, Buffer.from('after').toString('base64'));

    const st2 = storeOf(2 * RANGE_KEYS_PER_STEP);
    const rev = st2.currentRevision;
    const compact2 = (n: number) => {
      if (n !== 1) return;
      const txn = st2.write();
      txn.put(Buffer.from('x'), Buffer.from('y'), NO_LEASE);
      txn.end();
      st2.compact(st2.currentRevision);
    };
    await assert.rejects(rangeSliced(() => st2, req({ revision: rev }), undefined, collector().target, { clock: stepClock(compact2), sliceMs: 1 }), (e) => e === Errors.Compacted);
  });

  it('stops when abandoned, and refuses an answer above the size limit with its exact size', async () => {
    const st = storeOf(2 * RANGE_KEYS_PER_STEP);
    let gone = false;
    const c = collector();
    await rangeSliced(() => st, req(), undefined, c.target, { clock: stepClock(() => (gone = true)), sliceMs: 3, abandoned: () => gone });
    assert.equal(c.ended(), false);
    assert.equal(c.declared(), -1, 'nothing begun');

    const full = collector();
    await rangeSliced(() => st, req(), undefined, full.target, { clock: stepClock(), sliceMs: 3 });
    const size = full.declared();
    const small = collector();
    await assert.rejects(rangeSliced(() => st, req(), undefined, small.target, { clock: stepClock(), sliceMs: 3, responseBytesMax: size - 1 }), (e) => {
      assert.ok(e instanceof EtcdError);
      assert.equal(e.code, GrpcCode.RESOURCE_EXHAUSTED);
      assert.equal(e.message, `grpc: trying to send message larger than max (${size} vs. ${size - 1})`);
      return true;
    });
    assert.equal(small.declared(), -1, 'nothing sent');
    await rangeSliced(() => st, req(), undefined, collector().target, { clock: stepClock(), sliceMs: 3, responseBytesMax: size });
  });

  it('ends with Unavailable when the values move under an answer already partly sent (a snapshot install)', async () => {
    const st = storeOf(2 * RANGE_KEYS_PER_STEP);
    const c = collector(2, true);
    const tick = () => new Promise((r) => setImmediate(r));
    const p = rangeSliced(() => st, req(), undefined, c.target, { sliceMs: 5 });
    const failed = p.then(
      () => undefined,
      (e: unknown) => e,
    );
    for (let i = 0; i < 500 && c.drains() === 0; i++) await tick();
    assert.equal(c.drains(), 1, 'the answer waits for its client after its first parts');
    st.replaceWith(new MvccStore());
    c.drainNow();
    const err = await failed;
    assert.ok(err instanceof EtcdError && err === RANGE_INTERRUPTED, `got ${String(err)}`);
    assert.equal(err.code, GrpcCode.UNAVAILABLE);
    assert.equal(c.ended(), false);
  });

  it('takes its cost from the budget: a second answer waits while the first holds it, a third is refused past the queue, all given back', async () => {
    const st = storeOf(2 * RANGE_KEYS_PER_STEP);
    // Room for one answer's cost (at most its bytes + 16 per version), not two.
    const one = collector();
    await rangeSliced(() => st, req(), undefined, one.target, { clock: stepClock() });
    const budget = new RangeAnswerBudget(one.declared() + 16 * 2 * RANGE_KEYS_PER_STEP, 1, 60_000);
    // a's client reads only when told: a holds the budget meanwhile; b queues behind it, c is refused.
    const a = collector(1, true);
    const b = collector();
    const c = collector();
    const tick = () => new Promise((r) => setImmediate(r));
    const pa = rangeSliced(() => st, req(), undefined, a.target, { sliceMs: 5, budget });
    for (let i = 0; i < 500 && a.drains() === 0; i++) await tick();
    assert.equal(a.drains(), 1, 'the first answer waits for its client');
    assert.ok(budget.bytes > 0, 'the first answer holds its cost');
    const pb = rangeSliced(() => st, req(), undefined, b.target, { sliceMs: 5, budget });
    for (let i = 0; i < 500 && budget.waiting === 0; i++) await tick();
    assert.equal(budget.waiting, 1);
    assert.equal(b.declared(), -1, 'the second answer has not begun');
    await assert.rejects(rangeSliced(() => st, req(), undefined, c.target, { sliceMs: 5, budget }), /too many large range answers in flight/);
    assert.equal(budget.refused, 1);
    // a's client reads on, one part a turn.
    for (let i = 0; i < 10_000 && !a.ended(); i++) {
      a.drainNow();
      await tick();
    }
    await Promise.all([pa, pb]);
    assert.ok(a.ended() && b.ended());
    assert.equal(budget.waited, 1);
    assert.deepEqual(decoded(b.parts), oneRound(st, req()));
    assert.equal(budget.bytes, 0);
    assert.equal(budget.waiting, 0);
    // A refusal for size after admission gives the cost back too.
    await assert.rejects(rangeSliced(() => st, req(), undefined, collector().target, { sliceMs: 5, budget, responseBytesMax: 100 }), /larger than max/);
    assert.equal(budget.bytes, 0);
  });
});
