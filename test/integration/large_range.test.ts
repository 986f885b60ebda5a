// A Range over many spilled values (api/range_sliced.ts) on a real member: every key comes back
// with its value as of the range's revision, although puts to the same keys are served while the
// range is read (the member's event loop is not held by it: before, one range of this size held it
// for seconds and the puts waited); the JSON gateway gives the same answer; Compact with physical
// waits for the in-memory and backend cleanup and a read below the point fails as etcd's does.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions, protoRoot } from '../../src/proto';
import { startServer, type ServerProcess } from './harness';

const KEYS = 12_000;
const VALUE_BYTES = 4096;
const keyOf = (i: number) => `big/${String(i).padStart(6, '0')}`;
const valueOf = (i: number) => `${i}:`.padEnd(VALUE_BYTES, String.fromCharCode(97 + (i % 26)));

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
function client(endpoint: string, service: string, tag: string): Client {
  const Ctor = (grpcDefinitions().etcdserverpb as Record<string, unknown>)[service] as new (a: string, c: grpc.ChannelCredentials, o?: object) => Client;
  // A distinct user agent per client: its own connection, so the puts do not queue behind the
  // range's bytes on one HTTP/2 connection.
  return new Ctor(endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 256 * 1024 * 1024, 'grpc.primary_user_agent': tag });
}

function call<T>(c: Client, method: string, req: object, deadlineMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => c[method]!(req, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}

interface RangeResp {
  header: { revision: string };
  kvs: { key: Buffer; value: Buffer; mod_revision: string }[];
  count: string;
  more: boolean;
}

/** A Range over raw HTTP/2, to see when the response starts (its headers): the member sends them
 *  when the answer is ready, so puts answered before then were served while the range was read. */
function rawRange(endpoint: string, req: object): { headersAtMs: Promise<number>; response: Promise<RangeResp> } {
  const reqType = protoRoot().lookupType('etcdserverpb.RangeRequest');
  const resType = protoRoot().lookupType('etcdserverpb.RangeResponse');
  const body = Buffer.from(reqType.encode(reqType.fromObject(req)).finish());
  const framed = Buffer.concat([Buffer.from([0]), Buffer.alloc(4), body]);
  framed.writeUInt32BE(body.length, 1);
  const session = http2.connect(`http://${endpoint}`);
  const stream = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers' });
  const headersAtMs = new Promise<number>((resolve, reject) => {
    stream.on('response', () => resolve(Date.now()));
    stream.on('error', reject);
  });
  const response = new Promise<RangeResp>((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('error', reject);
    stream.on('end', () => {
      session.close();
      const all = Buffer.concat(chunks);
      if (all.length < 5) return reject(new Error('no response message'));
      const msg = resType.decode(all.subarray(5, 5 + all.readUInt32BE(1)));
      resolve(resType.toObject(msg, { longs: String, defaults: true }) as RangeResp);
    });
  });
  stream.end(framed);
  return { headersAtMs, response };
}

function gatewayRange(url: string, body: object): Promise<{ kvs?: { key: string; value: string }[]; count: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v3/kv/range`, { method: 'POST', timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as { kvs?: { key: string; value: string }[]; count: string }));
    });
    req.on('timeout', () => req.destroy(new Error('gateway range timed out')));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('a large range over spilled values (1 member)', function () {
  this.timeout(180_000);
  let srv: ServerProcess | undefined;
  const opened: Client[] = [];
  afterEach(async () => {
    opened.splice(0).forEach((c) => c.close());
    await srv?.stop();
    srv = undefined;
  });

  it('returns every key at its revision while puts to the same keys are served; the gateway agrees; Compact(physical) then refuses older reads', async () => {
    srv = await startServer({ args: ['--hot-value-bytes=0'] });
    const kv = client(srv.endpoint, 'KV', 'loader');
    const ranger = client(srv.endpoint, 'KV', 'ranger');
    opened.push(kv, ranger);
    for (let i = 0; i < KEYS; i += 64) {
      const success = [];
      for (let j = i; j < Math.min(KEYS, i + 64); j++) success.push({ request_put: { key: Buffer.from(keyOf(j)), value: Buffer.from(valueOf(j)) } });
      await call(kv, 'Txn', { success });
    }
    const rangeReq = { key: Buffer.from('big/'), range_end: Buffer.from('big0') };
    const t0 = Date.now();
    let rangeDoneMs = 0;
    const raw = rawRange(srv.endpoint, rangeReq);
    const ranged = raw.response.finally(() => (rangeDoneMs = Date.now()));
    // Puts, one after the other, to keys of the range, until the range is answered.
    const puts: { doneMs: number; revision: number }[] = [];
    for (let n = 0; rangeDoneMs === 0 && n < 10_000; n++) {
      const p = await call<{ header: { revision: string } }>(kv, 'Put', { key: Buffer.from(keyOf(n)), value: Buffer.from(`new ${n}`) });
      puts.push({ doneMs: Date.now(), revision: Number(p.header.revision) });
    }
    const r = await ranged;
    const headersAtMs = await raw.headersAtMs;
    const rev = Number(r.header.revision);
    // A linearizable range reads once its ReadIndex round is done: the first puts may come before
    // its revision. Those after it, answered before the response started (its headers go out once
    // the range is walked and measured) or ended (it is then streamed as the client reads), were
    // served while the range was being read.
    const during = puts.filter((p) => p.revision > rev && p.doneMs < rangeDoneMs).length;
    assert.ok(during >= 3, `only ${during} puts were served while the range was read (headers after ${headersAtMs - t0} ms, end after ${rangeDoneMs - t0} ms, ${puts.length} puts)`);
    assert.equal(r.kvs.length, KEYS);
    assert.equal(r.count, String(KEYS));
    assert.equal(r.more, false);
    r.kvs.forEach((x, i) => {
      assert.equal(x.key.toString(), keyOf(i));
      assert.ok(Number(x.mod_revision) <= rev);
      const expected = i < puts.length && puts[i]!.revision <= rev ? `new ${i}` : valueOf(i);
      assert.equal(x.value.toString(), expected, `value of ${keyOf(i)} at revision ${rev}`);
    });

    // The gateway (objects, not bytes) at the same revision: the same answer.
    const g = await gatewayRange(srv.url, { key: Buffer.from('big/').toString('base64'), range_end: Buffer.from('big0').toString('base64'), revision: rev });
    assert.equal(g.count, String(KEYS));
    assert.equal(g.kvs?.length, KEYS);
    assert.equal(Buffer.from(g.kvs![KEYS - 1]!.value, 'base64').toString(), valueOf(KEYS - 1));

    // Limit and keys only take the sliced path's other branches.
    const limited = await call<RangeResp>(ranger, 'Range', { ...rangeReq, revision: rev, limit: 5000, keys_only: true });
    assert.equal(limited.kvs.length, 5000);
    assert.equal(limited.more, true);
    assert.equal(limited.kvs[4999]!.key.toString(), keyOf(4999));
    assert.equal(limited.kvs[4999]!.value.length, 0);

    const head = Number((await call<RangeResp>(ranger, 'Range', { key: Buffer.from('big/000000') })).header.revision);
    await call(kv, 'Compact', { revision: head, physical: true });
    await assert.rejects(call(ranger, 'Range', { ...rangeReq, revision: rev }), /required revision has been compacted/);
    const after = await call<RangeResp>(ranger, 'Range', { ...rangeReq, count_only: true });
    assert.equal(after.count, String(KEYS));
  });
});
