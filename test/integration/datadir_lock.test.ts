// One member per data dir, on real processes: a second member is refused at start with one line
// naming the dir and writes nothing; a member killed with -9 restarts without cleanup, also past a
// PID file of an older version; and of two members started at once on one dir exactly one runs.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LEGACY_LOCK_FILE } from '../../src/storage/lock';
import { get, put, closeClients } from './cluster_harness';
import { SERVER_BIN, freePort, killGroup, startServer, tempDir, trackProcess } from './harness';
import { treeSnapshot } from './tree_snapshot';

const START_TIMEOUT_MS = 15_000;
const LOCKED = /in use by another quorumkv process/;

interface Started {
  proc: ChildProcess;
  endpoint: string;
  output: () => string;
  /** 'ready' once it serves clients, or its exit code / signal if it exited first. */
  outcome: Promise<'ready' | { code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a member (own process group, killed at exit whatever happens) on `dataDir`. */
function spawnMember(dataDir: string, clientPort: number, peerPort: number): Started {
  const url = `http://127.0.0.1:${clientPort}`;
  const proc = spawn(process.execPath, [SERVER_BIN, `--data-dir=${dataDir}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, `--listen-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-cluster=default=http://127.0.0.1:${peerPort}`], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackProcess(proc);
  let out = '';
  const outcome = new Promise<'ready' | { code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready to serve client requests')) resolve('ready');
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code, signal) => resolve({ code, signal }));
    setTimeout(() => resolve({ code: null, signal: null }), START_TIMEOUT_MS).unref();
  });
  return { proc, endpoint: `127.0.0.1:${clientPort}`, output: () => out, outcome };
}

function waitExit(p: ChildProcess, timeoutMs = 5_000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => killGroup(p), timeoutMs);
    p.once('exit', () => (clearTimeout(t), resolve()));
  });
}

async function kill9(p: ChildProcess): Promise<void> {
  killGroup(p, 'SIGCONT');
  killGroup(p);
  await waitExit(p);
}

describe('one member per data dir (real processes)', function () {
  this.timeout(60_000);
  const procs: ChildProcess[] = [];
  afterEach(async () => {
    closeClients();
    await Promise.all(procs.splice(0).map(kill9));
  });

  it('a second member on a data dir in use exits non-zero with one line naming the dir, and writes nothing', async () => {
    const dataDir = tempDir('quorumkv-lock-');
    const first = await startServer({ dataDir });
    procs.push(first.proc);
    await put(first.endpoint, 'k', 'v1');
    // Frozen, the first member writes nothing itself; it still holds the lock.
    killGroup(first.proc, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 200));
    const before = treeSnapshot(dataDir);
    const second = spawnMember(dataDir, await freePort(), await freePort());
    procs.push(second.proc);
    const outcome = await second.outcome;
    assert.notEqual(outcome, 'ready', 'a second member started on a data dir in use');
    assert.ok(typeof outcome === 'object' && outcome.code !== null && outcome.code !== 0, `exit: ${JSON.stringify(outcome)}\n${second.output()}`);
    const lines = second.output().trim().split('\n');
    assert.equal(lines.length, 1, `expected one line:\n${second.output()}`);
    const line = JSON.parse(lines[0]!) as { level: string; error: string };
    assert.equal(line.level, 'error');
    assert.match(line.error, LOCKED);
    assert.ok(line.error.includes(dataDir), line.error);
    assert.deepEqual(treeSnapshot(dataDir), before, 'the refused member changed the data dir');
    killGroup(first.proc, 'SIGCONT');
    assert.equal((await get(first.endpoint, 'k', { deadlineMs: 5_000 }))?.value, 'v1');
  });

  it('a member killed with -9 restarts without manual cleanup, also past a PID file of an older version naming a live process', async () => {
    const dataDir = tempDir('quorumkv-lock-');
    const a = await startServer({ dataDir });
    procs.push(a.proc);
    await put(a.endpoint, 'k', 'before-kill');
    await kill9(a.proc);
    // PID 1 is always alive: the old PID-file check would have refused to start.
    fs.writeFileSync(path.join(dataDir, LEGACY_LOCK_FILE), '1\n');
    const b = await startServer({ dataDir });
    procs.push(b.proc);
    assert.equal((await get(b.endpoint, 'k', { deadlineMs: 5_000 }))?.value, 'before-kill');
    assert.equal(fs.existsSync(path.join(dataDir, LEGACY_LOCK_FILE)), false, 'the old PID file is removed');
    assert.match(b.output(), /removed the PID lock file of an older version/);
  });

  it('two members started at once on one data dir: exactly one runs, the other is refused (20 rounds, killed with -9 in between)', async function () {
    this.timeout(120_000);
    const ROUNDS = 20;
    const ports = [[await freePort(), await freePort()], [await freePort(), await freePort()]] as const;
    let dataDir = '';
    const written: string[] = [];
    const t0 = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      // Every 10th round on a fresh dir: the lock database itself is created in the race.
      if (round % 10 === 0) {
        dataDir = tempDir('quorumkv-race-');
        written.length = 0;
      }
      const racers = ports.map(([c, p]) => spawnMember(dataDir, c, p));
      procs.push(...racers.map((r) => r.proc));
      const outcomes = await Promise.all(racers.map((r) => r.outcome));
      const describe = () => racers.map((r, i) => `racer ${i}: ${JSON.stringify(outcomes[i])}\n${r.output().slice(-1500)}`).join('\n');
      const winners = racers.filter((_, i) => outcomes[i] === 'ready');
      assert.equal(winners.length, 1, `round ${round}: ${winners.length} members started\n${describe()}`);
      const loser = racers.find((_, i) => outcomes[i] !== 'ready')!;
      const lo = outcomes[racers.indexOf(loser)] as { code: number | null };
      assert.ok(lo.code !== null && lo.code !== 0, `round ${round}: the loser did not exit non-zero\n${describe()}`);
      assert.match(loser.output(), LOCKED, `round ${round}: the loser failed for another reason\n${describe()}`);
      // The winner has everything acknowledged in earlier rounds on this dir.
      const w = winners[0]!;
      for (const k of written) assert.equal((await get(w.endpoint, k, { deadlineMs: 5_000 }))?.value, k, `round ${round}: ${k} lost`);
      const key = `round-${round}`;
      await put(w.endpoint, key, key, 5_000);
      written.push(key);
      closeClients();
      await Promise.all(racers.map((r) => kill9(r.proc)));
      procs.splice(0);
    }
    console.log(`      ${ROUNDS} rounds in ${Date.now() - t0} ms`);
  });
});
