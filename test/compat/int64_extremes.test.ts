// Every int64/uint64 field a client can set in a KV, Watch, Lease, Compact, Cluster or
// Maintenance request, sent with the extreme values (0, -1, 2^53 + 1, 2^63 - 1, -2^63; uint64: 0,
// 2^63, 2^64 - 1) over gRPC and over the JSON gateway to one real member. None may reach an
// assertion (the member would crash) or come back INTERNAL; the answers that etcd 3.4.23 gives
// with a code (checked side by side with /usr/bin/etcd) are pinned here.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../../src/proto';
import { startServer, type ServerProcess } from '../integration/harness';

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
type Ctor = new (address: string, creds: grpc.ChannelCredentials) => Client;

const INT64 = ['0', '-1', '9007199254740993', '9223372036854775807', '-9223372036854775808'];
const UINT64 = ['0', '9223372036854775808', '18446744073709551615'];
const CALL_TIMEOUT_MS = 3000;
const key = Buffer.from('a');

interface Case {
  service: string;
  method: string;
  route: string;
  req: Record<string, unknown>;
  /** etcd 3.4's answer, where it is an error: [code, message]. */
  expect?: [number, string];
}

const FUTURE: [number, string] = [11, 'etcdserver: mvcc: required revision is a future revision'];
const COMPACTED: [number, string] = [11, 'etcdserver: mvcc: required revision has been compacted'];
const TTL_TOO_LARGE: [number, string] = [11, 'etcdserver: too large lease TTL'];
const LEASE_NOT_FOUND: [number, string] = [5, 'etcdserver: requested lease not found'];
const MEMBER_NOT_FOUND: [number, string] = [5, 'etcdserver: member not found'];

function cases(): Case[] {
  const out: Case[] = [];
  const big = (v: string) => v === '9007199254740993' || v === '9223372036854775807';
  for (const v of INT64) {
    for (const f of ['limit', 'min_mod_revision', 'max_mod_revision', 'min_create_revision', 'max_create_revision']) out.push({ service: 'KV', method: 'Range', route: '/v3/kv/range', req: { key, [f]: v } });
    out.push({ service: 'KV', method: 'Range', route: '/v3/kv/range', req: { key, revision: v }, expect: big(v) ? FUTURE : undefined });
    out.push({ service: 'KV', method: 'Put', route: '/v3/kv/put', req: { key, value: key, lease: v }, expect: v === '0' ? undefined : LEASE_NOT_FOUND });
    for (const [f, target] of [['version', 1], ['create_revision', 2], ['mod_revision', 3], ['lease', 4]] as const) {
      out.push({ service: 'KV', method: 'Txn', route: '/v3/kv/txn', req: { compare: [{ key, target, result: 0, [f]: v }] } });
    }
    const rangeExpect = big(v) ? FUTURE : v.startsWith('-') ? COMPACTED : undefined;
    out.push({ service: 'KV', method: 'Txn', route: '/v3/kv/txn', req: { success: [{ request_range: { key, revision: v } }] }, expect: rangeExpect });
    out.push({ service: 'KV', method: 'Txn', route: '/v3/kv/txn', req: { success: [{ request_range: { key, revision: v } }, { request_put: { key: Buffer.from('b'), value: key } }] }, expect: rangeExpect });
    out.push({ service: 'KV', method: 'Compact', route: '/v3/kv/compaction', req: { revision: v }, expect: big(v) ? FUTURE : v.startsWith('-') ? COMPACTED : undefined });
    out.push({ service: 'Lease', method: 'LeaseGrant', route: '/v3/lease/grant', req: { TTL: v }, expect: big(v) ? TTL_TOO_LARGE : undefined });
    out.push({ service: 'Lease', method: 'LeaseGrant', route: '/v3/lease/grant', req: { TTL: '5', ID: v } });
    out.push({ service: 'Lease', method: 'LeaseRevoke', route: '/v3/lease/revoke', req: { ID: v } });
    out.push({ service: 'Lease', method: 'LeaseTimeToLive', route: '/v3/lease/timetolive', req: { ID: v, keys: true } });
    out.push({ service: 'Maintenance', method: 'HashKV', route: '/v3/maintenance/hashkv', req: { revision: v }, expect: big(v) ? FUTURE : undefined });
  }
  for (const v of UINT64) {
    out.push({ service: 'Cluster', method: 'MemberRemove', route: '/v3/cluster/member/remove', req: { ID: v }, expect: MEMBER_NOT_FOUND });
    out.push({ service: 'Cluster', method: 'MemberUpdate', route: '/v3/cluster/member/update', req: { ID: v, peerURLs: ['http://127.0.0.1:1'] }, expect: MEMBER_NOT_FOUND });
    out.push({ service: 'Cluster', method: 'MemberPromote', route: '/v3/cluster/member/promote', req: { ID: v }, expect: MEMBER_NOT_FOUND });
    out.push({ service: 'Maintenance', method: 'Alarm', route: '/v3/maintenance/alarm', req: { action: 0, memberID: v, alarm: 0 } });
  }
  return out;
}

/** The request as the gateway's JSON: bytes as base64, int64 as strings (jsonpb). */
function toJson(req: unknown): string {
  return JSON.stringify(req, (_k, x: unknown) => (x && typeof x === 'object' && (x as { type?: string }).type === 'Buffer' ? Buffer.from((x as { data: number[] }).data).toString('base64') : x));
}

function grpcCall(client: Client, method: string, req: object): Promise<{ code: number; message: string }> {
  return new Promise((resolve) => {
    client[method](req, { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }, (err: grpc.ServiceError | null) => resolve(err ? { code: err.code, message: err.details } : { code: 0, message: '' }));
  });
}

async function gatewayCall(url: string, route: string, body: string): Promise<{ code: number; message: string; status: number }> {
  const r = await fetch(url + route, { method: 'POST', body, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  const json = (await r.json()) as { code?: number; message?: string };
  return { code: json.code ?? 0, message: json.message ?? '', status: r.status };
}

describe('int64 extremes in every client field (no assertion, no INTERNAL; etcd codes)', function () {
  this.timeout(120_000);
  let server: ServerProcess;
  const clients = new Map<string, Client>();

  before(async () => {
    server = await startServer();
    const pkg = grpcDefinitions().etcdserverpb as unknown as Record<string, Ctor>;
    for (const s of ['KV', 'Lease', 'Cluster', 'Maintenance', 'Watch']) clients.set(s, new pkg[s]!(server.endpoint, grpc.credentials.createInsecure()));
    assert.equal((await grpcCall(clients.get('KV')!, 'Put', { key, value: key })).code, 0);
  });

  after(async () => {
    for (const c of clients.values()) c.close();
    await server?.stop();
  });

  it('gRPC: every unary request answers, never INTERNAL, with etcd 3.4 codes', async () => {
    for (const c of cases()) {
      const r = await grpcCall(clients.get(c.service)!, c.method, c.req);
      const what = `${c.method} ${toJson(c.req)} → ${r.code} ${r.message}`;
      assert.notEqual(r.code, grpc.status.INTERNAL, what);
      assert.notEqual(r.code, grpc.status.UNAVAILABLE, what); // the member is still up
      if (c.expect) assert.deepEqual([r.code, r.message], c.expect, what);
    }
  });

  it('gateway: the same requests (int64 as strings and as JSON numbers), never INTERNAL', async () => {
    for (const c of cases()) {
      const body = toJson(c.req);
      for (const b of [body, body.replace(/"(-?[0-9]{2,})"/g, '$1')]) {
        const r = await gatewayCall(server.url, c.route, b);
        const what = `${c.route} ${b} → ${r.status} ${r.code} ${r.message}`;
        assert.notEqual(r.code, grpc.status.INTERNAL, what);
        assert.notEqual(r.status, 500, what);
        if (c.expect) assert.deepEqual([r.code, r.message], c.expect, what);
      }
    }
    // Out of the field's range: refused by the gateway before any handler, as InvalidArgument.
    for (const v of ['9223372036854775808', '-9223372036854775809', '1' + '0'.repeat(25)]) {
      const r = await gatewayCall(server.url, '/v3/kv/range', `{"key":"YQ==","revision":${v}}`);
      assert.equal(r.code, grpc.status.INVALID_ARGUMENT, `${v} → ${r.code} ${r.message}`);
    }
  });

  it('gRPC watch: extreme start_revision and watch_id create or cancel, never fail the stream', async () => {
    for (const v of INT64) {
      for (const create of [{ key, start_revision: v }, { key, watch_id: v }]) {
        const got = await new Promise<{ created: boolean; canceled: boolean; error?: string }>((resolve) => {
          const call = (clients.get('Watch') as unknown as { Watch(): grpc.ClientDuplexStream<object, { created: boolean; canceled: boolean }> }).Watch();
          const t = setTimeout(() => (call.cancel(), resolve({ created: false, canceled: false, error: 'no answer' })), CALL_TIMEOUT_MS);
          call.on('data', (r) => (clearTimeout(t), call.cancel(), resolve(r)));
          call.on('error', (e: grpc.ServiceError) => (clearTimeout(t), resolve({ created: false, canceled: false, error: e.code === grpc.status.CANCELLED ? 'cancelled' : `${e.code} ${e.details}` })));
          call.write({ create_request: create });
        });
        assert.ok(got.created, `${JSON.stringify({ ...create, key: 'a' })} → ${JSON.stringify(got)}`);
      }
    }
  });

  it('gRPC lease keepalive and watch cancel: extreme IDs are answered (TTL 0 / nothing), the stream lives on', async () => {
    type Duplex = grpc.ClientDuplexStream<object, Record<string, unknown>>;
    const stream = (service: string, method: string) => (clients.get(service) as unknown as Record<string, () => Duplex>)[method]!.call(clients.get(service));
    const ka = stream('Lease', 'LeaseKeepAlive');
    const answers: Record<string, unknown>[] = [];
    const errors: string[] = [];
    ka.on('data', (r: Record<string, unknown>) => answers.push(r));
    ka.on('error', (e: grpc.ServiceError) => e.code !== grpc.status.CANCELLED && errors.push(`${e.code} ${e.details}`));
    for (const v of INT64) ka.write({ ID: v });
    for (let i = 0; i < 60 && answers.length < INT64.length && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    ka.cancel();
    assert.deepEqual(errors, []);
    assert.deepEqual(answers.map((a) => [a.ID, a.TTL]), INT64.map((v) => [v, '0']));
    const w = stream('Watch', 'Watch');
    const got: Record<string, unknown>[] = [];
    w.on('data', (r: Record<string, unknown>) => got.push(r));
    const watchErrors: string[] = [];
    w.on('error', (e: grpc.ServiceError) => e.code !== grpc.status.CANCELLED && watchErrors.push(`${e.code} ${e.details}`));
    for (const v of INT64) w.write({ cancel_request: { watch_id: v } });
    w.write({ create_request: { key } });
    for (let i = 0; i < 60 && got.length === 0 && watchErrors.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    w.cancel();
    assert.deepEqual(watchErrors, []);
    assert.equal(got[0]?.created, true, JSON.stringify(got));
  });
});
