// api/txn_sliced.ts: a read-only Txn with large ranges served in slices. Its bytes decode to what
// the one-pass txn answers (several ranges, a nested txn, the failure branch, keys-only, limits,
// a range at an older revision), every range reads at the revision of the turn the plan was made
// even though writes land between slices, a compaction beyond that revision before the first byte
// starts it over at the new head, and a small txn is recognised as one.
import assert from 'node:assert/strict';
import { MvccStore, NO_LEASE } from '../../src/mvcc';
import { protoRoot } from '../../src/proto';
import type { RangeRequest, ResponseHeader, TxnRequest } from '../../src/proto/types';
import { applyReadOnlyTxn, fillTxnHeaders } from '../../src/server/kv_ops';
import { planIsSmall, planTxn, txnSliced, type TxnAnswerTarget } from '../../src/api/txn_sliced';
import type { PartSink } from '../../src/api/range_sliced';
import { RANGE_KEYS_PER_STEP } from '../../src/api/range_sliced';
import { stepClock } from './step_clock';
import { encodeHeader } from '../../src/api/watch_encoding';

function put(st: MvccStore, key: string, value: string): void {
  const txn = st.write();
  txn.put(Buffer.from(key), Buffer.from(value), NO_LEASE);
  txn.end();
}

function storeOf(keys: number): MvccStore {
  const st = new MvccStore();
  for (let i = 0; i < keys; i++) put(st, `key/${String(i).padStart(6, '0')}`, `value ${i} `.repeat(1 + (i % 5)));
  return st;
}

const TxnResponse = () => protoRoot().lookupType('etcdserverpb.TxnResponse');
const header = (rev: number): ResponseHeader => ({ cluster_id: '1', member_id: '2', revision: String(rev), raft_term: '4' }) as unknown as ResponseHeader;
const range = (o: Partial<RangeRequest> = {}) => ({ request_range: { key: Buffer.from('key/'), range_end: Buffer.from('key0'), ...o } as RangeRequest });
const toObj = (bytes: Uint8Array) => TxnResponse().toObject(TxnResponse().decode(bytes), { longs: String, bytes: String, defaults: true });

/** The one-pass answer, encoded and decoded the same way. */
function oneRound(st: MvccStore, t: TxnRequest): unknown {
  const resp = applyReadOnlyTxn(st, t);
  fillTxnHeaders(resp, header(st.currentRevision));
  return toObj(TxnResponse().encode(TxnResponse().fromObject(resp)).finish());
}

async function sliced(st: MvccStore, t: TxnRequest, onYield?: (n: number) => void): Promise<{ obj: unknown; yields: number }> {
  const parts: Buffer[] = [];
  let declared = -1;
  let ended = false;
  const sink: PartSink = {
    write: (p) => (parts.push(Buffer.from(p)), parts.length % 5 !== 0),
    whenDrained: (fn) => setImmediate(fn),
    get over() {
      return false;
    },
    end: () => (ended = true),
  };
  const target: TxnAnswerTarget = {
    header: (rev, nested) => encodeHeader(nested ? ({ revision: String(rev) } as unknown as ResponseHeader) : header(rev)),
    begin: (bytes) => ((declared = bytes), sink),
  };
  const clock = stepClock(onYield);
  await txnSliced(() => st, t, planTxn(st, t), target, { clock, sliceMs: 5 });
  assert.ok(ended);
  assert.equal(Buffer.concat(parts).length, declared);
  return { obj: toObj(Buffer.concat(parts)), yields: clock.yields };
}

describe('api: sliced read-only Txn', () => {
  it('decodes to the one-pass answer: several ranges, a nested txn, either branch, keys-only, limit, an older revision', async () => {
    const st = storeOf(3 * RANGE_KEYS_PER_STEP);
    const old = st.currentRevision - 100;
    const cmpTrue = { key: Buffer.from('key/000001'), target: 0, result: 0, version: '1' }; // version == 1
    const cases: TxnRequest[] = [
      { compare: [cmpTrue], success: [range(), range({ keys_only: true, limit: 50 })], failure: [] },
      { compare: [{ ...cmpTrue, version: '9' }], success: [range()], failure: [range({ revision: old }), { request_txn: { compare: [], success: [range({ count_only: true }), range({ sort_order: 2, sort_target: 4, limit: 3000 })], failure: [] } }] },
    ] as unknown as TxnRequest[];
    for (const t of cases) {
      assert.equal(planIsSmall(planTxn(st, t)), false);
      const { obj, yields } = await sliced(st, t);
      assert.deepEqual(obj, oneRound(st, t));
      assert.ok(yields >= 10, `yielded ${yields} times`);
    }
    const small = { compare: [], success: [range({ key: Buffer.from('key/000001'), range_end: Buffer.from('key/000009') })], failure: [] } as unknown as TxnRequest;
    assert.equal(planIsSmall(planTxn(st, small)), true);
  });

  it('every range reads at the plan\'s revision while writes land between slices; a compaction past it starts over at the new head', async () => {
    const st = storeOf(2 * RANGE_KEYS_PER_STEP);
    const t = { compare: [], success: [range(), range()], failure: [] } as unknown as TxnRequest;
    const expected = oneRound(st, t);
    const { obj } = await sliced(st, t, (n) => put(st, `key/${String(n % 100).padStart(6, '0')}`, `overwritten ${n}`));
    assert.deepEqual(obj, expected);

    const st2 = storeOf(2 * RANGE_KEYS_PER_STEP);
    const compactOnce = (n: number) => {
      if (n !== 1) return;
      put(st2, 'key/000001', 'after');
      st2.compact(st2.currentRevision);
    };
    const { obj: again } = await sliced(st2, t, compactOnce);
    assert.deepEqual(again, oneRound(st2, t));
    assert.equal((again as { header: { revision: string } }).header.revision, String(st2.currentRevision));
  });
});
