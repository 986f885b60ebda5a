// A Raft snapshot install cut short by kill -9, on real member processes, from either side:
//   - the receiving follower dies while it writes the stream into member/backend.incoming: at its
//     next start it must drop the partial copy (never open it as its state), start from its own
//     backend, take a whole snapshot and hold what the leader holds;
//   - the sending leader dies mid-stream: the follower's install fails (the partial copy is
//     dropped, the follower keeps its old state), a new leader is elected among the two others and
//     sends a new snapshot; the follower ends up equal to the new leader.
// "Midway" is seen on disk: backend.incoming of the follower holds more than a third of the
// state (whose size the test knows) and the follower has not yet logged the end of the stream.
// The state (~26 MB) is several times the streaming window (4 chunks of 1 MiB in flight).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writer, checkAgreement, get, startCluster, waitFor, type Cluster, type ClusterMember, killFollowerBehind, stopWriterAndCluster } from './cluster_harness';

/** More keys than the entries a leader keeps behind its snapshot (5,000), so that the follower
 *  must take a snapshot; values are random (LevelDB compresses, and the test reads sizes on disk). */
const BULK_KEYS = 6_400;
const BULK_VALUE_BYTES = 4 * 1024;
/** The follower is killed once its incoming backend holds this many bytes (~1/3 of the state). */
const MIDWAY_BYTES = Math.floor((BULK_KEYS * BULK_VALUE_BYTES) / 3);
const POLL_MS = 10;

/** Bytes in the files directly under `dir` (0 if it does not exist); files LevelDB deletes while
 *  we look are skipped. */
function dirBytes(dir: string): number {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  let total = 0;
  for (const n of names) {
    try {
      total += fs.statSync(path.join(dir, n)).size;
    } catch {
      // deleted between readdir and stat (a compaction): not part of the total
    }
  }
  return total;
}

const incomingDir = (m: ClusterMember) => path.join(m.dataDir, 'member', 'backend.incoming');

/** Starts `m` again without waiting for it to be ready (it may be killed before it is). */
function restartInBackground(m: ClusterMember): Promise<void> {
  return m.restart().catch((err: unknown) => console.log(`      (restart of ${m.name} ended: ${(err as Error).message.split('\n')[0]})`));
}

/** Waits until `m` is midway through receiving a snapshot: its incoming backend holds at least
 *  MIDWAY_BYTES and it has not logged the stream's end. Returns the bytes seen. */
async function waitMidway(m: ClusterMember, timeoutMs: number): Promise<number> {
  return waitFor(
    () => `${m.name} midway through a snapshot install (incoming ${dirBytes(incomingDir(m))} bytes); its log tail:\n${m.output().split('\n').slice(-10).join('\n')}`,
    timeoutMs,
    () => {
      const bytes = dirBytes(incomingDir(m));
      return bytes >= MIDWAY_BYTES ? bytes : undefined;
    },
    POLL_MS,
  );
}

/** The follower's log says nothing of the stream's end (the kill came before it). */
function assertNotPastStream(m: ClusterMember, log: string): void {
  assert.match(log, /"receiving snapshot"/, `${m.name} was receiving a snapshot`);
  assert.doesNotMatch(log, /snapshot data written to a new backend|installed snapshot from the leader/, `${m.name} got past the stream before the kill`);
}

/** What the follower missed is there, read from its own store. */
async function assertBulkOn(m: ClusterMember): Promise<void> {
  const sample = await get(m.endpoint, 'big/003141', { serializable: true });
  assert.equal(sample?.value.length, BULK_VALUE_BYTES);
  assert.ok(sample.value.startsWith('big/003141:'));
  assert.equal((await get(m.endpoint, 'early', { serializable: true }))?.value, 'before the kill');
}

describe('snapshot install interrupted by kill -9 (real processes)', function () {
  this.timeout(90_000);
  let c: Cluster | undefined;
  let w: Writer | undefined;
  afterEach(async () => {
    await stopWriterAndCluster(w, c);
    w = c = undefined;
  });

  /** A cluster whose follower (returned) is down and ~26 MB of writes behind: its restart must
   *  catch up by snapshot. Writes go on to the two others through the rest of the test. */
  async function followerBehind(): Promise<{ cluster: Cluster; leader: ClusterMember; follower: ClusterMember; other: ClusterMember; writer: Writer }> {
    const cluster = (c = await startCluster({ size: 3, args: ['--snapshot-count=500', '--hot-value-bytes=0'] }));
    const { leader, follower, other } = await killFollowerBehind(cluster, BULK_KEYS, (key) => `${key}:${crypto.randomBytes(BULK_VALUE_BYTES).toString('base64')}`.slice(0, BULK_VALUE_BYTES));
    const writer = (w = new Writer(() => cluster.running().filter((m) => m !== follower).map((m) => m.endpoint), 'w/', 2, 3_000).start());
    await writer.waitForAcks(20);
    return { cluster, leader, follower, other, writer };
  }

  it('the follower killed while it receives a snapshot restarts from its own backend, drops the partial copy, and catches up', async () => {
    const { cluster, follower, writer } = await followerBehind();

    const restarting = restartInBackground(follower);
    const seen = await waitMidway(follower, 30_000);
    const logAtKill = follower.output();
    await follower.stop('SIGKILL');
    await restarting;
    assertNotPastStream(follower, logAtKill);
    assert.ok(fs.existsSync(incomingDir(follower)), 'the kill left a partial incoming backend');
    console.log(`      killed ${follower.name} with ${seen} bytes of its incoming backend written`);

    await follower.restart();
    assert.match(follower.output(), /removing a snapshot that a crash cut short/);
    await waitFor(
      () => `${follower.name} to install a snapshot; its log tail:\n${follower.output().split('\n').slice(-15).join('\n')}`,
      40_000,
      () => (follower.output().includes('installed snapshot from the leader') ? true : undefined),
      100,
    );
    await writer.waitForAcks(20);
    await writer.stop();
    const summary = await checkAgreement(cluster, cluster.members, writer.acked);
    await assertBulkOn(follower);
    console.log(`      ${summary}`);
    assert.ok(!fs.existsSync(incomingDir(follower)), 'no incoming backend left after the install');
  });

  it('the leader killed while it sends a snapshot: the follower keeps its state and catches up from the new leader', async () => {
    const { cluster, leader, follower, other, writer } = await followerBehind();

    const restarting = restartInBackground(follower);
    const seen = await waitMidway(follower, 30_000);
    const logAtKill = follower.output();
    await leader.stop('SIGKILL');
    assertNotPastStream(follower, logAtKill);
    console.log(`      killed leader ${leader.name} with ${seen} bytes of ${follower.name}'s incoming backend written`);
    await restarting;

    // The follower (far behind) cannot win an election: the other member leads and sends anew.
    const newLeader = await cluster.waitForLeader(15_000, { among: [other] });
    await waitFor(
      () => `${follower.name} to install a snapshot from ${newLeader.name}; its log tail:\n${follower.output().split('\n').slice(-15).join('\n')}`,
      40_000,
      () => (follower.output().includes('installed snapshot from the leader') ? true : undefined),
      100,
    );
    assert.match(follower.output(), /incoming snapshot failed/, 'the interrupted stream failed on the follower');
    await writer.waitForAcks(20);
    // The old leader comes back too; everyone must agree on everything acknowledged.
    await leader.restart();
    await writer.waitForAcks(20);
    await writer.stop();
    const summary = await checkAgreement(cluster, cluster.members, writer.acked);
    console.log(`      new leader ${newLeader.name}; ${summary}`);
    await assertBulkOn(follower);
    assert.ok(!fs.existsSync(incomingDir(follower)), 'no incoming backend left after the install');
  });
});
