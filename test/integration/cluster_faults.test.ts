// Faults on real member processes under continuous writes. In every scenario a Writer (several
// concurrent gRPC clients, round-robin over the reachable members, a fresh key per attempt) runs
// through the fault; afterwards every acknowledged put must be on every member with the revision it
// was acknowledged with, and all members must hold the same data (full range compare + HashKV).
// Timings: --heartbeat-interval=50 --election-timeout=500.
import assert from 'node:assert/strict';
import {
  ELECTION_TIMEOUT_MS,
  Writer,
  checkAgreement,
  get,
  put,
  sleep,
  startCluster,
  status,
  waitFor,
  type Cluster,
  type ClusterMember, stopWriterAndCluster } from './cluster_harness';

/** Bound on "a new leader serves writes" after the leader dies: a few election timeouts. */
const FAILOVER_MS_MAX = 5_000;

/** Time until a put through one of `members` is acknowledged (each attempt bounded). */
async function timeToFirstWrite(members: ClusterMember[], key: string, startMs: number, timeoutMs: number): Promise<number> {
  let i = 0;
  await waitFor(`a write through ${members.map((m) => m.name).join(',')}`, timeoutMs, async () => {
    await put(members[i++ % members.length]!.endpoint, key, 'probe', 500);
    return true;
  }, 10);
  return Date.now() - startMs;
}

/** The last info-or-worse log lines of a member, minus the snapshot-taken chatter. */
function logTail(m: ClusterMember, lines = 15): string {
  const keep = m.output().split('\n').filter((l) => l.trim() !== '' && !l.includes('"level":"debug"') && !l.includes('snapshot taken;'));
  return keep.slice(-lines).map((l) => `  ${m.name}: ${l.slice(0, 400)}`).join('\n');
}

function others(c: Cluster, m: ClusterMember): ClusterMember[] {
  return c.members.filter((x) => x !== m);
}

const SPILL_ALL = '--hot-value-bytes=0';

describe('cluster faults under continuous writes (real processes)', function () {
  this.timeout(90_000);
  let c: Cluster | undefined;
  let w: Writer | undefined;
  afterEach(async () => {
    await stopWriterAndCluster(w, c);
    w = c = undefined;
  });
  const startWriter = (cl: Cluster, endpoints?: () => string[]) => (w = new Writer(endpoints ?? (() => cl.running().map((m) => m.endpoint))).start());

  // a), c) and d) run with every value moved out of the heap (--hot-value-bytes=0): reads, the
  // agreement check (hashes) and the snapshot install then go through the spill files.
  it('a) SIGKILL of the leader: a new leader serves writes within a few election timeouts; the killed member restarts and catches up', async () => {
    c = await startCluster({ size: 3, args: [SPILL_ALL] });
    const writer = startWriter(c);
    await writer.waitForAcks(200);
    const old = await c.waitForLeader();
    const t0 = Date.now();
    await old.stop('SIGKILL');
    const failoverMs = await timeToFirstWrite(others(c, old), 'probe/a', t0, 10_000);
    const newLeader = await c.waitForLeader(5_000);
    assert.notEqual(newLeader, old);
    console.log(`      failover after SIGKILL of the leader: first acknowledged write after ${failoverMs} ms (election timeout ${ELECTION_TIMEOUT_MS} ms)`);
    assert.ok(failoverMs < FAILOVER_MS_MAX, `failover took ${failoverMs} ms`);
    await writer.waitForAcks(200);
    await old.restart();
    await writer.waitForAcks(200);
    await writer.stop();
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
  });

  it('b) SIGSTOP of the leader for 4 election timeouts: another leader is elected; the old one steps down on SIGCONT and catches up', async () => {
    c = await startCluster({ size: 3 });
    const writer = startWriter(c);
    await writer.waitForAcks(200);
    const old = await c.waitForLeader();
    old.pause();
    const t0 = Date.now();
    const next = await c.waitForLeader(5_000, { among: others(c, old) });
    console.log(`      leader ${next.name} elected ${Date.now() - t0} ms after SIGSTOP of ${old.name}`);
    await writer.waitForAcks(200);
    await sleep(Math.max(0, 4 * ELECTION_TIMEOUT_MS - (Date.now() - t0)));
    old.resume();
    await waitFor(`${old.name} to follow a leader other than itself`, 5_000, async () => {
      const s = await status(old.endpoint);
      return s.leader !== '0' && BigInt(s.leader).toString(16) !== old.id ? true : undefined;
    });
    await writer.waitForAcks(200);
    await writer.stop();
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
  });

  it('c) a follower that fell behind log compaction catches up by snapshot (--snapshot-count=100)', async function () {
    this.timeout(150_000);
    c = await startCluster({ size: 3, args: ['--snapshot-count=100', SPILL_ALL] });
    const leader = await c.waitForLeader();
    const follower = others(c, leader)[0]!;
    for (let i = 0; i < 20; i++) await put(leader.endpoint, `early/${i}`, `${i}`);
    await c.waitForRevision(21);
    await follower.stop('SIGKILL');
    // The leader keeps 5,000 entries behind each snapshot for slow followers: write more than that,
    // so that the entries the follower needs are gone from its log.
    const writer = new Writer(() => others(c!, follower).map((m) => m.endpoint), 'w/', 32, 3000);
    w = writer.start();
    await writer.waitForAcks(6_000, 100_000);
    await writer.stop();
    await follower.restart();
    await waitFor(
      () => `${follower.name} to install a snapshot; its log:\n${logTail(follower)}\nthe others' logs:\n${others(c!, follower).map(logTail).join('\n')}`,
      30_000,
      () => (follower.output().includes('installed snapshot from the leader') ? true : undefined),
    );
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
    const early = await get(follower.endpoint, 'early/7', { serializable: true });
    assert.equal(early?.value, '7');
  });

  it('d) partition isolating the leader: the majority elects a leader and serves writes; the old leader acknowledges nothing; after healing all data agrees', async () => {
    c = await startCluster({ size: 3, args: [SPILL_ALL] });
    const old = await c.waitForLeader();
    const majority = others(c, old);
    const writer = startWriter(c, () => majority.map((m) => m.endpoint));
    await writer.waitForAcks(100);
    await old.isolate();
    const t0 = Date.now();
    // Sent to the isolated leader right away, while it still believes it leads.
    const early = put(old.endpoint, 'isolated/early', 'must-not-be-acked', 3_000).then(
      (rev) => `acknowledged at revision ${rev}`,
      () => undefined,
    );
    const next = await c.waitForLeader(5_000, { among: majority });
    console.log(`      ${next.name} leads the majority ${Date.now() - t0} ms after the partition`);
    await writer.waitForAcks(200);
    const late = await put(old.endpoint, 'isolated/late', 'must-not-be-acked', 3_000).then(
      (rev) => `acknowledged at revision ${rev}`,
      () => undefined,
    );
    assert.equal(await early, undefined, 'the isolated old leader acknowledged a put sent right after the partition');
    assert.equal(late, undefined, 'the isolated old leader acknowledged a put');
    // A linearizable read on the isolated member must not return (it cannot confirm it is current).
    const read = await get(old.endpoint, writer.acked[writer.acked.length - 1]!.key, { deadlineMs: 2_000 }).then(
      (kv) => `returned ${kv ? kv.value : 'nothing'}`,
      () => undefined,
    );
    assert.equal(read, undefined, 'a linearizable read on the isolated member');
    await old.heal();
    await waitFor(`${old.name} to rejoin`, 10_000, async () => {
      const s = await status(old.endpoint);
      return s.leader !== '0' ? true : undefined;
    });
    await writer.waitForAcks(200);
    await writer.stop();
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
  });

  it('e) adding and then removing a member during writes', async () => {
    c = await startCluster({ size: 3 });
    const writer = startWriter(c);
    await writer.waitForAcks(200);
    const added = await c.addMember();
    await writer.waitForAcks(200);
    await c.waitForRevision(writer.maxRevision(), 20_000, [added]);
    await c.removeMember(added);
    await writer.waitForAcks(200);
    await writer.stop();
    assert.equal(c.members.length, 3);
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
  });

  it('e2) removing the leader during writes: the others elect a leader and keep serving', async () => {
    c = await startCluster({ size: 3 });
    const writer = startWriter(c);
    await writer.waitForAcks(200);
    const old = await c.waitForLeader();
    await c.removeMember(old);
    await c.waitForLeader(5_000);
    await writer.waitForAcks(200);
    await writer.stop();
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
  });

  it('f) 5 members: with 2 down writes and linearizable reads are served; with 3 down writes fail instead of being acknowledged', async () => {
    c = await startCluster({ size: 5 });
    const writer = startWriter(c);
    await writer.waitForAcks(200);
    const leader = await c.waitForLeader();
    const [a, b, d] = others(c, leader);
    await a!.stop('SIGKILL');
    await b!.stop('SIGKILL');
    await writer.waitForAcks(200);
    for (const m of c.running()) {
      const rev = await put(m.endpoint, `two-down/${m.name}`, 'x', 5_000);
      for (const r of c.running()) assert.equal((await get(r.endpoint, `two-down/${m.name}`, { deadlineMs: 5_000 }))?.mod_revision, rev);
    }
    await writer.stop();
    await d!.stop('SIGKILL');
    const up = c.running();
    const outcomes = await Promise.all(
      up.map((m) => put(m.endpoint, `three-down/${m.name}`, 'must-not-be-acked', 3_000).then((rev) => `${m.name}: acknowledged at ${rev}`, () => undefined)),
    );
    assert.deepEqual(outcomes.filter(Boolean), [], 'writes acknowledged without a quorum');
    const reads = await Promise.all(up.map((m) => get(m.endpoint, 'two-down/x', { deadlineMs: 2_000 }).then(() => `${m.name}: linearizable read served`, () => undefined)));
    assert.deepEqual(reads.filter(Boolean), [], 'linearizable reads served without a quorum');
    for (const m of [a!, b!, d!]) await m.restart();
    await c.waitForLeader(10_000);
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
  });
});
