// Require-leader (request metadata `hasleader: true`, clientv3.WithRequireLeader) on a 3-member
// cluster that loses quorum: on the surviving member, requests that carry it fail at once with
// Unavailable "etcdserver: no leader", streams opened with it (Watch, LeaseKeepAlive) are ended with
// that error after 3 election timeouts without a leader, and `etcdctl watch` (which always sets it)
// exits with it instead of hanging. Streams and requests without it are left alone.
// Timings: --heartbeat-interval=50 --election-timeout=500.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/proto';
import { hasEtcdctl, killGroup, trackProcess } from './harness';
import { ELECTION_TIMEOUT_MS, closeClients, put, startCluster, waitFor, type Cluster } from './cluster_harness';

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
type GrpcError = Error & { code: number; details: string };

/** Bound on "the member notices it has no leader, then 3 more election timeouts pass". */
const STREAM_END_MS_MAX = 10 * ELECTION_TIMEOUT_MS + 3000;

function client(service: string, endpoint: string): Client {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service);
  return new Ctor(endpoint, grpc.credentials.createInsecure()) as unknown as Client;
}

function md(requireLeader: boolean): grpc.Metadata {
  const m = new grpc.Metadata();
  if (requireLeader) m.set('hasleader', 'true');
  return m;
}

/** A bidi stream kept open; `ended` resolves with its error (or null for OK). */
function openStream(c: Client, method: string, requireLeader: boolean, first: object) {
  const s = (c[method] as (m: grpc.Metadata) => grpc.ClientDuplexStream<object, unknown>)(md(requireLeader));
  const ended = new Promise<GrpcError | null>((resolve) => {
    s.on('error', (err: GrpcError) => resolve(err));
    s.on('end', () => resolve(null));
  });
  s.on('data', () => undefined);
  s.write(first);
  return { stream: s, ended };
}

function range(c: Client, requireLeader: boolean, serializable = false): Promise<unknown> {
  return new Promise((resolve, reject) =>
    c.Range({ key: Buffer.from('k'), serializable }, md(requireLeader), { deadline: Date.now() + 10_000 }, (err: GrpcError | null, res: unknown) => (err ? reject(err) : resolve(res))),
  );
}

async function settled<T>(p: Promise<T>, ms: number): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return done;
}

describe('require-leader (hasleader metadata) on a member that lost quorum', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  const opened: Client[] = [];

  before(async () => {
    cluster = await startCluster({ size: 3 });
    await cluster.waitForLeader();
  });
  after(async () => {
    for (const c of opened) c.close();
    closeClients();
    await cluster?.stopAll();
  });

  it('fails requests and ends streams that require a leader; leaves the others alone', async () => {
    const leader = await cluster.waitForLeader();
    const survivor = cluster.members.find((m) => m !== leader)!;
    await put(survivor.endpoint, 'k', 'v');
    const kv = client('etcdserverpb.KV', survivor.endpoint);
    const watch = client('etcdserverpb.Watch', survivor.endpoint);
    const lease = client('etcdserverpb.Lease', survivor.endpoint);
    opened.push(kv, watch, lease);
    await range(kv, true); // with a leader: served

    const grant = await new Promise<{ ID: string }>((resolve, reject) => lease.LeaseGrant({ TTL: 60 }, (e: GrpcError | null, r: { ID: string }) => (e ? reject(e) : resolve(r))));
    const required = openStream(watch, 'Watch', true, { create_request: { key: Buffer.from('k') } });
    const plain = openStream(watch, 'Watch', false, { create_request: { key: Buffer.from('k') } });
    const keepAlive = openStream(lease, 'LeaseKeepAlive', true, { ID: grant.ID });
    let etcdctlOut = '';
    let etcdctlExit: Promise<number | null> | undefined;
    if (hasEtcdctl()) {
      const p = spawn('etcdctl', [`--endpoints=${survivor.endpoint}`, 'watch', 'k'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ETCDCTL_API: '3' } });
      trackProcess(p);
      p.stdout!.on('data', (d) => (etcdctlOut += d));
      p.stderr!.on('data', (d) => (etcdctlOut += d));
      etcdctlExit = new Promise((resolve) => p.on('exit', (code) => resolve(code)));
      const t = setTimeout(() => killGroup(p), STREAM_END_MS_MAX + 10_000);
      void etcdctlExit.then(() => clearTimeout(t));
    }
    await new Promise((r) => setTimeout(r, 300));

    const lostAt = Date.now();
    for (const m of cluster.members) if (m !== survivor) await m.stop();

    // New requests and streams that require a leader fail at once, once the member knows.
    await waitFor('the survivor to refuse hasleader requests', STREAM_END_MS_MAX, async () => {
      try {
        await range(kv, true);
        return undefined;
      } catch (err) {
        return (err as GrpcError).details === 'etcdserver: no leader' ? true : undefined;
      }
    });
    const t0 = Date.now();
    const err = await range(kv, true).then(
      () => assert.fail('served without a leader'),
      (e: GrpcError) => e,
    );
    assert.deepEqual([err.code, err.details], [grpc.status.UNAVAILABLE, 'etcdserver: no leader']);
    assert.ok(Date.now() - t0 < 1000, 'the refusal was not immediate');
    const late = openStream(watch, 'Watch', true, { create_request: { key: Buffer.from('k') } });
    const lateErr = await late.ended;
    assert.deepEqual([lateErr?.code, lateErr?.details], [grpc.status.UNAVAILABLE, 'etcdserver: no leader']);
    await range(kv, false, true); // serializable, without hasleader: still served

    // Open streams that require a leader are ended after 3 election timeouts without one.
    for (const s of [required, keepAlive]) {
      const e = await Promise.race([s.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), STREAM_END_MS_MAX))]);
      if (e === 'open') assert.fail('a hasleader stream stayed open without a leader');
      assert.deepEqual([e?.code, e?.details], [grpc.status.UNAVAILABLE, 'etcdserver: no leader']);
    }
    assert.ok(Date.now() - lostAt >= 3 * ELECTION_TIMEOUT_MS, 'streams ended before 3 election timeouts');
    assert.equal(await settled(plain.ended, 200), false, 'a stream without hasleader was ended');
    plain.stream.cancel();

    if (etcdctlExit) {
      const code = await etcdctlExit;
      assert.notEqual(code, 0, etcdctlOut);
      assert.match(etcdctlOut, /etcdserver: no leader/);
    }
  });
});
