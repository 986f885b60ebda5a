// A restarted member's start, phase by phase (issue 17: "restart after kill -9 → first
// linearizable read"), not run in CI. A cluster of MEMBERS quorumkv members is loaded with KEYS
// puts of VALUE_BYTES (one put per request, as bench-scale's load), then RESTARTS times: WRITES
// more puts by CLIENTS clients, every member SIGKILLed the moment they are acknowledged (so the
// backend lags the WAL by up to a backend batch interval), and every member restarted with the
// next build of --bins (A/B alternating in one run: compare ratios within a run, not across runs).
// For each restart it prints, per member, the ms from its spawn to each start-up log line seen
// (modules loaded, backend loaded, WAL recovered, serving, the recovered entries applied; a build
// without a line leaves a "–"), and the ms from the spawn to the first linearizable Range answered
// by any member; at the end the median of each per build.
//
// Usage: npx tsc -p . && node dist/scripts/bench-start.js [--keys=20000] [--value-bytes=4096]
//        [--members=3] [--restarts=4] [--writes=2000] [--clients=100]
//        [--bins=dist/src/cli/quorumkv.js,/tmp/base/dist/src/cli/quorumkv.js]
//        [--flags="--snapshot-count=1000 ..."] [--node-flags="--cpu-prof --cpu-prof-dir=DIR"]
// With --node-flags, the members are stopped with SIGTERM before each kill -9 round would start
// (so a --cpu-prof profile of each start gets written).
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { arg, client, freePort, memberFlags, sleep, unary, type Client } from './bench_support';

const KEYS = Number(arg('keys', '20000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const MEMBERS = Number(arg('members', '3'));
const RESTARTS = Number(arg('restarts', '4'));
const WRITES = Number(arg('writes', '2000'));
const CLIENTS = Number(arg('clients', '100'));
const BINS = arg('bins', path.join(__dirname, '..', 'src', 'cli', 'quorumkv.js')).split(',').map((b) => path.resolve(b));
const words = (s: string) => s.split(' ').filter((f) => f !== '');
const FLAGS = ['--snapshot-count=1000', '--quota-backend-bytes=8589934592', ...words(arg('flags', ''))];
const NODE_FLAGS = words(arg('node-flags', ''));
/** Bounds: the benchmark gives up rather than hang. */
const STEP_TIMEOUT_MS = 5 * 60_000;
const PROCESS_LINES_MAX = 40;

/** The start-up log lines timed, by message (a build that does not log one shows "–"). */
const PHASES: [label: string, msg: RegExp][] = [
  // The first line of a start, right after the modules are loaded and the flags parsed.
  ['modules', /^locked the data dir$/],
  ['backend', /^loaded the backend$/],
  ['wal', /^recovered from WAL$/],
  ['serving', /^ready to serve client requests$/],
  ['replayed', /^applied the entries recovered from the WAL$/],
  ['ticks advanced', /^initialized peer connections; fast-forwarding election ticks$/],
  ['leader', /^became leader$/],
];

interface Member {
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  proc?: ChildProcess;
  spawnedAt: number;
  /** Ms from the spawn to the first line of each phase. */
  phaseMs: Map<string, number>;
  tail: string[];
  kv: Client;
}

const live = new Set<ChildProcess>();
function killGroup(p: ChildProcess | undefined): void {
  if (p?.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, 'SIGKILL');
  } catch (err) {
    console.error(`kill ${p.pid}: ${(err as Error).message}`);
  }
}
let root: string | undefined;
process.on('exit', () => {
  live.forEach(killGroup);
  if (root !== undefined) fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
});
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

const exited = (m: Member) => m.proc === undefined || m.proc.exitCode !== null || m.proc.signalCode !== null;

async function stop(m: Member, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  const p = m.proc;
  if (p?.pid === undefined || exited(m)) return;
  const gone = new Promise<void>((r) => p.once('exit', () => r()));
  if (signal === 'SIGKILL') killGroup(p);
  else process.kill(p.pid, 'SIGTERM');
  await Promise.race([gone, sleep(30_000)]);
  killGroup(p);
}

function start(m: Member, initialCluster: string, bin: string): void {
  const flags = [...memberFlags(m, initialCluster, 'bench-start'), ...FLAGS];
  m.spawnedAt = Date.now();
  m.phaseMs = new Map();
  m.tail = [];
  const proc = spawn(process.execPath, [...NODE_FLAGS, bin, ...flags], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  let partial = '';
  proc.stderr!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      m.tail.push(l);
      if (m.tail.length > PROCESS_LINES_MAX) m.tail.shift();
      let rec: { msg?: string; ts?: string };
      try {
        rec = JSON.parse(l) as { msg?: string; ts?: string };
      } catch {
        continue; // not a log record (a warning of node's)
      }
      for (const [label, re] of PHASES) {
        if (rec.msg !== undefined && rec.ts !== undefined && re.test(rec.msg) && !m.phaseMs.has(label)) m.phaseMs.set(label, Date.parse(rec.ts) - m.spawnedAt);
      }
    }
  });
  m.proc = proc;
}

async function until<T>(what: string, watch: Member[], probe: () => Promise<T | undefined>, everyMs = 20): Promise<T> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    const dead = watch.find(exited);
    if (dead) throw new Error(`${dead.name} exited while waiting for ${what}:\n${dead.tail.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${STEP_TIMEOUT_MS} ms`);
    await sleep(everyMs);
  }
}

const POOL = crypto.randomBytes(1 << 20);
const keyOf = (i: number) => Buffer.from(`key/${String(i % KEYS).padStart(9, '0')}`);
const valueOf = (i: number) => POOL.subarray((i * 7919) % (POOL.length - VALUE_BYTES), ((i * 7919) % (POOL.length - VALUE_BYTES)) + VALUE_BYTES);

/** `n` puts by CLIENTS clients spread over the members (a follower forwards to the leader). */
async function putMany(members: Member[], n: number, offset: number): Promise<void> {
  let next = 0;
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = next++; i < n; i = next++) {
        if (Date.now() > deadline) throw new Error('puts timed out');
        await unary(members[c % members.length]!.kv, 'Put', { key: keyOf(i), value: valueOf(i + offset) }, 60_000);
      }
    }),
  );
}

const linearizableRead = (m: Member) => unary<{ kvs: unknown[] }>(m.kv, 'Range', { key: keyOf(0) }, 1_000).then((r) => (r.kvs.length === 1 ? true : undefined));

const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
};
const fmt = (ms: number) => (Number.isNaN(ms) ? '–' : String(Math.round(ms)));

async function main(): Promise<void> {
  console.log(`bench-start: ${MEMBERS} member(s), ${KEYS} keys × ${VALUE_BYTES} B, ${WRITES} puts before each kill, flags ${FLAGS.join(' ')}; builds ${BINS.map((b, i) => `${'AB'[i] ?? i}=${b}`).join(' ')}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-start-'));
  const members: Member[] = [];
  for (let i = 1; i <= MEMBERS; i++) {
    const clientPort = await freePort();
    members.push({ name: `m${i}`, dataDir: path.join(root, `m${i}`), clientPort, peerPort: await freePort(), spawnedAt: 0, phaseMs: new Map(), tail: [], kv: client('KV', clientPort) });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  members.forEach((m) => start(m, initialCluster, BINS[0]!));
  // keyOf(0) does not exist yet: any linearizable answer will do.
  for (const m of members) await until(`a first answer from ${m.name}`, members, () => unary(m.kv, 'Range', { key: Buffer.from('x') }, 1_000), 100);
  const t = Date.now();
  await putMany(members, KEYS, 0);
  console.log(`loaded ${KEYS} keys in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  const rows: { bin: number; firstReadMs: number; phases: Map<string, number>[] }[] = [];
  for (let r = 0; r < RESTARTS; r++) {
    await putMany(members, WRITES, r + 1);
    if (NODE_FLAGS.length > 0) await Promise.all(members.map((m) => stop(m, 'SIGTERM')));
    else await Promise.all(members.map((m) => stop(m, 'SIGKILL')));
    const bin = r % BINS.length;
    members.forEach((m) => start(m, initialCluster, BINS[bin]!));
    const t0 = Math.min(...members.map((m) => m.spawnedAt));
    await until('a linearizable read', members, () => Promise.any(members.map(linearizableRead)).catch(() => undefined));
    const firstReadMs = Date.now() - t0;
    // Every member serving and the recovered entries applied before the next round.
    for (const m of members) await until(`${m.name} serving`, members, () => linearizableRead(m), 50);
    await sleep(2_000);
    rows.push({ bin, firstReadMs, phases: members.map((m) => m.phaseMs) });
    const per = members.map((m) => `${m.name} ${PHASES.map(([l]) => `${l} ${fmt(m.phaseMs.get(l) ?? NaN)}`).join(', ')}`).join(' | ');
    console.log(`restart ${r + 1} (${'AB'[bin] ?? bin}): first linearizable read ${firstReadMs} ms; ${per}; load average ${os.loadavg()[0]!.toFixed(1)}`);
  }
  console.log('\nmedian ms from spawn, over restarts and members:');
  console.log(`| build | ${PHASES.map(([l]) => l).join(' | ')} | first linearizable read |`);
  console.log(`|---|${PHASES.map(() => '---:|').join('')}---:|`);
  for (let b = 0; b < BINS.length; b++) {
    const mine = rows.filter((x) => x.bin === b);
    const cells = PHASES.map(([l]) => fmt(median(mine.flatMap((x) => x.phases.map((p) => p.get(l) ?? NaN)))));
    console.log(`| ${'AB'[b] ?? b} | ${cells.join(' | ')} | ${fmt(median(mine.map((x) => x.firstReadMs)))} |`);
  }
  await Promise.all(members.map((m) => stop(m, NODE_FLAGS.length > 0 ? 'SIGTERM' : 'SIGKILL')));
  members.forEach((m) => m.kv.close());
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
