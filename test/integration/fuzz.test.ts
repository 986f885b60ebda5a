// Fuzzing the client port of a real quorumkv process (seeded: QUORUMKV_FUZZ_SEED=N replays a run):
// random bytes before and after an HTTP/2 preface, malformed HTTP/1.1, oversize bodies and
// frames, mutated JSON and base64 to the gateway, and well-framed gRPC calls carrying random
// protobuf bytes. The guarantee: the server answers with errors or closes the connection, keeps
// serving, and loses nothing (a put acknowledged before is still readable, new puts work).
// Bounded: a fixed number of cases, well under 30 s.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Rng } from '../../src/util/rng';
import { startServer, type ServerProcess } from './harness';

const SEED = Number(process.env.QUORUMKV_FUZZ_SEED ?? 20261128);
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const b64 = (s: string) => Buffer.from(s).toString('base64');
/** A connection the server has not closed within this time is closed by the test. */
const CONN_WAIT_MS = 400;

function randomBytes(rng: Rng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(256);
  return b;
}

/** Writes `data` on a fresh connection; resolves with what came back once the server closed it or
 *  the wait ran out. */
function rawExchange(port: number, data: Buffer | Buffer[]): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, '127.0.0.1');
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve(Buffer.concat(chunks));
    };
    const t = setTimeout(done, CONN_WAIT_MS);
    s.on('data', (c) => chunks.push(c));
    s.on('error', done);
    s.on('close', done);
    s.on('connect', () => {
      for (const d of Array.isArray(data) ? data : [data]) s.write(d);
    });
  });
}

/** The safe subset of the API to fuzz: nothing here may delete, compact, raise alarms or change
 *  membership, so "nothing acknowledged is lost" stays checkable. */
const SAFE_UNARY = ['/etcdserverpb.KV/Range', '/etcdserverpb.KV/Put', '/etcdserverpb.Lease/LeaseGrant', '/etcdserverpb.Lease/LeaseTimeToLive', '/etcdserverpb.Lease/LeaseLeases', '/etcdserverpb.Maintenance/Status', '/etcdserverpb.Maintenance/HashKV', '/etcdserverpb.Cluster/MemberList'];
const SAFE_ROUTES: [string, unknown][] = [
  ['/v3/kv/range', { key: b64('fuzz/'), range_end: b64('fuzz0'), limit: 10, sort_order: 'DESCEND', revision: '0' }],
  ['/v3/kv/put', { key: b64('fz/k'), value: b64('v'), prev_kv: true }],
  ['/v3/lease/grant', { TTL: 30 }],
  ['/v3/lease/timetolive', { ID: '1', keys: true }],
  ['/v3/lease/leases', {}],
  ['/v3/cluster/member/list', {}],
  ['/v3/maintenance/status', {}],
  ['/v3/watch', { create_request: { key: b64('fz/'), range_end: b64('fz0'), prev_kv: true } }],
  ['/v3/lease/keepalive', { ID: 1 }],
];

function mutate(rng: Rng, s: string): string {
  const b = Buffer.from(s);
  const ops = 1 + rng.int(4);
  let out = b;
  for (let i = 0; i < ops; i++) {
    const at = rng.int(Math.max(1, out.length));
    switch (rng.int(4)) {
      case 0: // flip a byte
        out = Buffer.from(out);
        if (out.length > 0) out[at] = rng.int(256);
        break;
      case 1: // cut
        out = out.subarray(0, at);
        break;
      case 2: // insert JSON-ish noise
        out = Buffer.concat([out.subarray(0, at), Buffer.from(rng.pick(['"', '{', '}', '[', ']', ',', ':', '\\', '\\u12', 'null', '-', '1e999', '99999999999999999999999', '"!!!"', '\u0000', '\ud800'])), out.subarray(at)]);
        break;
      default: // duplicate a slice
        out = Buffer.concat([out, out.subarray(at)]);
    }
  }
  return out.toString('latin1');
}

describe('fuzzing the client port (gRPC and HTTP): errors or closed connections, never a crash or a lost write', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let port: number;
  const rng = new Rng(SEED);
  const acked: string[] = [];

  const put = async (key: string, value: string) => {
    const r = await fetch(srv.url + '/v3/kv/put', { method: 'POST', body: JSON.stringify({ key: b64(key), value: b64(value) }) });
    assert.equal(r.status, 200, `put ${key}: ${await r.text()}`);
    acked.push(key);
  };
  /** The member still serves and still has every acknowledged write. */
  const checkAlive = async (phase: string) => {
    assert.equal(srv.proc.exitCode, null, `server exited during ${phase} (seed ${SEED}):\n${srv.output().slice(-3000)}`);
    await put(`fuzz/after-${phase}`, phase);
    const r = await fetch(srv.url + '/v3/kv/range', { method: 'POST', body: JSON.stringify({ key: b64('fuzz/'), range_end: b64('fuzz0') }) });
    assert.equal(r.status, 200);
    const got = new Set(((await r.json()) as { kvs: { key: string }[] }).kvs.map((kv) => Buffer.from(kv.key, 'base64').toString()));
    for (const k of acked) assert.ok(got.has(k), `acknowledged key ${k} lost after ${phase} (seed ${SEED})`);
  };

  before(async () => {
    srv = await startServer();
    port = Number(srv.endpoint.split(':')[1]);
    await put('fuzz/acked-before', 'v');
  });
  after(async () => srv && (await srv.stop()));

  it('random bytes, with and without an HTTP/2 preface in front', async () => {
    const cases: Buffer[] = [];
    for (let i = 0; i < 40; i++) cases.push(randomBytes(rng, 1 + rng.int(2048)));
    for (let i = 0; i < 40; i++) cases.push(Buffer.concat([PREFACE, randomBytes(rng, 1 + rng.int(2048))]));
    // Prefixes of the preface that then go wrong, and the preface cut short.
    for (let i = 0; i < 10; i++) cases.push(Buffer.concat([PREFACE.subarray(0, 1 + rng.int(23)), randomBytes(rng, rng.int(64))]));
    for (let i = 0; i < cases.length; i += 30) await Promise.all(cases.slice(i, i + 30).map((c) => rawExchange(port, c)));
    await checkAlive('random-bytes');
  });

  it('malformed and oversize HTTP/1.1 requests', async () => {
    const bad = [
      'GET\r\n\r\n',
      'GET / HTTP/9.9\r\n\r\n',
      'POST /v3/kv/put HTTP/1.1\r\nContent-Length: -1\r\n\r\n',
      'POST /v3/kv/put HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n{}',
      'POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n',
      'POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
      `GET /health HTTP/1.1\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
      `GET /${'x'.repeat(100 * 1024)} HTTP/1.1\r\n\r\n`,
      'POST /v3/kv/range HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"key":', // body cut short
      'GET /health HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n\0\0\0',
      'POST /v3/watch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"cre\r\n',
    ];
    const replies = await Promise.all(bad.map((b) => rawExchange(port, Buffer.from(b, 'latin1'))));
    for (const [i, r] of replies.entries()) {
      const status = r.toString('latin1').match(/^HTTP\/1\.1 (\d{3})/)?.[1];
      assert.ok(status === undefined || !status.startsWith('5'), `case ${i} answered ${status}`);
    }
    // An oversize body is refused while it is read (400) and the connection is closed rather than
    // held open for the rest: the client sees the 400, or, if it was still sending, a reset.
    const refusedEarly = async (route: string, body: string | Buffer) => {
      try {
        return (await fetch(srv.url + route, { method: 'POST', body })).status;
      } catch (err) {
        const code = ((err as Error & { cause?: { code?: string } }).cause ?? {}).code;
        assert.ok(code === 'EPIPE' || code === 'ECONNRESET', `${route}: ${String(err)} (${String(code)})`);
        return 400;
      }
    };
    assert.equal(await refusedEarly('/v3/kv/put', Buffer.alloc(8 * 1024 * 1024, 0x41)), 400);
    assert.equal(await refusedEarly('/v3/watch', '{"create_request":{"key":"' + 'A'.repeat(8 * 1024 * 1024)), 400);
    await checkAlive('bad-http');
  });

  it('mutated JSON and base64 to every safe gateway route', async () => {
    const statuses = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const [route, body] = rng.pick(SAFE_ROUTES);
      const text = mutate(rng, JSON.stringify(body));
      const ac = new AbortController();
      const t = setTimeout(() => ac.abort(), 300); // streams (watch) stay open: read the head only
      try {
        const r = await fetch(srv.url + route, { method: 'POST', body: Buffer.from(text, 'latin1'), signal: ac.signal });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status >= 400) {
          const reply = await r.text();
          assert.ok(r.status !== 500, `${route} ${JSON.stringify(text)} → 500: ${reply}`);
          // Unary errors are {"error","message","code"}; a stream that failed ends with {"error":{...}}.
          const j = JSON.parse(reply.trim().split('\n').pop()!) as { code?: number; error?: unknown };
          assert.ok(typeof j.code === 'number' || typeof j.error === 'object', `error body of ${route}: ${reply}`);
        } else await r.body?.cancel();
      } catch (err) {
        if ((err as Error).name !== 'AbortError') throw err;
      } finally {
        clearTimeout(t);
      }
    }
    assert.ok((statuses.get(400) ?? 0) > 50, `expected many 400s: ${JSON.stringify([...statuses])}`);
    await checkAlive('json');
  });

  it('well-framed gRPC calls with random protobuf bytes, and broken gRPC frames', async () => {
    const client = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
    const codes = new Map<number, number>();
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const method = rng.pick(SAFE_UNARY);
      const payload = randomBytes(rng, rng.int(300));
      calls.push(
        new Promise((resolve) => {
          client.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, payload, { deadline: Date.now() + 5000 }, (err) => {
            const code = err ? err.code : 0;
            codes.set(code, (codes.get(code) ?? 0) + 1);
            resolve();
          });
        }),
      );
    }
    // Bidi streams with garbage messages.
    for (const method of ['/etcdserverpb.Watch/Watch', '/etcdserverpb.Lease/LeaseKeepAlive']) {
      const call = client.makeBidiStreamRequest(method, (b: Buffer) => b, (b: Buffer) => b, { deadline: Date.now() + 3000 });
      call.on('data', () => undefined);
      calls.push(new Promise((resolve) => (call.on('status', () => resolve()), call.on('error', () => undefined))));
      for (let i = 0; i < 20; i++) call.write(randomBytes(rng, rng.int(200)));
      call.end();
    }
    await Promise.all(calls);
    client.close();
    assert.ok(!codes.has(grpc.status.UNKNOWN) || codes.get(grpc.status.UNKNOWN)! < 200, JSON.stringify([...codes]));

    // Raw HTTP/2: a compressed flag without compression, a length prefix far larger than the
    // data, and a declared message above the receive limit.
    const session = http2.connect(srv.url);
    session.on('error', () => undefined);
    const frames = [
      Buffer.concat([Buffer.from([1, 0, 0, 0, 3]), Buffer.from('abc')]),
      Buffer.concat([Buffer.from([0, 0xff, 0xff, 0xff, 0xff]), randomBytes(rng, 100)]),
      Buffer.concat([Buffer.from([0, 0, 0x40, 0, 0]), Buffer.alloc(64 * 1024)]),
      Buffer.from([0, 0, 0]),
    ];
    const results = await Promise.all(
      frames.map(
        (f) =>
          new Promise<string>((resolve) => {
            const req = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers' });
            let status = 'none';
            req.on('response', (h) => h['grpc-status'] !== undefined && (status = String(h['grpc-status'])));
            req.on('trailers', (h) => (status = String(h['grpc-status'])));
            req.on('data', () => undefined);
            req.on('close', () => resolve(status));
            req.on('error', () => resolve('reset'));
            req.end(f);
            setTimeout(() => (req.close(), resolve(status)), 3000).unref();
          }),
      ),
    );
    session.close();
    for (const s of results) assert.notEqual(s, '0', `a broken frame was answered OK: ${results}`);
    await checkAlive('grpc');
  });

  it('after all of it: the member answers gRPC clients, and every acknowledged write is there', async () => {
    const client = new grpc.Client(srv.endpoint, grpc.credentials.createInsecure());
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 3000, (e) => (e ? reject(e) : resolve())));
    client.close();
    await checkAlive('final');
  });
});
