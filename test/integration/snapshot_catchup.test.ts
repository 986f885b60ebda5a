// Catch-up by Raft snapshot of a state of tens of MB, on real member processes: the snapshot streams
// both ways (the follower writes chunks into a new backend as they arrive and loads it in slices),
// so the leader keeps answering while it sends, and neither side's memory grows with the state.
// The follower is killed, the others take ~50 MB of writes (more than the 5,000 entries a leader
// keeps behind a snapshot), and the follower restarts: it must install a snapshot, then hold what
// the leader holds (HashKV at a common revision, plus every acknowledged put read back).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Writer, checkAgreement, get, hashKV, sleep, startCluster, status, waitFor, type Cluster, type ClusterMember, killFollowerBehind, stopWriterAndCluster } from './cluster_harness';

/** Bulk values: BULK_KEYS × BULK_VALUE_BYTES ≈ 52 MB of state. */
const BULK_KEYS = 6_400;
const BULK_VALUE_BYTES = 8 * 1024;
/** How often, and how patiently, the leader is probed during the catch-up. */
const PROBE_EVERY_MS = 100;
const PROBE_DEADLINE_MS = 2_000;

/** Peak resident set (VmHWM) of a process, in bytes, from /proc. */
function peakRssBytes(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no VmHWM for ${pid}`);
  return Number(m[1]) * 1024;
}

describe('catch-up by streamed snapshot (real processes)', function () {
  this.timeout(60_000);
  let c: Cluster | undefined;
  let w: Writer | undefined;
  afterEach(async () => {
    await stopWriterAndCluster(w, c);
    w = c = undefined;
  });

  it('a follower killed before ~50 MB of writes catches up by snapshot; data equal; the leader answers throughout; memory bounded', async () => {
    c = await startCluster({ size: 3, args: ['--snapshot-count=1000', '--hot-value-bytes=0'] });
    const { leader, follower, other } = await killFollowerBehind(c, BULK_KEYS, (key, i) => `${key}:`.padEnd(BULK_VALUE_BYTES, String.fromCharCode(97 + (i % 26))));

    // Writes go on through the catch-up, to the two members that are up.
    const writer = new Writer(() => [leader.endpoint, other.endpoint], 'w/', 4, 3_000);
    w = writer.start();
    await writer.waitForAcks(50);

    let probing = true;
    const probeLatenciesMs: number[] = [];
    const probeFailures: string[] = [];
    const probes = (async () => {
      for (let i = 0; probing && i < 10_000; i++) {
        const start = Date.now();
        try {
          await get(leader.endpoint, 'early', { deadlineMs: PROBE_DEADLINE_MS });
          probeLatenciesMs.push(Date.now() - start);
        } catch (err) {
          probeFailures.push((err as Error).message);
        }
        await sleep(PROBE_EVERY_MS);
      }
    })();

    const t1 = Date.now();
    await follower.restart();
    await waitFor(
      () => `${follower.name} to install a snapshot; its log tail:\n${follower.output().split('\n').slice(-15).join('\n')}`,
      40_000,
      () => (follower.output().includes('installed snapshot from the leader') ? true : undefined),
      100,
    );
    const catchUpMs = Date.now() - t1;
    if (process.env.DEBUG_CATCHUP !== undefined) {
      // The snapshot's timeline on both sides (where catch-up time goes).
      const lines = (m: ClusterMember) => m.output().split('\n').filter((l) => /snapshot|ready to serve/.test(l) && !l.includes('snapshot taken'));
      console.log([...lines(follower), ...lines(leader)].join('\n'));
    }
    const followerPeakRss = peakRssBytes(follower.proc.pid!);
    const leaderPeakRss = peakRssBytes(leader.proc.pid!);
    probing = false;
    await probes;
    await writer.stop();

    const summary = await checkAgreement(c, c.members, writer.acked);
    const maxProbeMs = Math.max(...probeLatenciesMs);
    console.log(
      `      catch-up ${catchUpMs} ms; ${probeLatenciesMs.length} leader probes, max ${maxProbeMs} ms, ${probeFailures.length} failed; ` +
        `peak RSS follower ${(followerPeakRss / 2 ** 20).toFixed(0)} MiB, leader ${(leaderPeakRss / 2 ** 20).toFixed(0)} MiB; ${summary}`,
    );
    // The follower got a snapshot, streamed (no size known up front), not the log.
    assert.match(follower.output(), /"receiving snapshot".*"size_bytes":"unknown"/);
    assert.match(leader.output(), /streaming snapshot to a follower/);
    // The leader answered every probe during the transfer, promptly.
    assert.deepEqual(probeFailures, []);
    assert.ok(probeLatenciesMs.length >= 3, 'the leader was probed during the catch-up');
    assert.ok(maxProbeMs < PROBE_DEADLINE_MS, `a leader probe took ${maxProbeMs} ms`);
    // Same data: HashKV over everything (bulk included) at a common revision, and a bulk value read back.
    const rev = Number((await status(leader.endpoint)).header.revision);
    const hashes = await Promise.all(c.members.map((m) => hashKV(m.endpoint, rev)));
    assert.ok(hashes.every((h) => h.hash === hashes[0]!.hash), `HashKV at ${rev} differs: ${JSON.stringify(hashes)}`);
    const sample = await get(follower.endpoint, 'big/003141', { serializable: true });
    assert.equal(sample?.value.length, BULK_VALUE_BYTES);
    assert.ok(sample.value.startsWith('big/003141:'));
    assert.equal((await get(follower.endpoint, 'early', { serializable: true }))?.value, 'before the kill');
    // Bounded memory: the snapshot (~55 MB on the wire) is never held whole, and the installed
    // values go to the spill file, not the heap. A generous bound that one copy of the state in
    // the heap (as a Buffer, then again as strings) would exceed.
    assert.ok(followerPeakRss < 400 * 2 ** 20, `follower peak RSS ${followerPeakRss} bytes`);
  });
});
