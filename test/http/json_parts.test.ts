// http/json_parts.ts: a message given in parts converts to the very JSON the gateway writes for
// the whole message (JSON.stringify(messageOut(...))), whether the parts are whole fields (a
// Range's slices, a repeated field spread over many parts) or split anywhere, even byte by byte
// (a Txn's nested answers); an empty message is {}.
import assert from 'node:assert/strict';
import path from 'node:path';
import protobuf from 'protobufjs';
import { messageOut } from '../../src/http/json_pb';
import { PartsToJson, completeFieldsEnd } from '../../src/http/json_parts';
import { PROTO_DIR } from '../../src/proto';

function rootOf(): protobuf.Root {
  const r = new protobuf.Root();
  r.resolvePath = (_o, t) => (path.isAbsolute(t) ? t : path.join(PROTO_DIR, t));
  r.loadSync(['etcdserverpb/rpc.proto'], { keepCase: true });
  r.resolveAll();
  return r;
}

const root = rootOf();
const RangeResponse = root.lookupType('etcdserverpb.RangeResponse');
const TxnResponse = root.lookupType('etcdserverpb.TxnResponse');
const KeyValue = root.lookupType('mvccpb.KeyValue');

const header = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: '1234', raft_term: '7' };
const kv = (i: number) => ({ key: Buffer.from(`key/${i}`), create_revision: String(i + 1), mod_revision: String(i + 2), version: String(1 + (i % 3)), value: Buffer.alloc(i % 50, 97 + (i % 26)), lease: i % 4 === 0 ? '7587862072345455001' : '0' });
const enc = (t: protobuf.Type, o: object) => Buffer.from(t.encode(t.fromObject(o)).finish());
const whole = (t: protobuf.Type, bytes: Buffer) => JSON.stringify(messageOut(t, t.decode(bytes)));

function convert(t: protobuf.Type, parts: Buffer[]): string {
  const c = new PartsToJson(t);
  let out = '';
  for (const p of parts) out += c.push(p);
  return out + c.end();
}

describe('gateway: a message in parts to JSON', () => {
  it('a Range answer in whole-field parts (header, kvs slices, more and count) is the whole answer\'s JSON', () => {
    const kvs = Array.from({ length: 100 }, (_, i) => kv(i));
    const all = enc(RangeResponse, { header, kvs, more: true, count: '100' });
    const head = enc(RangeResponse, { header });
    const tail = enc(RangeResponse, { more: true, count: '100' });
    const slices: Buffer[] = [];
    for (let i = 0; i < kvs.length; i += 7) slices.push(enc(RangeResponse, { kvs: kvs.slice(i, i + 7) }));
    assert.equal(Buffer.concat([head, ...slices, tail]).length, all.length);
    const expected = whole(RangeResponse, all);
    assert.equal(convert(RangeResponse, [head, ...slices, tail]), expected);
    assert.deepEqual(JSON.parse(convert(RangeResponse, [head, ...slices, tail])), JSON.parse(expected));
    // Without more/count, and with no kvs at all.
    const noTail = enc(RangeResponse, { header, kvs });
    assert.equal(convert(RangeResponse, [head, ...slices]), whole(RangeResponse, noTail));
    assert.equal(convert(RangeResponse, [head]), whole(RangeResponse, head));
    assert.equal(convert(RangeResponse, []), '{}');
  });

  it('parts split anywhere (byte by byte, or in uneven chunks) give the same JSON; a Txn\'s nested range too', () => {
    const txn = {
      header,
      succeeded: true,
      responses: [{ response_range: { header: { revision: '1234' }, kvs: Array.from({ length: 40 }, (_, i) => kv(i)), count: '40' } }, { response_range: { header: { revision: '1234' }, count: '0' } }],
    };
    const all = enc(TxnResponse, txn);
    const expected = whole(TxnResponse, all);
    const bytewise = [...all].map((b) => Buffer.from([b]));
    assert.equal(convert(TxnResponse, bytewise), expected);
    for (const size of [3, 17, 64, 1000]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < all.length; i += size) chunks.push(all.subarray(i, i + size));
      assert.equal(convert(TxnResponse, chunks), expected, `chunks of ${size}`);
    }
  });

  it('a message ending within a field is refused; fields are found only when complete', () => {
    const one = enc(KeyValue, kv(5));
    assert.equal(completeFieldsEnd(one), one.length);
    assert.ok(completeFieldsEnd(one.subarray(0, one.length - 1)) < one.length - 1);
    const c = new PartsToJson(RangeResponse);
    c.push(enc(RangeResponse, { header }).subarray(0, 5));
    assert.throws(() => c.end(), /ended within a field/);
  });
});
