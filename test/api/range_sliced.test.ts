// api/range_sliced.ts: a large Range served in slices. Time comes from a step counter (a fake
// clock), so the test sees the yields without depending on the machine's speed: the answer's
// bytes decode to what the one-pass range encodes, the range yields between slices, starts over
// after a compaction (at the new head for revision 0, with etcd's Compacted for a revision that
// was compacted), stops when abandoned, and refuses an answer above the size limit with grpc-go's
// error.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SpillFile } from '../../src/storage/spill_file';
import { MvccStore, NO_LEASE } from '../../src/mvcc';
import { protoRoot } from '../../src/proto';
import type { RangeRequest } from '../../src/proto/types';
import { applyRange } from '../../src/server/kv_ops';
import { encodedRangeResponse, rangeSliced, RANGE_KEYS_PER_STEP } from '../../src/api/range_sliced';
import type { SliceClock } from '../../src/util/slice_clock';
import { encodeHeader } from '../../src/api/watch_encoding';
import { Errors, EtcdError, GrpcCode } from '../../src/util/errors';

/** A clock that advances 1 ms per reading and counts yields; `onYield` runs at each. */
function stepClock(onYield: (n: number) => void = () => undefined): SliceClock & { yields: number } {
  let t = 0;
  const c = {
    yields: 0,
    now: () => t++,
    yieldToLoop: async () => {
      c.yields++;
      onYield(c.yields);
      await Promise.resolve();
    },
  };
  return c;
}

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

function oneRound(st: MvccStore, r: RangeRequest): unknown {
  const expected = { header, ...applyRange(st, r) };
  const msg = RangeResponse().fromObject(expected);
  return RangeResponse().toObject(RangeResponse().decode(RangeResponse().encode(msg).finish()), { longs: String, bytes: String, defaults: true });
}

describe('api: sliced Range', () => {
  it('decodes to the one-pass answer and yields between slices (5 ms slices on a 1 ms-per-reading clock)', async () => {
    const st = storeOf(3 * RANGE_KEYS_PER_STEP);
    for (const r of [req(), req({ limit: 10 }), req({ keys_only: true }), req({ sort_order: 2, sort_target: 4 })]) {
      const clock = stepClock();
      const ans = await rangeSliced(() => st, r, undefined, true, { clock, sliceMs: 5 });
      assert.ok(ans);
      const parts = encodedRangeResponse(encodeHeader(header), ans, 2 ** 31 - 1);
      assert.ok(Array.isArray(parts));
      assert.deepEqual(decoded(parts as unknown as Buffer[]), oneRound(st, r));
      if (!r.limit) assert.ok(clock.yields >= 20, `yielded ${clock.yields} times`);
      // The gateway's shape (objects) is the same answer.
      const objs = await rangeSliced(() => st, r, undefined, false, { clock: stepClock(), sliceMs: 5 });
      assert.deepEqual(objs?.kvs, applyRange(st, r).kvs);
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
      for (const r of [req(), req({ keys_only: true }), req({ limit: 100 })]) {
        const ans = await rangeSliced(() => st, r, undefined, true, { clock: stepClock(), sliceMs: 2 });
        const parts = encodedRangeResponse(encodeHeader(header), ans!, 2 ** 31 - 1) as unknown as Buffer[];
        assert.deepEqual(decoded(parts), oneRound(st, r));
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
    const ans = await rangeSliced(() => st, req(), undefined, false, { clock: stepClock(compactOnFirstYield), sliceMs: 1 });
    assert.equal(ans?.headRevision, st.currentRevision);
    assert.equal(ans?.kvs?.[1]?.value.toString(), 'after');

    const st2 = storeOf(2 * RANGE_KEYS_PER_STEP);
    const rev = st2.currentRevision;
    const compact2 = (n: number) => {
      if (n !== 1) return;
      const txn = st2.write();
      txn.put(Buffer.from('x'), Buffer.from('y'), NO_LEASE);
      txn.end();
      st2.compact(st2.currentRevision);
    };
    await assert.rejects(rangeSliced(() => st2, req({ revision: rev }), undefined, false, { clock: stepClock(compact2), sliceMs: 1 }), (e) => e === Errors.Compacted);
  });

  it('stops when abandoned, and refuses an answer above the size limit with its exact size', async () => {
    const st = storeOf(2 * RANGE_KEYS_PER_STEP);
    let gone = false;
    const ans = await rangeSliced(() => st, req(), undefined, true, { clock: stepClock(() => (gone = true)), sliceMs: 3, abandoned: () => gone });
    assert.equal(ans, undefined);

    const full = await rangeSliced(() => st, req(), undefined, true, { clock: stepClock(), sliceMs: 3 });
    const parts = encodedRangeResponse(encodeHeader(header), full!, 2 ** 31 - 1) as unknown as Buffer[];
    const size = Buffer.concat(parts).length;
    const small = await rangeSliced(() => st, req(), undefined, true, { clock: stepClock(), sliceMs: 3, responseBytesMax: 1000 });
    assert.deepEqual(small?.parts, [], 'nothing kept once over the limit');
    const err = encodedRangeResponse(encodeHeader(header), small!, size - 1);
    assert.ok(err instanceof EtcdError);
    assert.equal(err.code, GrpcCode.RESOURCE_EXHAUSTED);
    assert.equal(err.message, `grpc: trying to send message larger than max (${size} vs. ${size - 1})`);
    assert.ok(Array.isArray(encodedRangeResponse(encodeHeader(header), full!, size)));
  });
});
