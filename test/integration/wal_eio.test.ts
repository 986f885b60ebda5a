// An I/O error (EIO) from the WAL's durable write, on real processes: the member logs it and exits
// with status 74 (a member that cannot persist must not keep running), acknowledges nothing that
// is not on disk, and after the fault is gone it restarts, recovers its WAL (the torn half-batch
// the failing write left is cut off) and has every acknowledged write; in a cluster the other two
// members keep serving meanwhile and the restarted one rejoins with identical data.
//
// The EIO is injected by the walWriteError failpoint (src/util/failpoints.ts): the WAL's write
// writes half of the batch, then fails with the error libuv reports for a real EIO (code, errno,
// syscall); from there on it takes the real error's path. (No device-mapper here for a real one.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { WAL_IO_ERROR_EXIT_CODE } from '../../src/server/raft_node';
import { Writer, checkAgreement, closeClients, get, hashKV, put, sleep, startCluster, type Cluster, stopWriterAndCluster } from './cluster_harness';
import { startServer, tempDir, type ServerProcess } from './harness';

/** From arming the failpoint to the member's exit: a poll of the failpoints file (100 ms), the next
 *  write, the exit. Generous for a loaded CI machine. */
const EXIT_MS_MAX = 5_000;
const FAILED_LINE = /WAL failed: I\/O error; exiting with status 74/;

function exited(p: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; afterMs: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve({ code: p.exitCode, signal: p.signalCode, afterMs: 0 });
    const t = setTimeout(() => reject(new Error(`the member did not exit within ${timeoutMs} ms of the EIO failpoint`)), timeoutMs);
    p.once('exit', (code, signal) => (clearTimeout(t), resolve({ code, signal, afterMs: Date.now() - t0 })));
  });
}

/** The member's log line for the failure, parsed. */
function failureLine(output: string): { code?: string; error?: string } | undefined {
  const line = output.split('\n').find((l) => FAILED_LINE.test(l));
  return line === undefined ? undefined : (JSON.parse(line) as { code?: string; error?: string });
}

describe('WAL write error (EIO): the member exits and recovers (real processes)', function () {
  this.timeout(60_000);
  let srv: ServerProcess | undefined;
  let c: Cluster | undefined;
  let w: Writer | undefined;
  afterEach(async () => {
    closeClients();
    await srv?.stop();
    srv = undefined;
    await stopWriterAndCluster(w, c);
    w = c = undefined;
  });

  it('1 member: exits with status 74 within a bound, acknowledged nothing it did not persist; restarted, it has every acknowledged write and the same history hash', async () => {
    const dir = tempDir('quorumkv-eio-');
    const dataDir = path.join(dir, 'data');
    const fp = path.join(dir, 'failpoints.json');
    fs.writeFileSync(fp, '{}');
    srv = await startServer({ dataDir, env: { QUORUMKV_FAILPOINTS: fp } });
    const endpoint = srv.endpoint;
    const writer = (w = new Writer(() => [endpoint], 'w/', 4, 1000).start());
    await writer.waitForAcks(200);
    await writer.stop();
    const before = await hashKV(endpoint);
    w = new Writer(() => (srv!.proc.exitCode === null ? [endpoint] : []), 'w2/', 4, 1000).start();
    const writer2 = w;
    await writer2.waitForAcks(100);
    fs.writeFileSync(fp, JSON.stringify({ walWriteError: 'EIO' }));
    const exit = await exited(srv.proc, EXIT_MS_MAX);
    await sleep(200);
    await writer2.stop();
    console.log(`      exited with ${exit.code ?? exit.signal} ${exit.afterMs} ms after the failpoint was armed; ${writer.acked.length + writer2.acked.length} puts acknowledged in all`);
    assert.equal(exit.code, WAL_IO_ERROR_EXIT_CODE, srv.output().slice(-2000));
    const line = failureLine(srv.output());
    assert.ok(line, `no clear log line:\n${srv.output().slice(-2000)}`);
    assert.equal(line.code, 'EIO');
    assert.match(line.error ?? '', /EIO: i\/o error, write/);
    assert.ok(writer2.errors.size > 0, 'the writes in flight at the failure got no error');

    // The disk is fine again: restart. The torn batch is cut off, and everything acknowledged is
    // there: nothing was acknowledged that the failed write was to persist.
    fs.writeFileSync(fp, '{}');
    srv = await startServer({ dataDir, env: { QUORUMKV_FAILPOINTS: fp } });
    assert.match(srv.output(), /WAL had a torn tail/);
    for (const a of [...writer.acked, ...writer2.acked]) {
      const kv = await get(srv.endpoint, a.key, { deadlineMs: 5_000 });
      assert.equal(kv?.value, a.value, `acknowledged ${a.key} lost`);
      assert.equal(kv.mod_revision, a.revision, `acknowledged ${a.key} at revision ${a.revision} reads back at ${kv.mod_revision}`);
    }
    const after = await hashKV(srv.endpoint, before.revision);
    assert.equal(after.hash, before.hash, `history up to revision ${before.revision} changed`);
    await put(srv.endpoint, 'after-restart', 'ok', 5_000);
  });

  it('3 members, EIO on the leader: it exits with status 74, the other two elect a leader and keep serving; restarted without the fault it rejoins with identical data', async () => {
    c = await startCluster({ size: 3 });
    const cl = c;
    const writer = (w = new Writer(() => cl.running().map((m) => m.endpoint)).start());
    await writer.waitForAcks(200);
    const leader = await c.waitForLeader();
    const others = c.members.filter((m) => m !== leader);
    fs.writeFileSync(leader.failpointsFile, JSON.stringify({ walWriteError: 'EIO' }));
    const t0 = Date.now();
    const exit = await exited(leader.proc, EXIT_MS_MAX);
    assert.equal(exit.code, WAL_IO_ERROR_EXIT_CODE, leader.output().slice(-2000));
    assert.equal(failureLine(leader.output())?.code, 'EIO', leader.output().slice(-2000));
    const next = await c.waitForLeader(10_000, { among: others });
    const ackedAtExit = writer.acked.length;
    await writer.waitForAcks(200, 15_000);
    console.log(`      ${leader.name} exited ${exit.afterMs} ms after the failpoint was armed; ${next.name} leads; 200 more puts acknowledged ${Date.now() - t0} ms after arming (${ackedAtExit} before)`);
    assert.ok(writer.acked.slice(ackedAtExit).every((a) => a.endpoint !== leader.endpoint), 'a put was acknowledged through the exited member');

    fs.writeFileSync(leader.failpointsFile, '{}');
    await leader.restart();
    assert.match(leader.output(), /WAL had a torn tail/);
    await writer.waitForAcks(200, 15_000);
    await writer.stop();
    console.log(`      ${await checkAgreement(c, c.members, writer.acked)}`);
  });
});
