// Hostile clients of the JSON gateway against one real quorumkv process (issue 22's gateway rows):
// each attack is bounded (≤ 10 s), runs while a prober sends ordinary POST /v3/kv/range requests,
// and must leave every probe answered within 1 s and the member's RSS under a bound.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startServer, type ServerProcess } from '../integration/harness';
import { hugeIntegers, manyCompares, Prober, probeOnce, rssBytes, sleep, slowHeaders, unfinishedValueThenTrickle } from './gateway_util';

const PROBE_MAX_MS = 1000;
const RSS_MAX_BYTES = 400 * 1024 * 1024;
const ATTACK_MAX_MS = 8000;

describe('hostile clients of the JSON gateway: the member stays responsive', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let port: number;

  before(async () => {
    srv = await startServer();
    port = Number(srv.endpoint.split(':')[1]);
    // Ready to serve is not yet leading: wait (bounded) for the first answered probe.
    for (let i = 0; i < 50 && (await probeOnce(srv.url)) >= PROBE_MAX_MS; i++) await sleep(200);
    assert.ok((await probeOnce(srv.url)) < PROBE_MAX_MS);
  });

  after(async () => srv && (await srv.stop()));

  /** Runs `attack` under the prober; asserts probes and RSS. */
  async function underProbe(what: string, attack: () => Promise<unknown>): Promise<void> {
    const prober = new Prober(srv.url);
    const t0 = Date.now();
    const result = await attack();
    const probes = await prober.stop();
    const after = await probeOnce(srv.url);
    const rss = rssBytes(srv.proc.pid!);
    const report = `${what}: ${JSON.stringify(result)} in ${Date.now() - t0} ms; ${probes.count} probes, slowest ${probes.maxMs.toFixed(0)} ms; after ${after.toFixed(0)} ms; RSS ${(rss / 2 ** 20).toFixed(0)} MiB`;
    console.log(`      ${report}`);
    assert.ok(probes.count > 0 && probes.maxMs < PROBE_MAX_MS, report);
    assert.ok(after < PROBE_MAX_MS, report);
    assert.ok(rss < RSS_MAX_BYTES, report);
  }

  it('a 3.5 MB value left unfinished on a watch stream, then 3,000 one-byte chunks', async function () {
    this.timeout(20_000);
    await underProbe('watch', () => unfinishedValueThenTrickle(port, '/v3/watch', 3_500_000, 3000, ATTACK_MAX_MS));
  });

  it('the same on a unary body (kv/put, chunked)', async function () {
    this.timeout(20_000);
    await underProbe('put', () => unfinishedValueThenTrickle(port, '/v3/kv/put', 3_500_000, 3000, ATTACK_MAX_MS));
  });

  it('requests holding a 3 MB integer, 2 clients for 5 s: each refused at once', async function () {
    this.timeout(20_000);
    await underProbe('integer', async () => {
      const r = await hugeIntegers(port, 3_000_000, 2, 5000);
      assert.ok(r.answered > 0 && r.slowestMs < PROBE_MAX_MS, JSON.stringify(r));
      return r;
    });
  });

  it('a Txn with 200k compares, 4 clients: refused while read (--max-txn-ops)', async function () {
    this.timeout(20_000);
    await underProbe('txn', async () => {
      const answered = await manyCompares(port, 200_000, 4, ATTACK_MAX_MS);
      assert.equal(answered, 4);
      return { answered };
    });
    const r = await fetch(`${srv.url}/v3/kv/txn`, { method: 'POST', body: '{"compare":[' + Array(129).fill('{"key":"YQ=="}').join(',') + ']}' });
    assert.deepEqual(await r.json(), { error: 'etcdserver: too many operations in txn request', message: 'etcdserver: too many operations in txn request', code: 3 });
  });

  it('100 connections trickling their headers for 6 s', async function () {
    this.timeout(20_000);
    await underProbe('slow headers', () => slowHeaders(port, 100, 50, 6000));
  });

  it('prototype names from the client are plain names: "__proto__", "constructor" keys and enum values', async () => {
    const put = await fetch(`${srv.url}/v3/kv/put`, { method: 'POST', body: '{"key":"cHJvdG8=","value":"dg==","__proto__":{"prev_kv":true},"constructor":{"x":1},"toString":1}' });
    assert.equal(put.status, 200);
    assert.equal(((await put.json()) as { prev_kv?: unknown }).prev_kv, undefined); // "__proto__" set nothing
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const r = await fetch(`${srv.url}/v3/kv/range`, { method: 'POST', body: `{"key":"cHJvdG8=","sort_order":"${name}"}` });
      assert.equal(r.status, 400);
      assert.match(((await r.json()) as { message: string }).message, new RegExp(`unknown value "${name}" for enum etcdserverpb.RangeRequest_SortOrder`));
    }
    assert.ok((await probeOnce(srv.url)) < PROBE_MAX_MS);
  });

  it('a Range and a Txn at revision 2^53 and 2^63 - 1: OutOfRange "future revision", as etcd', async () => {
    for (const rev of ['9007199254740993', '9223372036854775807']) {
      for (const [path, body] of [
        ['/v3/kv/range', `{"key":"YQ==","revision":${rev}}`],
        ['/v3/kv/txn', `{"success":[{"request_range":{"key":"YQ==","revision":"${rev}"}}]}`],
      ] as const) {
        const r = await fetch(srv.url + path, { method: 'POST', body });
        assert.equal(r.status, 400);
        assert.deepEqual(await r.json(), { error: 'etcdserver: mvcc: required revision is a future revision', message: 'etcdserver: mvcc: required revision is a future revision', code: 11 });
      }
    }
    assert.ok((await probeOnce(srv.url)) < PROBE_MAX_MS);
  });

  it('a stream refused after its whole body was read keeps its keep-alive connection usable', async () => {
    // The CI failure this guards: the refused watch's connection was destroyed after a complete
    // chunked answer, so a keep-alive client that reused it saw 'other side closed'.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (path: string, body: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(srv.url + path, { method: 'POST', agent }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      for (let i = 0; i < 100; i++) {
        const bad = await post('/v3/watch', '{"create_request":{"key":"!!!"}}');
        assert.match(bad.body, /"error"/);
        const good = await post('/v3/kv/range', '{"key":"YQ=="}');
        assert.equal(good.status, 200, good.body);
      }
    } finally {
      agent.destroy();
    }
  });

  it('a /v3/lease/keepalive client that never reads its answers stops being read (its writes stall)', async function () {
    this.timeout(40_000);
    const grant = await fetch(`${srv.url}/v3/lease/grant`, { method: 'POST', body: '{"TTL":600}' });
    const id = ((await grant.json()) as { ID: string }).ID;
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((r, j) => (sock.once('connect', () => r()), sock.once('error', j)));
    sock.on('error', () => undefined);
    sock.pause(); // never reads an answer
    sock.write(`POST /v3/lease/keepalive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const body = `{"ID":"${id}"}`.repeat(4096);
    const chunk = Buffer.from(`${body.length.toString(16)}\r\n${body}\r\n`);
    // Write until one write has not drained for 3 s (the member stopped reading), at most 25 s.
    let written = 0;
    let stalled = false;
    const until = Date.now() + 25_000;
    while (Date.now() < until) {
      written += chunk.length;
      if (sock.write(chunk)) continue;
      const drained = await new Promise<boolean>((r) => {
        const t = setTimeout(() => r(false), 3000);
        sock.once('drain', () => (clearTimeout(t), r(true)));
      });
      if (!drained) {
        stalled = true;
        break;
      }
    }
    sock.destroy();
    assert.ok(stalled, `the member kept reading a client that reads nothing: ${(written / 2 ** 20).toFixed(0)} MiB of keepalives accepted in 25 s`);
    assert.ok((await probeOnce(srv.url)) < PROBE_MAX_MS);
    assert.ok(rssBytes(srv.proc.pid!) < RSS_MAX_BYTES);
  });

  it('exits on SIGTERM after all of the above (within the harness 5 s, no SIGKILL needed)', async () => {
    const t0 = Date.now();
    await srv.stop('SIGTERM');
    assert.notEqual(srv.proc.signalCode, 'SIGKILL', `needed SIGKILL after ${Date.now() - t0} ms`);
  });
});
