// The apply path is deterministic and atomic: the same entries give the same state on every
// member, and a request that fails applies nothing.
import assert from 'node:assert/strict';
import { MvccStore } from '../../src/mvcc';
import { Applier } from '../../src/server/applier';
import { encodeRequest, type InternalRequestBody } from '../../src/server/codec';
import { NO_LEASES } from '../../src/server/kv_ops';
import { Errors } from '../../src/util/errors';
import type { PutRequest, RequestOp } from '../../src/proto/types';

const B = (s: string) => Buffer.from(s);
const putReq = (k: string, v: string, extra: Partial<PutRequest> = {}): PutRequest => ({
  key: B(k), value: B(v), lease: '0', prev_kv: false, ignore_value: false, ignore_lease: false, ...extra,
});
const putOp = (k: string, v: string, extra: Partial<PutRequest> = {}): RequestOp => ({ request_put: putReq(k, v, extra) });

function entries(bodies: InternalRequestBody[]): Uint8Array[] {
  return bodies.map((b, i) => encodeRequest({ id: String(i + 1), ...b }));
}

describe('apply path', () => {
  it('the same entries give the same state and results on two members', () => {
    const bodies: InternalRequestBody[] = [];
    for (let i = 0; i < 200; i++) {
      const k = `k${i % 17}`;
      if (i % 7 === 3) bodies.push({ delete_range: { key: B('k1'), range_end: B('k5'), prev_kv: true } });
      else if (i % 11 === 5) bodies.push({ txn: { compare: [{ result: 0, target: 0, key: B(k), range_end: B(''), target_union: 'version', version: 1 }], success: [putOp(k, 'txn')], failure: [putOp(`f${i}`, 'x')] } });
      else bodies.push({ put: putReq(k, `v${i}`, { prev_kv: true }) });
    }
    const data = entries(bodies);
    const run = () => {
      const store = new MvccStore();
      const a = new Applier(store, NO_LEASES);
      const results = data.map((d, i) => a.apply(i + 1, d));
      return { hash: store.hashKV().hash, rev: store.currentRevision, results: JSON.stringify(results) };
    };
    const x = run();
    const y = run();
    assert.equal(x.hash, y.hash);
    assert.equal(x.rev, y.rev);
    assert.equal(x.results, y.results);
    assert.ok(x.rev > 150);
  });

  it('a txn whose taken branch would fail writes nothing and gets the error', () => {
    const store = new MvccStore();
    const a = new Applier(store, NO_LEASES);
    const data = entries([
      { put: putReq('a', '1') },
      { txn: { compare: [], success: [putOp('b', '2'), putOp('c', '3', { lease: '42' })], failure: [] } },
    ]);
    a.apply(1, data[0]!);
    const rev = store.currentRevision;
    const r = a.apply(2, data[1]!);
    assert.equal(r.error, Errors.LeaseNotFound);
    assert.equal(store.currentRevision, rev);
    assert.equal(store.range(B('b'), undefined).kvs.length, 0);
  });

  it('a txn reads its own writes; nested txn compares see the state before the txn', () => {
    const store = new MvccStore();
    const a = new Applier(store, NO_LEASES);
    const data = entries([
      {
        txn: {
          compare: [],
          success: [
            putOp('x', '1'),
            { request_range: { key: B('x'), range_end: B(''), limit: 0, revision: 0, sort_order: 0, sort_target: 0, serializable: false, keys_only: false, count_only: false, min_mod_revision: 0, max_mod_revision: 0, min_create_revision: 0, max_create_revision: 0 } },
            { request_txn: { compare: [{ result: 0, target: 0, key: B('x'), range_end: B(''), target_union: 'version', version: 0 }], success: [putOp('y', 'before')], failure: [putOp('y', 'after')] } },
          ],
          failure: [],
        },
      },
    ]);
    const r = a.apply(1, data[0]!);
    const resp = r.response as { responses: { response_range?: { kvs: { value: Buffer }[] } }[] };
    assert.equal(resp.responses[1]!.response_range!.kvs[0]!.value.toString(), '1');
    assert.equal(store.range(B('y'), undefined).kvs[0]!.value.toString(), 'before');
    assert.equal(store.currentRevision, 2, 'one revision for the whole txn');
  });

  it('entries must be applied in index order', () => {
    const a = new Applier(new MvccStore(), NO_LEASES);
    assert.throws(() => a.apply(2, entries([{ put: putReq('a', '1') }])[0]!), /applied in order/);
  });
});
