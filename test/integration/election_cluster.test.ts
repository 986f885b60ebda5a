// Election across a 3-member cluster: candidates on different members (followers included), the
// waiting candidate's lease kept alive through a follower (relayed to the leader's lessor), and an
// Observe stream on a third member that sees each leader in turn.
// Timings: --heartbeat-interval=50 --election-timeout=500.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/proto';
import { closeClients, startCluster, type Cluster } from './cluster_harness';

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
interface LeaderKey {
  name: Buffer;
  key: Buffer;
  rev: string;
  lease: string;
}
const b = (s: string) => Buffer.from(s);

function client(service: string, endpoint: string): Client {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service);
  return new Ctor(endpoint, grpc.credentials.createInsecure()) as unknown as Client;
}

function call<T>(c: Client, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => c[method](req, { deadline: Date.now() + 30_000 }, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
}

describe('Election across a 3-member cluster', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  const opened: Client[] = [];
  const open = (service: string, endpoint: string) => {
    const c = client(service, endpoint);
    opened.push(c);
    return c;
  };

  before(async () => {
    cluster = await startCluster({ size: 3 });
    await cluster.waitForLeader();
  });
  after(async () => {
    for (const c of opened) c.close();
    closeClients();
    await cluster?.stopAll();
  });

  it('candidates on followers; the waiter keeps its lease through a follower; Observe elsewhere sees each leader', async () => {
    const leader = await cluster.waitForLeader();
    const [f1, f2] = cluster.members.filter((m) => m !== leader);
    const e1 = open('v3electionpb.Election', f1!.endpoint);
    const e2 = open('v3electionpb.Election', f2!.endpoint);
    const eL = open('v3electionpb.Election', leader.endpoint);
    const la = (await call<{ ID: string }>(open('etcdserverpb.Lease', f1!.endpoint), 'LeaseGrant', { TTL: 30 })).ID;
    const lb = (await call<{ ID: string }>(open('etcdserverpb.Lease', f2!.endpoint), 'LeaseGrant', { TTL: 2 })).ID;

    const seen: string[] = [];
    const obs = (eL as unknown as { Observe(req: object): grpc.ClientReadableStream<{ kv: { value: Buffer } }> }).Observe({ name: b('ce') });
    obs.on('data', (r: { kv: { value: Buffer } }) => seen.push(r.kv.value.toString()));
    obs.on('error', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const a = (await call<{ leader: LeaderKey }>(e1, 'Campaign', { name: b('ce'), lease: la, value: b('A') })).leader;
      const bDone = call<{ leader: LeaderKey }>(e2, 'Campaign', { name: b('ce'), lease: lb, value: b('B') });
      await new Promise((r) => setTimeout(r, 3500)); // longer than B's TTL: only the session's keepalives keep it
      await call(eL, 'Resign', { leader: a });
      const bl = (await bDone).leader;
      assert.equal(bl.key.toString(), `ce/${BigInt(lb).toString(16)}`);
      const deadline = Date.now() + 5000;
      while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(seen, ['A', 'B']);
      // B's key outlived B's own TTL: the campaign's session kept it alive.
      const now = await call<{ kv: { value: Buffer; lease: string } }>(e1, 'Leader', { name: b('ce') });
      assert.deepEqual([now.kv.value.toString(), now.kv.lease], ['B', lb]);
    } finally {
      obs.cancel();
    }
  });
});
