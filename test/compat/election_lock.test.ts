// v3electionpb.Election and v3lockpb.Lock against a real quorumkv process, driven by grpc-js clients
// built from the protos (as Go's v3electionpb/v3lockpb clients and jetcd call them), plus their
// JSON gateway routes. What is checked is etcd's concurrency semantics: who is elected when, what
// a non-leader may not do, what Observe sees, mutual exclusion, and that a client giving up on a
// blocked Campaign/Lock (cancel, deadline) leaves neither its key nor a waiting watcher behind.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/proto';
import { frameMessage } from '../../src/grpcserver/server';
import { startServer, type ServerProcess } from '../integration/harness';

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
type GrpcError = Error & { code: number; details: string };
interface Header {
  revision: string;
}
interface LeaderKey {
  name: Buffer;
  key: Buffer;
  rev: string;
  lease: string;
}
interface Kv {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  lease: string;
}

const b = (s: string) => Buffer.from(s);
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

function client(service: string, endpoint: string): Client {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service);
  return new Ctor(endpoint, grpc.credentials.createInsecure()) as unknown as Client;
}

/** A unary call; `deadlineMs` sets grpc-timeout. Returns the call too, for cancelling. */
function call<T>(c: Client, method: string, req: object, deadlineMs?: number): { done: Promise<T>; cancel: () => void } {
  let handle: grpc.ClientUnaryCall | undefined;
  const done = new Promise<T>((resolve, reject) => {
    const opts = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    handle = c[method](req, new grpc.Metadata(), opts, (err: GrpcError | null, res: T) => (err ? reject(err) : resolve(res))) as grpc.ClientUnaryCall;
  });
  return { done, cancel: () => handle!.cancel() };
}

/** Resolves to 'pending' if `p` has not settled within `ms`. */
async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return !settled;
}

async function rejection(p: Promise<unknown>): Promise<GrpcError> {
  try {
    await p;
  } catch (err) {
    return err as GrpcError;
  }
  throw new Error('expected the call to fail');
}

describe('Election and Lock services (grpc-js clients from the protos)', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let election: Client;
  let lock: Client;
  let lease: Client;
  let kv: Client;

  const grant = async (ttl: number) => (await call<{ ID: string }>(lease, 'LeaseGrant', { TTL: ttl }).done).ID;
  const keysUnder = async (prefix: string) => {
    const end = b(prefix);
    end[end.length - 1]!++;
    const r = await call<{ kvs: Kv[] }>(kv, 'Range', { key: b(prefix), range_end: end }).done;
    return r.kvs.map((x) => x.key.toString());
  };
  /** etcd_debugging_mvcc_watcher_total from /metrics. */
  const watchers = async () => {
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    const m = /^etcd_debugging_mvcc_watcher_total (\d+)/m.exec(text);
    assert.ok(m, 'watcher gauge missing');
    return Number(m[1]);
  };
  const eventually = async (what: string, check: () => Promise<boolean>, timeoutMs = 5000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  before(async () => {
    srv = await startServer();
    election = client('v3electionpb.Election', srv.endpoint);
    lock = client('v3lockpb.Lock', srv.endpoint);
    lease = client('etcdserverpb.Lease', srv.endpoint);
    kv = client('etcdserverpb.KV', srv.endpoint);
  });
  after(async () => {
    for (const c of [election, lock, lease, kv]) c?.close();
    await srv?.stop();
  });

  it('two campaigners: the first is elected at once, the second after the first resigns', async () => {
    const la = await grant(30);
    const lb = await grant(30);
    const a = await call<{ header: Header; leader: LeaderKey }>(election, 'Campaign', { name: b('e1'), lease: la, value: b('A') }).done;
    assert.equal(a.leader.key.toString(), `e1/${BigInt(la).toString(16)}`);
    assert.equal(a.leader.name.toString(), 'e1');
    assert.equal(a.leader.lease, la);
    assert.equal(a.leader.rev, a.header.revision);
    const bCampaign = call<{ leader: LeaderKey }>(election, 'Campaign', { name: b('e1'), lease: lb, value: b('B') }).done;
    assert.ok(await stillPending(bCampaign, 300), 'the second campaigner was elected while the first leads');
    const l1 = await call<{ kv: Kv }>(election, 'Leader', { name: b('e1') }).done;
    assert.equal(l1.kv.value.toString(), 'A');
    await call(election, 'Resign', { leader: a.leader }).done;
    const bl = (await bCampaign).leader;
    assert.equal(bl.key.toString(), `e1/${BigInt(lb).toString(16)}`);
    const l2 = await call<{ kv: Kv }>(election, 'Leader', { name: b('e1') }).done;
    assert.equal(l2.kv.value.toString(), 'B');
    await call(election, 'Resign', { leader: bl }).done;
    const none = await rejection(call(election, 'Leader', { name: b('e1') }).done);
    assert.equal(none.code, grpc.status.UNKNOWN);
    assert.equal(none.details, 'election: no leader');
  });

  it("the second campaigner is elected when the first one's lease expires", async () => {
    const la = await grant(2); // the minimum TTL (1.5 × election timeout); never kept alive
    const lb = await grant(30);
    await call(election, 'Campaign', { name: b('e2'), lease: la, value: b('A') }).done;
    const started = Date.now();
    const r = await call<{ leader: LeaderKey }>(election, 'Campaign', { name: b('e2'), lease: lb, value: b('B') }).done;
    assert.equal(r.leader.lease, lb);
    assert.ok(Date.now() - started >= 1000, 'elected before the first lease could expire');
    assert.deepEqual(await keysUnder('e2/'), [`e2/${BigInt(lb).toString(16)}`]);
  });

  it("a blocked Campaign keeps its lease alive while it waits (etcd's server-side session), and only then", async () => {
    const la = await grant(30);
    const lb = await grant(2); // the minimum TTL; this client never sends a keepalive
    const a = (await call<{ leader: LeaderKey }>(election, 'Campaign', { name: b('e6'), lease: la, value: b('A') }).done).leader;
    const bDone = call<{ leader: LeaderKey }>(election, 'Campaign', { name: b('e6'), lease: lb, value: b('B') }).done;
    await new Promise((r) => setTimeout(r, 4000)); // two TTLs
    assert.equal((await keysUnder('e6/')).length, 2, "the waiting candidate's lease expired");
    await call(election, 'Resign', { leader: a }).done;
    assert.equal((await bDone).leader.lease, lb);
    // The keepalives end with the call: the lease then runs out, and the leadership with it.
    await eventually('the elected session to expire', async () => (await keysUnder('e6/')).length === 0, 6000);
  });

  it('Proclaim: the leader changes its value; a non-leader gets "election: not leader"', async () => {
    const la = await grant(30);
    const a = (await call<{ leader: LeaderKey }>(election, 'Campaign', { name: b('e3'), lease: la, value: b('v1') }).done).leader;
    await call(election, 'Proclaim', { leader: a, value: b('v2') }).done;
    assert.equal((await call<{ kv: Kv }>(election, 'Leader', { name: b('e3') }).done).kv.value.toString(), 'v2');
    const stale = { ...a, rev: String(Number(a.rev) + 1000) };
    const err = await rejection(call(election, 'Proclaim', { leader: stale, value: b('x') }).done);
    assert.equal(err.code, grpc.status.UNKNOWN);
    assert.equal(err.details, 'election: not leader');
    const missing = await rejection(call(election, 'Proclaim', { value: b('x') }).done);
    assert.equal(missing.details, '"leader" field must be provided');
    await call(election, 'Resign', { leader: a }).done;
    const gone = await rejection(call(election, 'Proclaim', { leader: a, value: b('x') }).done);
    assert.equal(gone.details, 'election: not leader');
  });

  it('Observe streams the leader, its proclamations, and the next leader', async () => {
    const seen: string[] = [];
    const obs = (election as unknown as { Observe(req: object): grpc.ClientReadableStream<{ kv: Kv }> }).Observe({ name: b('e4') });
    obs.on('data', (r: { kv: Kv }) => seen.push(r.kv.value.toString()));
    obs.on('error', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const la = await grant(30);
      const lb = await grant(30);
      const a = (await call<{ leader: LeaderKey }>(election, 'Campaign', { name: b('e4'), lease: la, value: b('a1') }).done).leader;
      const bDone = call(election, 'Campaign', { name: b('e4'), lease: lb, value: b('b1') }).done;
      await eventually('a1 observed', async () => seen.includes('a1'));
      await call(election, 'Proclaim', { leader: a, value: b('a2') }).done;
      await eventually('a2 observed', async () => seen.includes('a2'));
      await call(election, 'Resign', { leader: a }).done;
      await bDone;
      await eventually('b1 observed', async () => seen.includes('b1'));
      assert.deepEqual(seen, ['a1', 'a2', 'b1']);
    } finally {
      obs.cancel();
    }
  });

  it('Lock: mutual exclusion between two clients; Unlock hands the lock over', async () => {
    const lock2 = client('v3lockpb.Lock', srv.endpoint);
    try {
      const l1 = await grant(30);
      const l2 = await grant(30);
      const k1 = (await call<{ key: Buffer }>(lock, 'Lock', { name: b('m1'), lease: l1 }).done).key;
      assert.equal(k1.toString(), `m1/${BigInt(l1).toString(16)}`);
      const second = call<{ key: Buffer }>(lock2, 'Lock', { name: b('m1'), lease: l2 }).done;
      assert.ok(await stillPending(second, 300), 'two holders of one lock');
      await call(lock, 'Unlock', { key: k1 }).done;
      const k2 = (await second).key;
      assert.equal(k2.toString(), `m1/${BigInt(l2).toString(16)}`);
      await call(lock2, 'Unlock', { key: k2 }).done;
      assert.deepEqual(await keysUnder('m1/'), []);
    } finally {
      lock2.close();
    }
  });

  it('a cancelled Lock or Campaign leaves no key and no watcher; the holder keeps its lock', async () => {
    const base = await watchers();
    const l1 = await grant(30);
    const l2 = await grant(30);
    const k1 = (await call<{ key: Buffer }>(lock, 'Lock', { name: b('m2'), lease: l1 }).done).key;
    const blocked = call(lock, 'Lock', { name: b('m2'), lease: l2 });
    await eventually('the waiter is queued', async () => (await keysUnder('m2/')).length === 2);
    assert.equal(await watchers(), base + 1);
    blocked.cancel();
    assert.equal((await rejection(blocked.done)).code, grpc.status.CANCELLED);
    await eventually('the cancelled waiter is gone', async () => (await keysUnder('m2/')).length === 1 && (await watchers()) === base);
    assert.deepEqual(await keysUnder('m2/'), [k1.toString()]);

    const la = await grant(30);
    const lb = await grant(30);
    await call(election, 'Campaign', { name: b('e5'), lease: la, value: b('A') }).done;
    const camp = call(election, 'Campaign', { name: b('e5'), lease: lb, value: b('B') });
    await eventually('the candidate is queued', async () => (await keysUnder('e5/')).length === 2);
    camp.cancel();
    await rejection(camp.done);
    await eventually('the cancelled candidate is gone', async () => (await keysUnder('e5/')).length === 1 && (await watchers()) === base);
    assert.equal((await call<{ kv: Kv }>(election, 'Leader', { name: b('e5') }).done).kv.value.toString(), 'A');
  });

  it('a Lock whose deadline passes fails with DEADLINE_EXCEEDED and releases its place', async () => {
    const base = await watchers();
    const l1 = await grant(30);
    const l2 = await grant(30);
    const k1 = (await call<{ key: Buffer }>(lock, 'Lock', { name: b('m3'), lease: l1 }).done).key;
    const err = await rejection(call(lock, 'Lock', { name: b('m3'), lease: l2 }, 500).done);
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    await eventually('the expired waiter is gone', async () => (await keysUnder('m3/')).length === 1 && (await watchers()) === base);
    assert.deepEqual(await keysUnder('m3/'), [k1.toString()]);
  });

  it("the server's own deadline: a raw grpc-timeout ends a blocked Lock with etcd's DeadlineExceeded status", async () => {
    // A bare HTTP/2 client, so that no client-side timer races the server's.
    const l1 = await grant(30);
    const l2 = await grant(30);
    const k1 = (await call<{ key: Buffer }>(lock, 'Lock', { name: b('m5'), lease: l1 }).done).key;
    const session = http2.connect(srv.url);
    try {
      const req = session.request({ ':method': 'POST', ':path': '/v3lockpb.Lock/Lock', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '400m' });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.on('trailers', resolve));
      const headers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.on('response', resolve));
      req.on('data', () => undefined);
      req.end(frameMessage(serviceDefinition('v3lockpb.Lock').Lock!.requestSerialize({ name: b('m5'), lease: l2 })));
      const h = await Promise.race([trailers, headers.then(async (x) => (x['grpc-status'] !== undefined ? x : trailers))]);
      assert.equal(h['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED));
      assert.equal(decodeURIComponent(String(h['grpc-message'])), 'etcdserver: context deadline exceeded');
    } finally {
      session.close();
    }
    await eventually('the expired waiter is gone', async () => (await keysUnder('m5/')).length === 1);
    assert.deepEqual(await keysUnder('m5/'), [k1.toString()]);
  });

  it('Lock with lease 0 gets a 60 s session lease; Lock on an unknown lease fails as etcd 3.4 (Unknown)', async () => {
    const r = await call<{ key: Buffer }>(lock, 'Lock', { name: b('m4'), lease: 0 }).done;
    const id = BigInt('0x' + r.key.toString().slice('m4/'.length));
    const ttl = await call<{ TTL: string; grantedTTL: string }>(lease, 'LeaseTimeToLive', { ID: id.toString() }).done;
    assert.equal(ttl.grantedTTL, '60');
    await call(lock, 'Unlock', { key: r.key }).done;
    // etcd's Lock reaches KV through an in-process client that drops the status code: Unknown.
    const err = await rejection(call(lock, 'Lock', { name: b('m4'), lease: '12345' }).done);
    assert.equal(err.code, grpc.status.UNKNOWN);
    assert.equal(err.details, 'etcdserver: requested lease not found');
  });

  it('the JSON gateway routes: election campaign/leader/proclaim/observe/resign, lock/unlock', async () => {
    const post = async (p: string, body: object) => {
      const r = await fetch(srv.url + p, { method: 'POST', body: JSON.stringify(body) });
      return { status: r.status, json: (await r.json()) as any };
    };
    const la = await grant(30);
    const c = await post('/v3/election/campaign', { name: b64('g1'), lease: la, value: b64('x') });
    assert.equal(c.status, 200);
    assert.equal(Buffer.from(c.json.leader.key, 'base64').toString(), `g1/${BigInt(la).toString(16)}`);
    const l = await post('/v3/election/leader', { name: b64('g1') });
    assert.equal(Buffer.from(l.json.kv.value, 'base64').toString(), 'x');
    assert.equal((await post('/v3/election/proclaim', { leader: c.json.leader, value: b64('y') })).status, 200);
    assert.equal(Buffer.from((await post('/v3/election/leader', { name: b64('g1') })).json.kv.value, 'base64').toString(), 'y');
    assert.equal((await post('/v3/election/resign', { leader: c.json.leader })).status, 200);
    const none = await post('/v3/election/leader', { name: b64('g1') });
    assert.equal(none.status, 500);
    assert.equal(none.json.message, 'election: no leader');
    // Observe over the gateway: one JSON object a line, {"result": LeaderResponse}. (The response
    // head goes out with the first line: the request is not awaited before there is a leader.)
    const ac = new AbortController();
    const guard = setTimeout(() => ac.abort(), 10_000);
    const obsP = fetch(srv.url + '/v3/election/observe', { method: 'POST', body: JSON.stringify({ name: b64('g3') }), signal: ac.signal });
    await new Promise((r) => setTimeout(r, 200));
    const g3 = await post('/v3/election/campaign', { name: b64('g3'), lease: la, value: b64('o1') });
    await post('/v3/election/proclaim', { leader: g3.json.leader, value: b64('o2') });
    let text = '';
    const lines = () => text.split('\n').filter((x) => x.trim() !== '').map((x) => JSON.parse(x) as { result: { kv: { value: string } } });
    try {
      const reader = (await obsP).body!.getReader();
      for (let i = 0; i < 100 && lines().length < 2; i++) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += Buffer.from(chunk.value).toString();
      }
    } finally {
      clearTimeout(guard);
      ac.abort();
    }
    assert.deepEqual(lines().map((l) => Buffer.from(l.result.kv.value, 'base64').toString()), ['o1', 'o2']);
    await post('/v3/election/resign', { leader: g3.json.leader });

    const lk = await post('/v3/lock/lock', { name: b64('g2'), lease: la });
    assert.equal(lk.status, 200);
    assert.equal(Buffer.from(lk.json.key, 'base64').toString(), `g2/${BigInt(la).toString(16)}`);
    assert.equal((await post('/v3/lock/unlock', { key: lk.json.key })).status, 200);
    assert.deepEqual(await keysUnder('g2/'), []);
  });
});

describe('Election and Lock with auth: every operation is the caller\'s (as etcd 3.4)', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let election: Client;
  let lock: Client;
  let auth: Client;
  let lease: Client;
  const md = (token?: string) => {
    const m = new grpc.Metadata();
    if (token !== undefined) m.set('token', token);
    return m;
  };
  const as = <T>(c: Client, method: string, req: object, token?: string) =>
    new Promise<T>((resolve, reject) => c[method](req, md(token), (err: GrpcError | null, res: T) => (err ? reject(err) : resolve(res))));

  before(async () => {
    srv = await startServer();
    election = client('v3electionpb.Election', srv.endpoint);
    lock = client('v3lockpb.Lock', srv.endpoint);
    auth = client('etcdserverpb.Auth', srv.endpoint);
    lease = client('etcdserverpb.Lease', srv.endpoint);
    await as(auth, 'UserAdd', { name: 'root', password: 'root' });
    await as(auth, 'UserGrantRole', { user: 'root', role: 'root' });
    await as(auth, 'UserAdd', { name: 'alice', password: 'alice' });
    await as(auth, 'AuthEnable', {});
  });
  after(async () => {
    for (const c of [election, lock, auth, lease]) c?.close();
    await srv?.stop();
  });

  it('a user without permission on the prefix is denied (Unknown "etcdserver: permission denied"); root is not', async () => {
    const root = (await as<{ token: string }>(auth, 'Authenticate', { name: 'root', password: 'root' })).token;
    const alice = (await as<{ token: string }>(auth, 'Authenticate', { name: 'alice', password: 'alice' })).token;
    const id = (await as<{ ID: string }>(lease, 'LeaseGrant', { TTL: 30 }, root)).ID;
    const denied = async (p: Promise<unknown>, message: string) => {
      const err = await rejection(p);
      assert.deepEqual([err.code, err.details], [grpc.status.UNKNOWN, message]);
    };
    await denied(as(election, 'Campaign', { name: b('x'), lease: id, value: b('v') }, alice), 'etcdserver: permission denied');
    await denied(as(election, 'Leader', { name: b('x') }, alice), 'etcdserver: permission denied');
    await denied(as(lock, 'Lock', { name: b('x'), lease: id }, alice), 'etcdserver: permission denied');
    await denied(as(lock, 'Unlock', { key: b('x') }, alice), 'etcdserver: permission denied');
    await denied(as(election, 'Leader', { name: b('x') }), 'etcdserver: user name is empty');
    await denied(as(election, 'Leader', { name: b('x') }, 'bogus.1'), 'etcdserver: invalid auth token');
    const c = await as<{ leader: LeaderKey }>(election, 'Campaign', { name: b('x'), lease: id, value: b('v') }, root);
    assert.equal(c.leader.key.toString(), `x/${BigInt(id).toString(16)}`);
    assert.equal((await as<{ kv: Kv }>(election, 'Leader', { name: b('x') }, root)).kv.value.toString(), 'v');
  });
});
