// Large range answers on a real member (issue 17): five concurrent Ranges over 24 MB of spilled
// values (four over gRPC, one through the JSON gateway) under a --max-range-answer-bytes that fits
// fewer than two of them: every answer is complete and correct, some had to wait, the bytes held
// (quorumkv_range_answer_bytes, sampled) never pass the budget, and the member's peak RSS grows far
// less than the answers' total (they are streamed, not built whole). Then a read-only Txn with a
// large range takes the sliced path: its ranges read at the txn's revision while a put lands.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../../src/proto';
import { startServer, type ServerProcess } from './harness';

const KEYS = 6000;
const VALUE_BYTES = 4096;
const BUDGET_BYTES = 3_000_000;
const keyOf = (i: number) => `big/${String(i).padStart(6, '0')}`;
const valueOf = (i: number) => `${i}:`.padEnd(VALUE_BYTES, String.fromCharCode(97 + (i % 26)));

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
function client(endpoint: string, tag: string): Client {
  const Ctor = (grpcDefinitions().etcdserverpb as Record<string, unknown>).KV as new (a: string, c: grpc.ChannelCredentials, o?: object) => Client;
  // A user agent per client: a connection of its own.
  return new Ctor(endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 256 * 1024 * 1024, 'grpc.primary_user_agent': tag });
}

function call<T>(c: Client, method: string, req: object, deadlineMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => c[method]!(req, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}

interface Kv {
  key: Buffer;
  value: Buffer;
  mod_revision: string;
}
interface RangeResp {
  header: { revision: string };
  kvs: Kv[];
  count: string;
}

function httpPost(url: string, body: object): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', timeout: 120_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve(Buffer.concat(chunks).toString()));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('gateway request timed out')));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

function metric(body: string, name: string): number {
  const m = new RegExp(`^${name}\\s+(\\S+)`, 'm').exec(body);
  return m ? Number(m[1]) : NaN;
}

const statusKb = (pid: number, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

function checkAll(kvs: { key: string; value: string }[], what: string): void {
  assert.equal(kvs.length, KEYS, `${what}: every key`);
  for (let i = 0; i < KEYS; i += 97) {
    assert.equal(kvs[i]!.key, keyOf(i), `${what}: key ${i}`);
    assert.equal(kvs[i]!.value, valueOf(i), `${what}: value ${i}`);
  }
}

describe('large range answers under the member budget (1 member)', function () {
  this.timeout(240_000);
  let srv: ServerProcess | undefined;
  const opened: Client[] = [];
  afterEach(async () => {
    opened.splice(0).forEach((c) => c.close());
    await srv?.stop();
    srv = undefined;
  });

  it('five concurrent 24 MB ranges: all correct, some waited, held bytes within the budget, RSS far below the answers; a read-only txn reads at one revision', async () => {
    srv = await startServer({ args: ['--hot-value-bytes=0', `--max-range-answer-bytes=${BUDGET_BYTES}`] });
    const s = srv;
    const loader = client(s.endpoint, 'loader');
    opened.push(loader);
    for (let i = 0; i < KEYS; i += 64) {
      const success = [];
      for (let j = i; j < Math.min(KEYS, i + 64); j++) success.push({ request_put: { key: Buffer.from(keyOf(j)), value: Buffer.from(valueOf(j)) } });
      await call(loader, 'Txn', { success });
    }
    const all = { key: Buffer.from('big/'), range_end: Buffer.from('big0') };
    const pid = s.proc.pid!;
    const scrape = () => httpPost(`${s.url}/metrics`, {}).catch(() => '');
    await new Promise((r) => setTimeout(r, 1000)); // the spill settles
    const rssBeforeKb = statusKb(pid, 'VmRSS');
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); // VmHWM from here

    let sampling = true;
    let heldMax = 0;
    const sampler = (async () => {
      for (let n = 0; sampling && n < 2000; n++) {
        const body = await new Promise<string>((resolve) => http.get(`${s.url}/metrics`, (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString()));
          res.on('end', () => resolve(b));
        }).on('error', () => resolve('')));
        heldMax = Math.max(heldMax, metric(body, 'quorumkv_range_answer_bytes') || 0);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const grpcs = Array.from({ length: 4 }, (_, i) => {
      const c = client(s.endpoint, `ranger-${i}`);
      opened.push(c);
      return call<RangeResp>(c, 'Range', all);
    });
    const gateway = httpPost(`${s.url}/v3/kv/range`, { key: all.key.toString('base64'), range_end: all.range_end.toString('base64') });
    const answers = await Promise.all(grpcs);
    const g = JSON.parse(await gateway) as { kvs: { key: string; value: string }[]; count: string };
    sampling = false;
    await sampler;
    const peakKb = statusKb(pid, 'VmHWM');
    answers.forEach((a, n) => {
      assert.equal(a.count, String(KEYS));
      checkAll(a.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString() })), `grpc range ${n}`);
    });
    assert.equal(g.count, String(KEYS));
    checkAll(g.kvs.map((kv) => ({ key: Buffer.from(kv.key, 'base64').toString(), value: Buffer.from(kv.value, 'base64').toString() })), 'gateway range');
    const metrics = await scrape();
    assert.ok(metric(metrics, 'quorumkv_range_answers_waited_total') >= 1, 'some answers waited for the budget');
    assert.equal(metric(metrics, 'quorumkv_range_answer_bytes'), 0, 'every answer gave its bytes back');
    assert.equal(metric(metrics, 'quorumkv_range_answers_refused_total'), 0);
    assert.ok(heldMax <= BUDGET_BYTES, `held ${heldMax} bytes, budget ${BUDGET_BYTES}`);
    // Five answers of 24 MB built whole would hold 120 MB or more.
    const growthMb = (peakKb - rssBeforeKb) / 1024;
    assert.ok(growthMb < 60, `peak RSS grew by ${growthMb.toFixed(0)} MB during five 24 MB answers`);

    // A read-only txn over every key: sliced, at one revision, while a put to its first key lands.
    const txnClient = client(s.endpoint, 'txn');
    opened.push(txnClient);
    const txn = call<{ header: { revision: string }; succeeded: boolean; responses: { response_range: RangeResp }[] }>(txnClient, 'Txn', {
      success: [{ request_range: all }, { request_range: { ...all, keys_only: true, limit: 10 } }],
    });
    const put = await call<{ header: { revision: string } }>(loader, 'Put', { key: Buffer.from(keyOf(0)), value: Buffer.from('new') });
    const t = await txn;
    const rev = Number(t.header.revision);
    assert.equal(t.succeeded, true);
    assert.equal(t.responses.length, 2);
    for (const r of t.responses) assert.equal(r.response_range.header.revision, t.header.revision);
    const first = t.responses[0]!.response_range;
    assert.equal(first.kvs.length, KEYS);
    assert.equal(first.kvs[0]!.value.toString(), Number(put.header.revision) <= rev ? 'new' : valueOf(0));
    assert.ok(first.kvs.every((kv) => Number(kv.mod_revision) <= rev));
    assert.equal(t.responses[1]!.response_range.kvs.length, 10);
    assert.equal(t.responses[1]!.response_range.kvs[9]!.value.length, 0);
    // The same txn through the gateway: the same JSON shape, streamed.
    const gt = JSON.parse(await httpPost(`${s.url}/v3/kv/txn`, { success: [{ request_range: { key: all.key.toString('base64'), range_end: all.range_end.toString('base64'), count_only: false } }] })) as {
      succeeded: boolean;
      responses: { response_range: { kvs: { key: string }[]; count: string } }[];
    };
    assert.equal(gt.succeeded, true);
    assert.equal(gt.responses[0]!.response_range.count, String(KEYS));
    assert.equal(gt.responses[0]!.response_range.kvs.length, KEYS);
  });
});
