// The gateway's JSON layer without a server: the parser (exact 64-bit numbers, Go's error texts,
// streams of values) and the jsonpb mapping (names, defaults omitted, base64, enums).
import assert from 'node:assert/strict';
import path from 'node:path';
import protobuf from 'protobufjs';
import { JsonLimitError, JsonNumber, JsonStreamParser, JsonSyntaxError, parseJson, type JsonValue } from '../../src/http/json_parse';
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

  it('parses a stream of values fed in chunks, each value handed over when complete', () => {
    const got: JsonValue[] = [];
    const p = new JsonStreamParser({ valueBytesMax: 1000, arrayElementsMax: 10, single: false }, (v) => got.push(v));
    p.write(Buffer.from('{"a":1}\n{"b":[true,null]}{"c":"x'));
    assert.equal(got.length, 2);
    assert.deepEqual([...(got[1] as Map<string, unknown>).keys()], ['b']);
    assert.ok(p.inValue);
    assert.throws(() => p.end(), /unexpected EOF/);
    // A number at the end of a chunk may go on in the next one.
    const nums: JsonValue[] = [];
    const q = new JsonStreamParser({ valueBytesMax: 1000, arrayElementsMax: 10, single: false }, (v) => nums.push(v));
    q.write(Buffer.from('12'));
    q.write(Buffer.from('34 5'));
    q.end();
    assert.deepEqual(nums.map((n) => (n as JsonNumber).text), ['1234', '5']);
  });

  it('gives the same result however the text is cut, UTF-8 and escapes included', () => {
    const text = '{"k\\u00e9y":"v\\"\\u00e9\\n\u00e9\u4e2d\ud83d\ude00","n":[-1.5e3,0,{"x":false}],"z":null} ';
    const whole = parseJson(text);
    const bytes = Buffer.from(text, 'utf8');
    for (let cut = 0; cut <= bytes.length; cut++) {
      const out: JsonValue[] = [];
      const p = new JsonStreamParser({ valueBytesMax: 1000, arrayElementsMax: 10, single: true }, (v) => out.push(v));
      p.write(bytes.subarray(0, cut));
      p.write(bytes.subarray(cut));
      p.end();
      assert.deepEqual(out, [whole], `cut at ${cut}`);
    }
    const m = whole as Map<string, JsonValue>;
    assert.equal(m.get('k\u00e9y'), 'v"\u00e9\n\u00e9\u4e2d\ud83d\ude00');
  });

  it('scans each byte once: 3,000 one-byte chunks behind a 3 MB pending value stay cheap', () => {
    const p = new JsonStreamParser({ valueBytesMax: 8 << 20, arrayElementsMax: 10, single: false }, () => undefined);
    p.write(Buffer.from('{"key":"' + 'A'.repeat(3 << 20)));
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 3000; i++) p.write(Buffer.from('A'));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms < 500, `3000 one-byte chunks took ${ms} ms`);
  });

  it('refuses while reading: a value over its byte limit, a list over its element limit, a 21-digit number', () => {
    const limits = { valueBytesMax: 100, arrayElementsMax: 3, single: false };
    const p = new JsonStreamParser(limits, () => undefined);
    assert.throws(() => p.write(Buffer.from('{"key":"' + 'A'.repeat(200))), (e: unknown) => e instanceof JsonLimitError && e.limit === 'value-bytes');
    const q = new JsonStreamParser(limits, () => undefined);
    assert.throws(() => q.write(Buffer.from('{"compare":[{},{},{},{}')), (e: unknown) => e instanceof JsonLimitError && e.limit === 'array-elements');
    const r = new JsonStreamParser({ ...limits, valueBytesMax: 1 << 30 }, () => undefined);
    const t0 = Date.now();
    assert.throws(() => r.write(Buffer.from('{"revision":' + '1'.repeat(3 << 20))), (e: unknown) => e instanceof JsonLimitError && e.limit === 'number-digits');
    assert.ok(Date.now() - t0 < 500);
    // 20 digits (uint64's 18446744073709551615) is fine; whitespace between values is no value's.
    assert.equal((parseJson('18446744073709551615') as JsonNumber).text, '18446744073709551615');
    const s = new JsonStreamParser(limits, () => undefined);
    s.write(Buffer.from(' '.repeat(500) + '{}' + ' '.repeat(500)));
    s.end();
  });

  it('looks nothing up on a prototype: "__proto__", "constructor", "toString" are plain keys', () => {
    const v = parseJson('{"constructor":1,"toString":{"__proto__":2},"hasOwnProperty":3}') as Map<string, JsonValue>;
    assert.deepEqual([...v.keys()], ['constructor', 'toString', 'hasOwnProperty']);
    assert.equal(((v.get('toString') as Map<string, JsonValue>).get('__proto__') as JsonNumber).text, '2');
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
    // Prototype names are not enum values; a 3 MB digit string is refused before conversion.
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      assert.throws(() => messageIn(RangeRequest, parseJson(`{"sort_order":"${name}"}`)), /unknown value/);
    }
    const t0 = Date.now();
    assert.throws(() => messageIn(RangeRequest, parseJson(`{"revision":"${'1'.repeat(3 << 20)}"}`)), (e: Error) => /out of range/.test(e.message) && e.message.length < 300);
    assert.ok(Date.now() - t0 < 500);
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
