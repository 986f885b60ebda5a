// The backend quota (--quota-backend-bytes) on real server processes, checked with the real etcdctl
// against what etcd 3.4 does: filling the backend raises a NOSPACE alarm through the log (so every
// member lists it); from then on puts, txns with a put and lease grants fail with ResourceExhausted
// "etcdserver: mvcc: database space exceeded", while reads, deletes, delete-only txns and compaction
// go on; the alarm survives a restart; compact + defrag + `alarm disarm` bring writes back (and a
// disarm without a defrag does not: the next write raises the alarm again, as in etcd).
import assert from 'node:assert/strict';
import { etcdctl, hasEtcdctl, startServer, type ServerProcess, requireEtcdctl } from './harness';
import { closeClients, startCluster, unary, waitFor, type Cluster } from './cluster_harness';

const QUOTA_BYTES = 2 * 1024 * 1024;
const VALUE = Buffer.alloc(100 * 1024, 'q');
const NO_SPACE = 'etcdserver: mvcc: database space exceeded';
const QUOTA_ARGS = [`--quota-backend-bytes=${QUOTA_BYTES}`];

/** Puts 100 KiB values under `prefix` through `endpoint` until the server refuses one; returns how
 *  many it took. Fails if the quota never bites (or bites at once). */
async function fillUntilNoSpace(endpoint: string, prefix: string): Promise<number> {
  for (let i = 0; i < 60; i++) {
    try {
      await unary(endpoint, 'KV', 'Put', { key: Buffer.from(`${prefix}${i % 40}`), value: VALUE }, 10_000);
    } catch (err) {
      const e = err as { code: number; details: string };
      assert.equal(e.code, 8, `expected ResourceExhausted, got ${e.code} ${e.details}`);
      assert.equal(e.details, NO_SPACE);
      assert.ok(i >= 10, `refused after only ${i} puts of 100 KiB with a 2 MiB quota`);
      return i;
    }
  }
  throw new Error('60 puts of 100 KiB never hit a 2 MiB quota');
}

async function ctlOk(endpoint: string, ...args: string[]): Promise<string> {
  const r = await etcdctl(endpoint, args);
  assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** etcdctl must fail with exactly etcd's NoSpace message. */
async function ctlNoSpace(endpoint: string, args: string[], input?: string): Promise<void> {
  const r = await etcdctl(endpoint, args, input);
  assert.notEqual(r.code, 0, `etcdctl ${args.join(' ')} succeeded with the NOSPACE alarm up: ${r.stdout}`);
  assert.match(r.stderr, new RegExp(`Error: .*${NO_SPACE}`), r.stderr);
}

async function statusOf(endpoint: string): Promise<{ memberId: string; revision: number; dbSize: number; errors: string[] }> {
  const raw = await ctlOk(endpoint, 'endpoint', 'status', '-w', 'json');
  const st = JSON.parse(raw)[0].Status;
  // member_id is a uint64: take it from the text, not from a lossy JS number.
  const memberId = /"member_id":(\d+)/.exec(raw)![1]!;
  return { memberId, revision: st.header.revision, dbSize: st.dbSize, errors: st.errors ?? [] };
}

describe('backend quota: NOSPACE alarm and recovery (1 member, etcdctl)', function () {
  this.timeout(90_000);
  let srv: ServerProcess;

  before(async function () {
    requireEtcdctl(this);
    srv = await startServer({ args: QUOTA_ARGS });
  });
  after(async () => {
    closeClients();
    if (srv) await srv.stop();
  });

  it('filling the backend raises NOSPACE for this member; alarm list and endpoint status show it', async () => {
    await fillUntilNoSpace(srv.endpoint, 'fill/');
    const st = await statusOf(srv.endpoint);
    assert.equal((await ctlOk(srv.endpoint, 'alarm', 'list')).trim(), `memberID:${st.memberId} alarm:NOSPACE`);
    assert.deepEqual(st.errors, [`memberID:${st.memberId} alarm:NOSPACE `]);
    assert.ok(st.dbSize >= QUOTA_BYTES - 2 * VALUE.length && st.dbSize < QUOTA_BYTES, `dbSize ${st.dbSize}`);
  });

  it('puts, txns with a put and lease grants are refused, even tiny ones', async () => {
    await ctlNoSpace(srv.endpoint, ['put', 'small', 'v']);
    await ctlNoSpace(srv.endpoint, ['txn'], 'value("fill/1") = "nope"\n\nput a b\n\nput c d\n\n');
    await ctlNoSpace(srv.endpoint, ['lease', 'grant', '60']);
  });

  it('reads, read-only and delete-only txns, deletes and compaction still work', async () => {
    assert.equal((await ctlOk(srv.endpoint, 'get', 'fill/0', '--keys-only')).trim(), 'fill/0');
    assert.match((await etcdctl(srv.endpoint, ['txn'], '\n\n\n')).stdout, /^SUCCESS/, 'an empty txn');
    assert.match(await etcdctl(srv.endpoint, ['txn'], 'value("fill/1") = "nope"\n\nget x\n\ndel fill/1\n\n').then((r) => r.stdout), /^FAILURE\n\n1/);
    assert.equal((await ctlOk(srv.endpoint, 'del', 'fill/2')).trim(), '1');
    const { revision } = await statusOf(srv.endpoint);
    assert.match(await ctlOk(srv.endpoint, 'compact', String(revision)), new RegExp(`compacted revision ${revision}`));
  });

  it('the alarm survives a restart (it is in the backend and the log)', async () => {
    await srv.stop('SIGKILL');
    srv = await startServer({ args: QUOTA_ARGS, dataDir: srv.dataDir });
    const st = await statusOf(srv.endpoint);
    assert.equal((await ctlOk(srv.endpoint, 'alarm', 'list')).trim(), `memberID:${st.memberId} alarm:NOSPACE`);
    await ctlNoSpace(srv.endpoint, ['put', 'after-restart', 'v']);
  });

  it('deleting and compacting without a defrag is not enough: after a disarm the next big put raises the alarm again', async () => {
    const before = (await statusOf(srv.endpoint)).dbSize;
    assert.ok(Number((await ctlOk(srv.endpoint, 'del', 'fill/', '--prefix')).trim()) > 0);
    await ctlOk(srv.endpoint, 'compact', String((await statusOf(srv.endpoint)).revision));
    // (Deletes write tombstones, so it even grows a little.)
    assert.ok((await statusOf(srv.endpoint)).dbSize >= before, 'the size comes down only with a defrag (freed space is reused, as in bolt)');
    await ctlOk(srv.endpoint, 'alarm', 'disarm');
    await assert.rejects(unary(srv.endpoint, 'KV', 'Put', { key: Buffer.from('too-early'), value: VALUE }, 10_000), (e: { details: string }) => e.details === NO_SPACE);
    assert.match(await ctlOk(srv.endpoint, 'alarm', 'list'), /alarm:NOSPACE/);
  });

  it('defrag shrinks the backend below the quota; after disarm, writes and lease grants work again', async () => {
    assert.match(await ctlOk(srv.endpoint, 'defrag'), /Finished defragmenting etcd member/);
    const st = await statusOf(srv.endpoint);
    assert.ok(st.dbSize < QUOTA_BYTES / 10, `dbSize after compact + defrag: ${st.dbSize}`);
    await ctlNoSpace(srv.endpoint, ['put', 'still-armed', 'v']); // the alarm, not the size, refuses it
    assert.match(await ctlOk(srv.endpoint, 'alarm', 'disarm'), new RegExp(`memberID:${st.memberId} alarm:NOSPACE`));
    assert.equal(await ctlOk(srv.endpoint, 'alarm', 'list'), '');
    assert.equal((await ctlOk(srv.endpoint, 'put', 'back', 'in-business')).trim(), 'OK');
    assert.match(await ctlOk(srv.endpoint, 'lease', 'grant', '60'), /granted with TTL\(60s\)/);
    assert.deepEqual((await statusOf(srv.endpoint)).errors, []);
  });
});

describe('backend quota on a 3-member cluster: the alarm is cluster-wide', function () {
  this.timeout(120_000);
  let c: Cluster;

  before(async function () {
    if (!hasEtcdctl()) this.skip();
    c = await startCluster({ size: 3, args: QUOTA_ARGS });
    await c.waitForLeader();
  });
  after(async () => {
    closeClients();
    if (c) await c.stopAll();
  });

  it('the member that hit the quota raises NOSPACE; every member lists it and refuses writes', async () => {
    const [n1, n2, n3] = c.members as [typeof c.members[0], typeof c.members[0], typeof c.members[0]];
    await fillUntilNoSpace(n1.endpoint, 'fill/');
    const raiser = (await statusOf(n1.endpoint)).memberId;
    for (const m of c.members) {
      const listed = await waitFor(`the alarm on ${m.name}`, 10_000, async () => {
        const out = (await ctlOk(m.endpoint, 'alarm', 'list')).trim();
        return out === '' ? undefined : out;
      });
      assert.equal(listed, `memberID:${raiser} alarm:NOSPACE`, m.name);
    }
    // A tiny put still fits under every member's own size check; the replicated alarm refuses it
    // when it is applied.
    await ctlNoSpace(n2.endpoint, ['put', 'via-n2', 'v']);
    await ctlNoSpace(n3.endpoint, ['lease', 'grant', '60']);
    assert.equal((await ctlOk(n3.endpoint, 'get', 'fill/0', '--keys-only')).trim(), 'fill/0');
  });

  it('del + compact (any member), defrag on every member and one disarm bring writes back everywhere', async () => {
    const [n1, n2, n3] = c.members as [typeof c.members[0], typeof c.members[0], typeof c.members[0]];
    await ctlOk(n2.endpoint, 'del', 'fill/', '--prefix');
    await ctlOk(n2.endpoint, 'compact', String((await statusOf(n2.endpoint)).revision));
    for (const m of c.members) await ctlOk(m.endpoint, 'defrag');
    await ctlOk(n3.endpoint, 'alarm', 'disarm');
    for (const m of c.members) {
      await waitFor(`no alarm on ${m.name}`, 10_000, async () => ((await ctlOk(m.endpoint, 'alarm', 'list')) === '' ? true : undefined));
      assert.equal((await ctlOk(m.endpoint, 'put', `after/${m.name}`, 'v')).trim(), 'OK');
    }
    assert.equal((await ctlOk(n1.endpoint, 'get', 'after/', '--prefix', '--keys-only')).trim().split(/\n+/).length, 3);
  });
});
