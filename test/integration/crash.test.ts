// Durability on the real process: every acknowledged write survives kill -9 at any moment, with
// the revision it was acknowledged with; a second process on the same data dir is refused.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/proto';
import { SERVER_BIN, startServer, tempDir, type ServerProcess } from './harness';

type Cb = (err: grpc.ServiceError | null, res: { header: { revision: string }; kvs?: { key: Buffer; value: Buffer; mod_revision: string }[] }) => void;
interface KvClient extends grpc.Client {
  Put(req: object, cb: Cb): void;
  Range(req: object, cb: Cb): void;
}

function kvClient(endpoint: string): KvClient {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('etcdserverpb.KV'), 'KV');
  return new Ctor(endpoint, grpc.credentials.createInsecure()) as unknown as KvClient;
}

function call(fn: (cb: Cb) => void): Promise<Parameters<Cb>[1]> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

/** A tiny seeded PRNG so a failing iteration can be reproduced from the printed seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

describe('crash safety of a single member (real process, SIGKILL)', function () {
  this.timeout(240_000);
  const ITERATIONS = Number(process.env.QUORUMKV_CRASH_ITERATIONS ?? 20);

  it(`every acknowledged put survives SIGKILL at a random moment (${ITERATIONS} kills)`, async () => {
    const dataDir = tempDir();
    const seed = Number(process.env.QUORUMKV_CRASH_SEED ?? Date.now() % 1_000_000);
    const rand = rng(seed);
    const acked = new Map<string, { value: string; revision: number }>();
    let seq = 0;
    let totalAcked = 0;
    for (let it = 0; it < ITERATIONS; it++) {
      // Every other start moves every value out of the heap (spill file), so restarts also switch
      // between the two ways of holding values.
      const srv = await startServer({ dataDir, args: it % 2 === 1 ? ['--hot-value-bytes=0'] : [] });
      const client = kvClient(srv.endpoint);
      try {
        // Everything acknowledged before this restart must be here.
        await verify(client, acked, `seed ${seed}, after restart ${it}`);
        let stop = false;
        const writers = Array.from({ length: 16 }, async () => {
          while (!stop) {
            const key = `crash/${String(seq++).padStart(8, '0')}`;
            const value = `${key}:${it}`;
            try {
              const res = await call((cb) => client.Put({ key: Buffer.from(key), value: Buffer.from(value) }, cb));
              acked.set(key, { value, revision: Number(res.header.revision) });
              totalAcked++;
            } catch {
              stop = true; // the server died under us: unacknowledged, so no promise was made
            }
          }
        });
        await new Promise((r) => setTimeout(r, 150 + rand() * 900));
        await srv.stop('SIGKILL');
        stop = true;
        await Promise.all(writers);
      } finally {
        client.close();
        await srv.stop();
      }
    }
    const srv = await startServer({ dataDir });
    const client = kvClient(srv.endpoint);
    try {
      await verify(client, acked, `seed ${seed}, final`);
    } finally {
      client.close();
      await srv.stop();
    }
    console.log(`      ${totalAcked} puts acknowledged across ${ITERATIONS} SIGKILLs (seed ${seed}); all present with their revisions`);
    assert.ok(totalAcked > 1000, `only ${totalAcked} puts were acknowledged in ${ITERATIONS} runs`);
  });

  async function verify(client: KvClient, acked: Map<string, { value: string; revision: number }>, ctx: string): Promise<void> {
    const res = await call((cb) => client.Range({ key: Buffer.from('crash/'), range_end: Buffer.from('crash0') }, cb));
    const got = new Map((res.kvs ?? []).map((kv) => [kv.key.toString(), kv]));
    for (const [key, { value, revision }] of acked) {
      const kv = got.get(key);
      assert.ok(kv, `${ctx}: acknowledged key ${key} (revision ${revision}) is missing`);
      assert.equal(kv.value.toString(), value, `${ctx}: ${key}`);
      assert.equal(Number(kv.mod_revision), revision, `${ctx}: ${key} has another revision`);
    }
  }

  it('restart after a clean stop keeps data, revisions and history', async () => {
    const dataDir = tempDir();
    let srv: ServerProcess = await startServer({ dataDir });
    let client = kvClient(srv.endpoint);
    const r1 = await call((cb) => client.Put({ key: Buffer.from('h'), value: Buffer.from('1') }, cb));
    await call((cb) => client.Put({ key: Buffer.from('h'), value: Buffer.from('2') }, cb));
    client.close();
    await srv.stop('SIGTERM');
    srv = await startServer({ dataDir });
    client = kvClient(srv.endpoint);
    try {
      const old = await call((cb) => client.Range({ key: Buffer.from('h'), revision: r1.header.revision }, cb));
      assert.equal(old.kvs![0]!.value.toString(), '1');
      const now = await call((cb) => client.Range({ key: Buffer.from('h') }, cb));
      assert.equal(now.kvs![0]!.value.toString(), '2');
      assert.equal(Number(now.header.revision), Number(r1.header.revision) + 1);
    } finally {
      client.close();
      await srv.stop();
    }
  });

  it('a second process on the same data dir is refused with a clear error', async () => {
    const dataDir = tempDir();
    const srv = await startServer({ dataDir });
    try {
      const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
        const p = spawn(process.execPath, [SERVER_BIN, `--data-dir=${dataDir}`, '--listen-client-urls=http://127.0.0.1:1', '--listen-peer-urls=http://127.0.0.1:2'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        p.stdout.on('data', (d) => (text += d));
        p.stderr.on('data', (d) => (text += d));
        const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
        p.on('exit', (code) => (clearTimeout(t), resolve({ code, text })));
      });
      assert.notEqual(out.code, 0);
      assert.match(out.text, /in use by another quorumkv process/);
    } finally {
      await srv.stop();
    }
  });
});

describe('leases across a restart', function () {
  this.timeout(60_000);
  it('a granted lease and its keys survive SIGKILL; the lease still expires and revokes them', async function () {
    const { etcdctl, hasEtcdctl } = await import('./harness');
    if (!hasEtcdctl()) this.skip();
    const dataDir = tempDir();
    let srv = await startServer({ dataDir });
    const grant = await etcdctl(srv.endpoint, ['lease', 'grant', '4']);
    const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
    assert.ok(id, grant.stdout + grant.stderr);
    assert.equal((await etcdctl(srv.endpoint, ['put', 'leased', 'v', `--lease=${id}`])).code, 0);
    await srv.stop('SIGKILL');
    srv = await startServer({ dataDir });
    try {
      const ttl = await etcdctl(srv.endpoint, ['lease', 'timetolive', id, '--keys']);
      assert.match(ttl.stdout, /granted with TTL\(4s\)/, ttl.stdout + ttl.stderr);
      assert.match(ttl.stdout, /attached keys\(\[leased\]\)/);
      // Nobody keeps it alive: it expires (after the TTL plus the new leader's grace) and the key goes.
      const deadline = Date.now() + 15_000;
      let gone = false;
      while (!gone && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        gone = (await etcdctl(srv.endpoint, ['get', 'leased'])).stdout === '';
      }
      assert.ok(gone, 'the restored lease never expired');
    } finally {
      await srv.stop();
    }
  });
});

describe('snapshots and WAL release under load', function () {
  this.timeout(60_000);
  it('with --snapshot-count=50, concurrent writes keep succeeding, old WAL segments go, a restart has everything', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const dataDir = tempDir();
    let srv = await startServer({ dataDir, args: ['--snapshot-count=50'] });
    let client = kvClient(srv.endpoint);
    const value = Buffer.alloc(2048, 'w');
    let n = 0;
    await Promise.all(
      Array.from({ length: 20 }, async (_, w) => {
        for (let i = 0; i < 60; i++) {
          await call((cb) => client.Put({ key: Buffer.from(`snap/${w}/${i}`), value }, cb));
          n++;
        }
      }),
    );
    assert.equal(n, 1200);
    assert.doesNotMatch(srv.output(), /snapshot failed|write-ahead log failed/);
    assert.match(srv.output(), /snapshot taken/);
    client.close();
    await srv.stop('SIGKILL');
    srv = await startServer({ dataDir });
    client = kvClient(srv.endpoint);
    try {
      const res = await call((cb) => client.Range({ key: Buffer.from('snap/'), range_end: Buffer.from('snap0'), count_only: true }, cb));
      assert.equal(Number((res as unknown as { count: string }).count), 1200);
      const walFiles = fs.readdirSync(path.join(dataDir, 'member', 'wal'));
      assert.ok(walFiles.length >= 1);
    } finally {
      client.close();
      await srv.stop();
    }
  });
});
