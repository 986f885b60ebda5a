// The gateway's JSON layer without a server: the parser (exact 64-bit numbers, Go's error texts,
// streams of values) and the jsonpb mapping (names, defaults omitted, base64, enums).
import assert from 'node:assert/strict';
import path from 'node:path';
import protobuf from 'protobufjs';
import { JsonIncomplete, JsonNumber, JsonSyntaxError, parseJson, parseNext } from '../../src/http/json_parse';
import { JsonMappingError, decodeBase64Strict, messageIn, messageOut } from '../../src/http/json_pb';
import { PROTO_DIR } from '../../src/proto';
import { GATEWAY_ROUTES, httpStatusOf } from '../../src/http/routes';

function rootOf(): protobuf.Root {
  const r = new protobuf.Root();
  r.resolvePath = (_o, t) => (path.isAbsolute(t) ? t : path.join(PROTO_DIR, t));
  r.loadSync(['etcdserverpb/rpc.proto'], { keepCase: true });
  r.resolveAll();
  return r;
}

describe('gateway JSON parser', () => {
  it('keeps the text of numbers, so a 64-bit lease ID is not rounded', () => {
    const v = parseJson('{"ID": 7587862072345455001}') as Map<string, unknown>;
    assert.ok(v.get('ID') instanceof JsonNumber);
    assert.equal((v.get('ID') as JsonNumber).text, '7587862072345455001');
  });

  it('answers malformed JSON with Go encoding/json messages', () => {
    assert.throws(() => parseJson('{bad'), /invalid character 'b' looking for beginning of object key string/);
    assert.throws(() => parseJson('{"a" 1}'), /invalid character '1' after object key/);
    assert.throws(() => parseJson('{"a":1 "b":2}'), /after object key:value pair/);
    assert.throws(() => parseJson('{"a":'), /unexpected EOF/);
    assert.throws(() => parseJson('{} x'), /after top-level value/);
    assert.throws(() => parseJson('"\u0001"'), JsonSyntaxError);
    assert.throws(() => parseJson('['.repeat(100) + ']'.repeat(100)), /max depth/);
  });

  it('treats "__proto__" as an ordinary key', () => {
    const v = parseJson('{"__proto__": {"x": true}}') as Map<string, unknown>;
    assert.ok(v.has('__proto__'));
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });

  it('parses a stream of values and reports a cut-off value as incomplete', () => {
    const text = '{"a":1}\n{"b":[true,null]}{"c":"x';
    const first = parseNext(text, 0, false)!;
    const second = parseNext(text, first.end, false)!;
    assert.deepEqual([...(second.value as Map<string, unknown>).keys()], ['b']);
    assert.throws(() => parseNext(text, second.end, false), JsonIncomplete);
    assert.throws(() => parseNext(text, second.end, true), /unexpected EOF/);
    assert.equal(parseNext('   \n', 0, true), undefined);
    // A number at the end of a chunk may go on in the next one.
    assert.throws(() => parseNext('12', 0, false), JsonIncomplete);
    assert.equal((parseNext('12', 0, true)!.value as JsonNumber).text, '12');
  });
});

describe('gateway jsonpb mapping', () => {
  const root = rootOf();
  const RangeRequest = root.lookupType('etcdserverpb.RangeRequest');
  const RangeResponse = root.lookupType('etcdserverpb.RangeResponse');
  const TxnRequest = root.lookupType('etcdserverpb.TxnRequest');
  const TxnResponse = root.lookupType('etcdserverpb.TxnResponse');
  const LeaseGrantRequest = root.lookupType('etcdserverpb.LeaseGrantRequest');

  it('accepts proto and lowerCamelCase names, int64 as number or string, enums by name or number', () => {
    const m = messageIn(RangeRequest, parseJson('{"key":"Zm9v","range_end":"Zm9w","sortOrder":"DESCEND","sort_target":2,"limit":"10","keysOnly":true,"unknown":1}'));
    assert.deepEqual(m.key, Buffer.from('foo'));
    assert.deepEqual(m.range_end, Buffer.from('fop'));
    assert.equal(m.sort_order, 2);
    assert.equal(m.sort_target, 2);
    assert.equal(m.limit, '10');
    assert.equal(m.keys_only, true);
    assert.ok(!('unknown' in m));
  });

  it('refuses wrong types, bad base64, out-of-range integers and unknown enum names', () => {
    assert.throws(() => messageIn(RangeRequest, parseJson('{"key":123}')), JsonMappingError);
    assert.throws(() => messageIn(RangeRequest, parseJson('{"key":"!!!"}')), /illegal base64 data at input byte 0/);
    assert.throws(() => messageIn(RangeRequest, parseJson('{"key":"YQ="}')), /illegal base64/);
    assert.throws(() => messageIn(RangeRequest, parseJson('{"limit":1.5}')), /not an integer/);
    assert.throws(() => messageIn(RangeRequest, parseJson('{"limit":"9223372036854775808"}')), /out of range/);
    assert.throws(() => messageIn(RangeRequest, parseJson('{"sort_order":"SIDEWAYS"}')), /unknown value "SIDEWAYS"/);
    assert.throws(() => messageIn(RangeRequest, parseJson('[]')), /cannot unmarshal array/);
    assert.throws(() => messageIn(TxnRequest, parseJson('{"compare":{}}')), /a list/);
    assert.throws(() => messageIn(LeaseGrantRequest, parseJson('{"ID":"18446744073709551615"}')), /out of range/);
    assert.equal(messageIn(LeaseGrantRequest, parseJson('{"ID":9223372036854775807}')).ID, '9223372036854775807');
  });

  it('strict base64 as Go: padding required, newlines ignored', () => {
    assert.deepEqual(decodeBase64Strict('YWJj\nZA==', 'k'), Buffer.from('abcd'));
    assert.throws(() => decodeBase64Strict('YWJjZA', 'k'), /illegal base64/);
    assert.throws(() => decodeBase64Strict('YW=j', 'k'), /illegal base64/);
    assert.deepEqual(decodeBase64Strict('', 'k'), Buffer.alloc(0));
  });

  it('writes int64 as strings, bytes as base64, omits defaults, keeps set messages and oneofs', () => {
    const resp = RangeResponse.decode(
      RangeResponse.encode(RangeResponse.fromObject({ header: { cluster_id: '1', member_id: '2', revision: '3', raft_term: '0' }, kvs: [{ key: Buffer.from('a'), version: '1', lease: '0', value: Buffer.alloc(0) }], more: false, count: '1' })).finish(),
    );
    assert.deepEqual(messageOut(RangeResponse, resp), { header: { cluster_id: '1', member_id: '2', revision: '3' }, kvs: [{ key: 'YQ==', version: '1' }], count: '1' });
    const txn = TxnResponse.decode(TxnResponse.encode(TxnResponse.fromObject({ succeeded: true, responses: [{ response_txn: { header: {} } }] })).finish());
    assert.deepEqual(messageOut(TxnResponse, txn), { succeeded: true, responses: [{ response_txn: { header: {} } }] });
  });

  it('maps every gRPC code to grpc-gateway v1 HTTP statuses', () => {
    assert.equal(httpStatusOf(3), 400);
    assert.equal(httpStatusOf(5), 404);
    assert.equal(httpStatusOf(9), 412);
    assert.equal(httpStatusOf(11), 400);
    assert.equal(httpStatusOf(12), 501);
    assert.equal(httpStatusOf(14), 503);
    assert.equal(httpStatusOf(16), 401);
    assert.equal(httpStatusOf(99), 500);
    assert.equal(GATEWAY_ROUTES.get('/v3/kv/lease/revoke')?.method, 'LeaseRevoke');
  });
});
