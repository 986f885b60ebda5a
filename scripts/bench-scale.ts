// Scale benchmark (issue 17), not run in CI: a 3-member cluster on loopback is loaded with
// KEYS × VALUE_BYTES, a follower is killed, EXTRA overwrites go to the leader (more than the 5,000
// entries a leader keeps behind a snapshot, with --snapshot-count=1000), and the follower restarts:
// it must catch up by Raft snapshot. Reported:
//   - catch-up time (restart → "installed snapshot from the leader" → revision equal to the leader's);
//   - peak RSS of each member during catch-up (VmRSS sampled every 100 ms from /proc) and VmHWM;
//   - the leader's put latency during catch-up (one probe every 100 ms);
//   - HashKV time on each member, and the members' longest event-loop stall during catch-up and
//     during HashKV (nodejs_eventloop_lag_max_seconds from /metrics: the max since the last scrape).
// Usage: npx tsc -p . && node dist/scripts/bench-scale.js [--keys=100000] [--value-bytes=4096]
//        [--extra=6000] [--clients=32] [--bin=dist/src/cli/quorumkv.js] [--flags="..."]
// --bin runs another build (e.g. main's) with the same load, for a before/after comparison.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../src/proto';

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

const KEYS = Number(arg('keys', '100000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const EXTRA = Number(arg('extra', '6000'));
const CLIENTS = Number(arg('clients', '32'));
const BIN = path.resolve(arg('bin', path.join(__dirname, '..', 'src', 'cli', 'quorumkv.js')));
const FLAGS = arg('flags', '').split(' ').filter((f) => f !== '');
/** Bounds on each phase: the benchmark gives up rather than hang. */
const LOAD_TIMEOUT_MS = 30 * 60_000;
const CATCH_UP_TIMEOUT_MS = 15 * 60_000;
const SAMPLE_EVERY_MS = 100;

interface Member {
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  proc?: ChildProcess;
  out: string[];
  kv?: grpc.Client;
  maint?: grpc.Client;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
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
process.on('exit', () => live.forEach(killGroup));
process.on('SIGINT', () => process.exit(130));

function start(m: Member, initialCluster: string): void {
  const url = `http://127.0.0.1:${m.clientPort}`;
  const peer = `http://127.0.0.1:${m.peerPort}`;
  m.out = [];
  const proc = spawn(
    process.execPath,
    [
      BIN,
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      '--snapshot-count=1000',
      '--quota-backend-bytes=8589934592',
      ...FLAGS,
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  // Keep only lines the benchmark looks for (the log of a long load is large).
  const keep = (d: Buffer) => {
    for (const l of d.toString().split('\n')) if (/ready to serve|snapshot|error|panic|Error/.test(l) && !l.includes('snapshot taken')) m.out.push(l);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  m.proc = proc;
}

async function waitLog(m: Member, needle: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!m.out.some((l) => l.includes(needle))) {
    if (m.proc?.exitCode !== null || m.proc?.signalCode !== null) throw new Error(`${m.name} exited:\n${m.out.slice(-20).join('\n')}`);
    if (Date.now() > deadline) throw new Error(`${m.name}: no "${needle}" within ${timeoutMs} ms:\n${m.out.slice(-20).join('\n')}`);
    await sleep(50);
  }
}

function clients(m: Member): void {
  const ctor = (service: string) =>
    (grpcDefinitions().etcdserverpb as Record<string, unknown>)[service] as new (a: string, c: grpc.ChannelCredentials, o?: object) => grpc.Client;
  const target = `127.0.0.1:${m.clientPort}`;
  const opts = { 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 };
  m.kv = new (ctor('KV'))(target, grpc.credentials.createInsecure(), opts);
  m.maint = new (ctor('Maintenance'))(target, grpc.credentials.createInsecure(), opts);
}

function call<T>(c: grpc.Client, method: string, req: object, deadlineMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (c as unknown as Record<string, (r: object, o: object, cb: (e: Error | null, v: T) => void) => void>)[method];
    fn.call(c, req, { deadline: Date.now() + deadlineMs }, (e, v) => (e ? reject(e) : resolve(v)));
  });
}

interface StatusPb {
  leader: string;
  header: { member_id: string; revision: string };
}

async function leaderOf(members: Member[]): Promise<Member> {
  for (let i = 0; i < 200; i++) {
    for (const m of members) {
      try {
        const s = await call<StatusPb>(m.maint!, 'Status', {}, 1000);
        if (s.leader !== '0' && s.leader === s.header.member_id) return m;
      } catch {
        // not up yet
      }
    }
    await sleep(100);
  }
  throw new Error('no leader');
}

async function revision(m: Member): Promise<number> {
  return Number((await call<StatusPb>(m.maint!, 'Status', {}, 2000)).header.revision);
}

function procStatus(m: Member, field: 'VmRSS' | 'VmHWM'): number {
  if (m.proc?.pid === undefined) return 0;
  try {
    const r = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${m.proc.pid}/status`, 'utf8'));
    return r ? Number(r[1]) * 1024 : 0;
  } catch {
    return 0; // the process is gone (killed follower)
  }
}

/** The member's event-loop lag max since the previous scrape, in ms (prom-client's metric). */
function loopLagMaxMs(m: Member): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: m.clientPort, path: '/metrics', timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        const r = /^nodejs_eventloop_lag_max_seconds\s+(\S+)/m.exec(body);
        resolve(r ? Number(r[1]) * 1000 : NaN);
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(NaN));
  });
}

/** Samples VmRSS of every member and its loop lag until stopped; returns the maxima. */
function sampler(members: Member[]): { stop: () => Promise<{ rss: number[]; lagMs: number[] }> } {
  const rss = members.map(() => 0);
  const lagMs = members.map(() => 0);
  let running = true;
  let ticks = 0;
  const loop = (async () => {
    await Promise.all(members.map(loopLagMaxMs)); // resets the lag window
    while (running) {
      members.forEach((m, i) => (rss[i] = Math.max(rss[i]!, procStatus(m, 'VmRSS'))));
      if (++ticks % 5 === 0) {
        const lags = await Promise.all(members.map(loopLagMaxMs));
        lags.forEach((l, i) => (lagMs[i] = Math.max(lagMs[i]!, Number.isNaN(l) ? 0 : l)));
      }
      await sleep(SAMPLE_EVERY_MS);
    }
    const lags = await Promise.all(members.map(loopLagMaxMs));
    lags.forEach((l, i) => (lagMs[i] = Math.max(lagMs[i]!, Number.isNaN(l) ? 0 : l)));
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { rss, lagMs };
    },
  };
}

async function putMany(m: Member, n: number, prefix: string): Promise<void> {
  let next = 0;
  const deadline = Date.now() + LOAD_TIMEOUT_MS;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      if (Date.now() > deadline) throw new Error('load timed out');
      const key = Buffer.from(`${prefix}${String(i % KEYS).padStart(9, '0')}`);
      const value = Buffer.alloc(VALUE_BYTES, 97 + (i % 26));
      await call(m.kv!, 'Put', { key, value }, 30_000);
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, worker));
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-bench-scale-'));
  const members: Member[] = [];
  for (let i = 1; i <= 3; i++) {
    members.push({ name: `s${i}`, dataDir: path.join(root, `s${i}`), clientPort: await freePort(), peerPort: await freePort(), out: [] });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  console.log(`bench-scale: ${KEYS} keys × ${VALUE_BYTES} B (${mib(KEYS * VALUE_BYTES)}), ${EXTRA} overwrites while a follower is down, ${CLIENTS} clients; bin ${BIN}; data ${root}`);
  try {
    members.forEach((m) => start(m, initialCluster));
    await Promise.all(members.map((m) => waitLog(m, 'ready to serve client requests', 60_000)));
    members.forEach(clients);
    const leader = await leaderOf(members);
    const follower = members.find((m) => m !== leader)!;

    let t = Date.now();
    await putMany(leader, KEYS, 'key/');
    console.log(`load:      ${((Date.now() - t) / 1000).toFixed(1)} s (${((KEYS / (Date.now() - t)) * 1000).toFixed(0)} puts/s)`);
    const steady = members.map((m) => procStatus(m, 'VmRSS'));
    console.log(`steady RSS: ${members.map((m, i) => `${m.name}${m === leader ? '(leader)' : ''} ${mib(steady[i]!)}`).join(', ')}`);

    killGroup(follower.proc);
    await sleep(500);
    t = Date.now();
    await putMany(leader, EXTRA, 'key/');
    console.log(`overwrite: ${EXTRA} puts with ${follower.name} down in ${((Date.now() - t) / 1000).toFixed(1)} s`);

    // Catch-up, with the leader probed and every member sampled.
    const samples = sampler(members);
    const probeMs: number[] = [];
    let probeFailures = 0;
    let probing = true;
    const probes = (async () => {
      for (let i = 0; probing && i < 1_000_000; i++) {
        const s = Date.now();
        try {
          await call(leader.kv!, 'Put', { key: Buffer.from('probe'), value: Buffer.from(String(i)) }, 5_000);
          probeMs.push(Date.now() - s);
        } catch {
          probeFailures++;
        }
        await sleep(100);
      }
    })();
    t = Date.now();
    start(follower, initialCluster);
    await waitLog(follower, 'ready to serve client requests', CATCH_UP_TIMEOUT_MS);
    clients(follower);
    await waitLog(follower, 'installed snapshot from the leader', CATCH_UP_TIMEOUT_MS);
    const installedMs = Date.now() - t;
    const deadline = Date.now() + CATCH_UP_TIMEOUT_MS;
    let statusTimeouts = 0;
    for (;;) {
      // A member too busy to answer within the deadline is counted, and asked again.
      const [lr, fr] = await Promise.all([revision(leader).catch(() => (statusTimeouts++, Infinity)), revision(follower).catch(() => (statusTimeouts++, 0))]);
      if (fr >= lr - 1) break; // the probes keep the leader moving by one revision at a time
      if (Date.now() > deadline) throw new Error('follower did not catch up');
      await sleep(50);
    }
    const caughtUpMs = Date.now() - t;
    probing = false;
    await probes;
    const during = await samples.stop();
    const retries = follower.out.filter((l) => l.includes('already in progress')).length;
    probeMs.sort((a, b) => a - b);
    console.log(`catch-up:  snapshot installed after ${(installedMs / 1000).toFixed(1)} s, revision equal after ${(caughtUpMs / 1000).toFixed(1)} s; "already in progress": ${retries}; Status calls over 2 s: ${statusTimeouts}`);
    console.log(`           peak VmRSS during catch-up: ${members.map((m, i) => `${m.name}${m === leader ? '(leader)' : m === follower ? '(follower)' : ''} ${mib(during.rss[i]!)}`).join(', ')}`);
    console.log(`           VmHWM: ${members.map((m) => `${m.name} ${mib(procStatus(m, 'VmHWM'))}`).join(', ')}`);
    console.log(`           longest event-loop stall: ${members.map((m, i) => `${m.name} ${during.lagMs[i]!.toFixed(0)} ms`).join(', ')}`);
    const p99 = probeMs[Math.floor(probeMs.length * 0.99)] ?? NaN;
    console.log(`           leader put probes: ${probeMs.length} ok, ${probeFailures} failed, p50 ${probeMs[Math.floor(probeMs.length / 2)] ?? NaN} ms, p99 ${p99} ms, max ${probeMs[probeMs.length - 1] ?? NaN} ms`);

    // HashKV on each member in turn, every member sampled.
    const hs = sampler(members);
    const hashes: string[] = [];
    const hashMs: number[] = [];
    const rev = await revision(leader);
    for (const m of members) {
      const s = Date.now();
      const h = await call<{ hash: number }>(m.maint!, 'HashKV', { revision: rev }, 10 * 60_000);
      hashMs.push(Date.now() - s);
      hashes.push(String(h.hash));
    }
    const hashLag = await hs.stop();
    console.log(`hashkv:    at revision ${rev}: ${members.map((m, i) => `${m.name} ${(hashMs[i]! / 1000).toFixed(1)} s`).join(', ')}; equal: ${hashes.every((h) => h === hashes[0])}`);
    console.log(`           longest event-loop stall: ${members.map((m, i) => `${m.name} ${hashLag.lagMs[i]!.toFixed(0)} ms`).join(', ')}`);
  } finally {
    members.forEach((m) => {
      m.kv?.close();
      m.maint?.close();
      killGroup(m.proc);
    });
    await sleep(500);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
