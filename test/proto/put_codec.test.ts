// The hand-written put codecs (src/proto/put_codec.ts) against protobufjs with the CONVERSION
// options: equal objects, equal bytes, or `undefined` (the caller then uses protobufjs) — on
// generated messages, edge values of every int64, and malformed input.
import assert from 'node:assert/strict';
import type protobuf from 'protobufjs';
import { CONVERSION, protoRoot, serviceDefinition } from '../../src/proto';
import { decodePutEntry, decodePutRequest, encodePutEntry, encodePutResponse } from '../../src/proto/put_codec';
import { decodeRequest, encodeRequest, type InternalRequest } from '../../src/server/codec';
import { Rng } from '../../src/util/rng';

const root = protoRoot();
const PutRequestT = root.lookupType('etcdserverpb.PutRequest');
const PutResponseT = root.lookupType('etcdserverpb.PutResponse');
const EntryT = root.lookupType('quorumkvpb.InternalRequest');

const pbDecode = (t: protobuf.Type, b: Buffer): unknown => t.toObject(t.decode(b), CONVERSION);
const pbEncodeFrom = (t: protobuf.Type, v: object): Buffer => Buffer.from(t.encode(t.fromObject(v)).finish());
const pbEncode = (t: protobuf.Type, v: object): Buffer => Buffer.from(t.encode(v as protobuf.Message).finish());

const INT64_EDGES = ['0', '1', '127', '128', '16383', '16384', '2147483647', '2147483648', '4294967295', '4294967296', '9007199254740991', '9007199254740992', '9223372036854775807', '-1', '-9223372036854775808', '-4294967296'];
const UINT64_EDGES = ['0', '1', '127', '128', '4294967295', '4294967296', '9007199254740993', '9223372036854775807', '9223372036854775808', '18446744073709551615'];

function bytes(rng: Rng, max: number): Buffer {
  const n = rng.chance(0.1) ? 0 : rng.int(max + 1);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(256);
  return b;
}

function int64(rng: Rng, edges: string[]): string | number {
  const s = rng.pick(edges);
  return rng.chance(0.3) && Number.isSafeInteger(Number(s)) && Number(s) >= 0 ? Number(s) : s;
}

function randomPut(rng: Rng): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  if (rng.chance(0.9)) p.key = bytes(rng, 40);
  if (rng.chance(0.8)) p.value = bytes(rng, rng.chance(0.1) ? 70000 : 300);
  if (rng.chance(0.5)) p.lease = rng.pick(INT64_EDGES);
  if (rng.chance(0.5)) p.prev_kv = rng.chance(0.5);
  if (rng.chance(0.3)) p.ignore_value = rng.chance(0.5);
  if (rng.chance(0.3)) p.ignore_lease = rng.chance(0.5);
  return p;
}

describe('proto/put_codec: hand-written put codecs agree with protobufjs', () => {
  it('decodePutRequest gives decode + toObject of generated requests', () => {
    const rng = new Rng(20);
    for (let i = 0; i < 2000; i++) {
      const b = pbEncodeFrom(PutRequestT, randomPut(rng));
      assert.deepStrictEqual(decodePutRequest(b), pbDecode(PutRequestT, b), b.toString('hex'));
    }
  });

  it('decodePutRequest reads every int64 lease as protobufjs does, and repeated fields last-wins', () => {
    for (const lease of INT64_EDGES) {
      const b = pbEncodeFrom(PutRequestT, { key: Buffer.from('k'), lease });
      const got = decodePutRequest(b);
      assert.ok(got);
      assert.equal(got.lease, lease);
      assert.deepStrictEqual(got, pbDecode(PutRequestT, b));
    }
    const twice = Buffer.concat([pbEncodeFrom(PutRequestT, { key: Buffer.from('a'), lease: '5' }), pbEncodeFrom(PutRequestT, { key: Buffer.from('bb'), lease: '7' })]);
    assert.deepStrictEqual(decodePutRequest(twice), pbDecode(PutRequestT, twice));
  });

  it('decodePutRequest returns views of the input, as protobufjs does', () => {
    const b = pbEncodeFrom(PutRequestT, { key: Buffer.from('key'), value: Buffer.from('value') });
    const got = decodePutRequest(b)!;
    assert.equal(got.key.buffer, b.buffer);
    assert.equal(got.value.buffer, b.buffer);
  });

  it('decodePutRequest leaves unknown fields, other wire types and truncated input to protobufjs', () => {
    const ok = pbEncodeFrom(PutRequestT, { key: Buffer.from('k'), value: Buffer.from('v') });
    assert.equal(decodePutRequest(Buffer.concat([ok, Buffer.from([0x38, 0x01])])), undefined); // field 7
    assert.equal(decodePutRequest(Buffer.from([0x0d, 1, 2, 3, 4])), undefined); // key as fixed32
    assert.equal(decodePutRequest(Buffer.from([0x1a, 0x01, 0x00])), undefined); // lease as bytes
    assert.equal(decodePutRequest(ok.subarray(0, ok.length - 1)), undefined); // value cut short
    assert.equal(decodePutRequest(Buffer.from([0x18, 0xff])), undefined); // varint cut short
    assert.equal(decodePutRequest(Buffer.from([0x20, 0xff, 0xff, 0xff, 0xff, 0x7f])), undefined); // bool beyond 32 bits
    assert.deepStrictEqual(decodePutRequest(Buffer.alloc(0)), pbDecode(PutRequestT, Buffer.alloc(0)));
    // The member's deserializer still answers these (protobufjs's way: a value or its error).
    const des = serviceDefinition('etcdserverpb.KV').Put!.requestDeserialize;
    assert.deepStrictEqual(des(Buffer.concat([ok, Buffer.from([0x38, 0x01])])), pbDecode(PutRequestT, ok));
    assert.throws(() => des(ok.subarray(0, ok.length - 1)));
  });

  it('encodePutResponse writes the bytes of fromObject + encode', () => {
    const rng = new Rng(21);
    const idForms = (s: string): unknown[] => {
      const big = BigInt.asUintN(64, BigInt(s));
      const low = Number(big & 0xffffffffn) | 0;
      const high = Number(big >> 32n) | 0;
      return [s, { low, high, unsigned: true }, ...(Number.isSafeInteger(Number(s)) ? [Number(s)] : [])];
    };
    for (let i = 0; i < 2000; i++) {
      const v: Record<string, unknown> = {};
      if (rng.chance(0.95)) {
        v.header = {
          cluster_id: rng.pick(idForms(rng.pick(UINT64_EDGES))),
          member_id: rng.pick(idForms(rng.pick(UINT64_EDGES))),
          revision: int64(rng, INT64_EDGES.filter((s) => !s.startsWith('-'))),
          raft_term: int64(rng, UINT64_EDGES),
        };
      }
      if (rng.chance(0.3)) {
        v.prev_kv = { key: bytes(rng, 30), create_revision: int64(rng, INT64_EDGES), mod_revision: int64(rng, INT64_EDGES), version: int64(rng, INT64_EDGES), value: bytes(rng, 300), lease: int64(rng, INT64_EDGES) };
      } else if (rng.chance(0.5)) v.prev_kv = null;
      const want = pbEncodeFrom(PutResponseT, v);
      const got = encodePutResponse(v);
      // Negative or oversized int64s are left to protobufjs; anything else is written here.
      if (got === undefined) assert.ok(JSON.stringify(v, (_k, x: unknown) => (Buffer.isBuffer(x) ? '' : x)).includes('"-'), JSON.stringify(v));
      else assert.deepStrictEqual(got, want, JSON.stringify(v));
    }
    assert.deepStrictEqual(encodePutResponse({}), pbEncodeFrom(PutResponseT, {}));
    assert.equal(encodePutResponse({ header: 'x' }), undefined);
    assert.equal(encodePutResponse({ prev_kv: { key: 'a string' } }), undefined);
    assert.equal(encodePutResponse([]), undefined);
    const ser = serviceDefinition('etcdserverpb.KV').Put!.responseSerialize;
    assert.throws(() => ser({ header: 'x' }));
  });

  it('encodePutEntry writes the bytes of encode, and decodePutEntry reads them back as decode + toObject', () => {
    const rng = new Rng(22);
    for (let i = 0; i < 2000; i++) {
      const put = pbDecode(PutRequestT, pbEncodeFrom(PutRequestT, randomPut(rng))) as Record<string, unknown>;
      const req: Record<string, unknown> = { id: rng.pick(UINT64_EDGES.slice(1)) };
      if (rng.chance(0.5)) req.header = { username: rng.pick(['', 'root', 'usér', 'x'.repeat(200)]), auth_revision: rng.pick(UINT64_EDGES) };
      req.put = put;
      const want = pbEncode(EntryT, req);
      const got = encodePutEntry(req);
      // A negative lease is left to protobufjs; anything else is written here.
      if (got === undefined) assert.ok(String(put.lease).startsWith('-'), JSON.stringify(req));
      else assert.deepStrictEqual(got, want, JSON.stringify(req));
      assert.deepStrictEqual(Buffer.from(encodeRequest(req as unknown as InternalRequest)), want);
      assert.deepStrictEqual(decodePutEntry(want), pbDecode(EntryT, want));
      // Through server/codec as the server uses it.
      assert.deepStrictEqual(decodeRequest(encodeRequest(req as unknown as InternalRequest)), pbDecode(EntryT, want));
    }
  });

  it('entries other than a plain put go through protobufjs', () => {
    const put = { key: Buffer.from('k'), value: Buffer.from('v'), lease: '0', prev_kv: false, ignore_value: false, ignore_lease: false };
    assert.equal(encodePutEntry({ id: '5', put, txn: {} } as never), undefined);
    assert.equal(encodePutEntry({ id: '5' }), undefined);
    assert.equal(encodePutEntry({ id: '-5', put }), undefined);
    const del = pbEncode(EntryT, { id: '9', delete_range: { key: Buffer.from('k') } });
    assert.equal(decodePutEntry(del), undefined);
    assert.deepStrictEqual(decodeRequest(del), pbDecode(EntryT, del));
    const bare = pbEncode(EntryT, { id: '9' });
    assert.equal(decodePutEntry(bare), undefined);
    assert.deepStrictEqual(decodeRequest(bare), pbDecode(EntryT, bare));
    const txn = { id: '7', txn: { compare: [], success: [{ request_put: put }], failure: [] } };
    assert.deepStrictEqual(decodeRequest(encodeRequest(txn as unknown as InternalRequest)), pbDecode(EntryT, pbEncode(EntryT, txn)));
  });
});
