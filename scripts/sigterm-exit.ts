// How long a member takes to exit after SIGTERM while a client floods it (the last row of
// docs/security.md "Measured side by side with etcd 3.4.23"), quorumkv and etcd 3.4 (/usr/bin/etcd
// or $ETCD_BIN) alternately, each run a fresh member on loopback with a fresh data dir: a
// LeaseKeepAlive flood on a stream whose window the client never opens (as hostile-vs-etcd.js),
// 1 s of it, then SIGTERM; the time until the process is gone. quorumkv's own line "member
// stopped" (its stop steps in ms) is printed too. Every process started is killed (its process
// group) at the end, on failure too; each run is bounded (15 s after SIGTERM).
//
//   npx tsc -p . && node dist/scripts/sigterm-exit.js [--runs=5] [--only=quorumkv|etcd|base|node] [--node]
//     [--base-bin=<dir>/dist/src/cli/quorumkv.js]
//
// --base-bin adds a column "base": another build of quorumkv (e.g. the commit before a change,
// extracted with git archive and built), run alternately with the others: an A/B in one run.
// --node adds a column "node": a Node process that does nothing but hold NODE_HELD_BYTES (about a
// fresh member's RSS) and call process.exit(0) on SIGTERM: the floor for any Node server.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, killGroup, SERVER_BIN, spawnMember } from '../test/integration/harness';
import { kvClient, unary } from '../test/compat/grpc_client';
import * as F from '../test/hostile/frames';

const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';
const FLOOD_BEFORE_SIGTERM_MS = 1000;
const EXIT_WAIT_MS_MAX = 15_000;
const NODE_HELD_BYTES = 90 * 1024 * 1024;
const NODE_PROGRAM = `const held = []; for (let i = 0; i < ${NODE_HELD_BYTES / 2 ** 20}; i++) held.push(Buffer.alloc(2 ** 20, 1));
process.on('SIGTERM', () => process.exit(0)); setInterval(() => held.length, 1000);
process.stderr.write('ready to serve client requests\\n');`;

function arg(name: string, fallback: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : fallback;
}

type Name = 'quorumkv' | 'etcd' | 'base' | 'node';

async function oneNodeRun(): Promise<{ exitMs: number; how: string; steps: string }> {
  const { proc } = await spawnMember(process.execPath, ['-e', NODE_PROGRAM], 'node');
  try {
    await new Promise((r) => setTimeout(r, FLOOD_BEFORE_SIGTERM_MS));
    let how = '';
    const exited = new Promise<void>((r) => proc.once('exit', (code, signal) => ((how = signal ?? `exit code ${code}`), r())));
    const t0 = process.hrtime.bigint();
    process.kill(proc.pid!, 'SIGTERM');
    await exited;
    return { exitMs: Number(process.hrtime.bigint() - t0) / 1e6, how, steps: '' };
  } finally {
    killGroup(proc);
  }
}

async function oneRun(name: Name, baseBin: string): Promise<{ exitMs: number; how: string; steps: string }> {
  if (name === 'node') return oneNodeRun();
  const port = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  const url = `http://127.0.0.1:${port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sigterm-${name}-`));
  const args =
    name === 'etcd'
      ? [`--data-dir=${dir}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=default=${peer}`]
      : [name === 'base' ? baseBin : SERVER_BIN, `--data-dir=${dir}`, `--listen-client-urls=${url}`, `--listen-peer-urls=${peer}`];
  let proc: ChildProcess | undefined;
  try {
    const started = await spawnMember(name === 'etcd' ? ETCD_BIN : process.execPath, args, name);
    proc = started.proc;
    const kv = kvClient(`127.0.0.1:${port}`);
    await unary(kv, 'Put', { key: Buffer.from('probe'), value: Buffer.from('v') });
    kv.close();
    const s = await F.connectRaw(port, [F.settings([[F.SETTINGS_INITIAL_WINDOW_SIZE, 0]]), F.grpcHeaders(1, '/etcdserverpb.Lease/LeaseKeepAlive')]);
    s.on('error', () => s.destroy());
    void F.floodWithinWindows(s, new F.SendWindows(s), [1], 3000, new Array<Buffer>(1500).fill(F.keepAliveRequest(1)));
    await new Promise((r) => setTimeout(r, FLOOD_BEFORE_SIGTERM_MS));
    const p = proc;
    let how = '';
    const exited = new Promise<void>((r) => p.once('exit', (code, signal) => ((how = signal ?? `exit code ${code}`), r())));
    const t0 = process.hrtime.bigint();
    process.kill(p.pid!, 'SIGTERM');
    const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), EXIT_WAIT_MS_MAX))]);
    const exitMs = Number(process.hrtime.bigint() - t0) / 1e6;
    s.destroy();
    if (!gone) throw new Error(`${name} still running ${EXIT_WAIT_MS_MAX} ms after SIGTERM`);
    const line = started.output().split('\n').find((l) => l.includes('"member stopped"'));
    return { exitMs, how, steps: line ?? '' };
  } finally {
    if (proc) killGroup(proc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '5'));
  const only = arg('only', '');
  const baseBin = arg('base-bin', '');
  const withNode = process.argv.includes('--node');
  const names = (['etcd', 'quorumkv', 'base', 'node'] as const).filter(
    (n) => (only === '' || only === n) && (n !== 'etcd' || fs.existsSync(ETCD_BIN)) && (n !== 'base' || baseBin !== '') && (n !== 'node' || withNode),
  );
  const times = new Map<string, number[]>(names.map((n) => [n, []]));
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (let i = 0; i < runs; i++) {
    for (const n of i % 2 === 0 ? names : [...names].reverse()) {
      const r = await oneRun(n, baseBin);
      times.get(n)!.push(r.exitMs);
      console.log(`${n} run ${i + 1}: exited ${r.exitMs.toFixed(1)} ms after SIGTERM (${r.how}) ${r.steps}`);
    }
  }
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const [n, t] of times) {
    const sorted = [...t].sort((a, b) => a - b);
    console.log(`${n}: min ${sorted[0]?.toFixed(1)} median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} max ${sorted[sorted.length - 1]?.toFixed(1)} ms (${t.length} runs)`);
  }
  process.exit(0);
}

void main();
