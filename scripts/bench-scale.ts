// Scale benchmark (issue 17), not run in CI: the same scenario, with the same load and flags, on a
// 3-member quorumkv cluster and on a 3-member etcd 3.4 cluster (one after the other, in one run),
// all on 127.0.0.1 with random high ports. Both are driven alike: puts and reads through the same
// gRPC client, the maintenance operations through etcdctl. Operations, in order:
//   load        KEYS distinct keys × VALUE_BYTES (random bytes: LevelDB compresses, bbolt does not),
//               CLIENTS concurrent clients, all to the leader;
//   overwrite   OVERWRITE puts over the same keys with CLIENTS clients;
//   fresh       (only when named in --ops) KEYS puts of keys never written before, as the load but
//               on a warm cluster (the load's cost of new keys apart from its cold start);
//   catch-up    a follower is SIGKILLed, EXTRA more overwrites go in (more than the 5,000 entries a
//               leader keeps behind a snapshot at --snapshot-count=1000: the follower must take a
//               snapshot), it restarts; timed from its start until its revision reaches the
//               leader's. Puts by one prober every 20 ms, during it and during as long a quiet
//               period before it (p99 with and without a catch-up);
//   hashkv      `etcdctl endpoint hashkv` on the three members (hashes must be equal);
//   defrag      `etcdctl defrag` of one follower;
//   snapshot    `etcdctl snapshot save` from the leader;
//   restart     all three members SIGKILLed and restarted: time to the first linearizable read.
// For each: the time, every member's CPU (user + system, /proc/<pid>/stat; per put for the puts)
// and this process's (the client's, with its /metrics scrapes every 500 ms: a cost per second, not
// per put, so it inflates the client's CPU per put when puts are slow), the bytes each member
// wrote (/proc/<pid>/io), its WAL fsyncs and backend commits (count × mean ms, from the
// etcd_disk_* histograms both systems export), every member's peak RSS during the operation
// (VmHWM, reset before it through /proc/<pid>/clear_refs), and for quorumkv the longest event-loop
// stall (its /metrics nodejs_eventloop_lag_max_seconds, the max since the previous scrape, scraped
// every 500 ms).
//
// Usage: npx tsc -p . && node dist/scripts/bench-scale.js [--keys=50000] [--value-bytes=4096]
//        [--overwrite=KEYS] [--clients=100] [--extra=12000] [--systems=quorumkv,etcd]
//        [--flags="common flags"] [--quorumkv-flags=...] [--etcd-flags=...]
//        [--bin=dist/src/cli/quorumkv.js] [--etcd=/usr/bin/etcd] [--etcdctl=/usr/bin/etcdctl]
//        [--ops=overwrite,catch-up,hashkv,defrag,snapshot,restart] [--node-flags="--cpu-prof ..."]
//        [--progress=SECONDS] (a line per interval during puts: rate, CPU per put of each member)
//        [--catch-up-bins=A,B] (the restarted follower of the n-th catch-up runs build n mod 2: with
//        --ops=catch-up,catch-up,catch-up,catch-up an A/B of the receiving side in one cluster)
// --ops picks the operations after the load and their order (one may repeat). Each result line
// ends with the operation's window on CLOCK_MONOTONIC in µs, the clock of a V8 CPU profile
// (scripts/cpuprofile-window.ts sums a member's --cpu-prof profile over such a window).
// (scripts/bench-scale.sh builds first and checks that etcd is there.) Every process it starts is
// in its own process group, killed by PID on every exit path; every phase has a deadline.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../src/proto';
import { DISK_HISTOGRAMS, cpuMsOfPid, freePort, lagMaxMs, memberFlags, scrapeMetrics, type MetricsScrape } from './bench_support';

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}
const words = (s: string) => s.split(' ').filter((f) => f !== '');

const KEYS = Number(arg('keys', '50000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const OVERWRITE = Number(arg('overwrite', String(KEYS)));
const CLIENTS = Number(arg('clients', '100'));
const EXTRA = Number(arg('extra', '12000'));
const SYSTEMS = arg('systems', 'quorumkv,etcd').split(',') as SystemName[];
const OP_NAMES = ['overwrite', 'fresh', 'catch-up', 'hashkv', 'defrag', 'snapshot', 'restart'] as const;
type OpName = (typeof OP_NAMES)[number];
/** Labels in the printed results (and docs/performance.md's tables). */
const OP_LABEL: Record<OpName, string> = {
  overwrite: 'overwrite',
  fresh: 'fresh load',
  'catch-up': 'catch-up',
  hashkv: 'hashkv',
  defrag: 'defrag',
  snapshot: 'snapshot save',
  restart: 'restart',
};
/** The operations after the load, in the order given (one may repeat: `--ops=hashkv,restart,hashkv`);
 *  `fresh` (KEYS puts of keys never written, like the load, on the warm cluster) is not a default. */
const OPS = arg('ops', OP_NAMES.filter((o) => o !== 'fresh').join(',')).split(',').filter((o) => o !== '') as OpName[];
for (const op of OPS) if (!OP_NAMES.includes(op)) throw new Error(`--ops: unknown operation ${op} (known: ${OP_NAMES.join(', ')})`);
/** Node flags for quorumkv's members (e.g. --cpu-prof --cpu-prof-dir=DIR); with any, the members
 *  are stopped with SIGTERM at the end of the run, so that a profile gets written. */
const NODE_FLAGS = words(arg('node-flags', ''));
const QKV_BIN = path.resolve(arg('bin', path.join(__dirname, '..', 'src', 'cli', 'quorumkv.js')));
const CATCH_UP_BINS = arg('catch-up-bins', QKV_BIN).split(',').map((b) => path.resolve(b));
const ETCD_BIN = arg('etcd', '/usr/bin/etcd');
const ETCDCTL_BIN = arg('etcdctl', '/usr/bin/etcdctl');
/** Flags given to both systems, then each system's own. */
const COMMON_FLAGS = ['--snapshot-count=1000', '--quota-backend-bytes=8589934592', ...words(arg('flags', ''))];
const OWN_FLAGS: Record<SystemName, string[]> = { quorumkv: words(arg('quorumkv-flags', '')), etcd: words(arg('etcd-flags', '')) };

/** Deadlines: the benchmark gives up rather than hang. */
const PHASE_TIMEOUT_MS = 20 * 60_000;
const READY_TIMEOUT_MS = 5 * 60_000;
const ETCDCTL_TIMEOUT_S = 600;
const PROBE_EVERY_MS = 20;
/** --progress=S: a line every S seconds during each batch of puts (0: none). */
const PROGRESS_MS = Number(arg('progress', '0')) * 1000;
/** The members of the system being run (for --progress's CPU readings). */
let currentMembers: Member[] = [];
/** While an operation is measured: takes the loop lags of --progress's scrapes (each scrape
 *  restarts a member's lag window, so the operation's longest stall must see them). */
let onScrape: ((s: MetricsScrape[]) => void) | undefined;
const LAG_SCRAPE_EVERY_MS = 500;

type SystemName = 'quorumkv' | 'etcd';

interface Member {
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  proc?: ChildProcess;
  /** The last lines of the process's output (for errors), and the ones about snapshots. */
  tail: string[];
  snapshotLines: string[];
  /** quorumkv's "event loop blocked" lines since the last operation's line (a few kept). */
  stallLines: string[];
  kv: grpc.Client;
  maint: grpc.Client;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A snapshot coming in: quorumkv's "receiving snapshot", etcd's "receiving database snapshot" / "restored snapshot". */
const RECEIVED_SNAPSHOT = /(receiv|restor|install)\w* (database )?snapshot/i;
/** "event loop blocked" lines kept per member between two operation lines. */
const STALL_LINES_MAX = 8;

/** The fields of an "event loop blocked" line that matter here (the line as is if not JSON). */
function stallSummary(line: string): string {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    return `loop blocked ${String(o['blocked-ms'])} ms at ${String(o.ts)}, GC pauses ${String(o['gc-pause-ms'])} ms (${String(o['major-gcs'])} full)`;
  } catch {
    return line.slice(0, 300);
  }
}

/** Log lines about snapshots kept per member start (printed after each catch-up: their took_ms are the phases). */
const SNAPSHOT_LINES_MAX = 40;

const live = new Set<ChildProcess>();
function killGroup(p: ChildProcess | undefined): void {
  if (p?.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, 'SIGKILL');
  } catch (err) {
    console.error(`kill ${p.pid}: ${(err as Error).message}`);
  }
}
async function killAndWait(m: Member): Promise<void> {
  const p = m.proc;
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  killGroup(p);
  await Promise.race([exited, sleep(10_000)]);
}
/** SIGTERM, then SIGKILL after 30 s: a member stopped this way writes its --cpu-prof profile. */
async function stopGracefully(m: Member): Promise<void> {
  const p = m.proc;
  if (p?.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  process.kill(p.pid, 'SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
  killGroup(p);
}

/** Microseconds on CLOCK_MONOTONIC, the clock of a V8 CPU profile's startTime/endTime. */
const monotonicUs = (): string => (process.hrtime.bigint() / 1000n).toString();

/** Data directories of the runs in progress: removed on every exit path (after the kills). */
const roots = new Set<string>();
process.on('exit', () => {
  live.forEach(killGroup);
  for (const r of roots) {
    try {
      fs.rmSync(r, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      console.error(`removing ${r}: ${(err as Error).message}`);
    }
  }
});
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function start(sys: SystemName, m: Member, initialCluster: string, bin = QKV_BIN): void {
  const flags = [...memberFlags(m, initialCluster, `bench-scale-${sys}`), ...COMMON_FLAGS, ...OWN_FLAGS[sys]];
  const [cmd, argv] = sys === 'quorumkv' ? [process.execPath, [...NODE_FLAGS, bin, ...flags]] : [ETCD_BIN, flags];
  const proc = spawn(cmd, argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  m.tail = [];
  m.snapshotLines = [];
  m.stallLines = [];
  const keep = (d: Buffer) => {
    for (const l of d.toString().split('\n')) {
      if (l === '') continue;
      m.tail.push(l);
      if (m.tail.length > 30) m.tail.shift();
      if (/snapshot/i.test(l) && !/snapshot taken/.test(l) && m.snapshotLines.length < SNAPSHOT_LINES_MAX) m.snapshotLines.push(l);
      if (/event loop blocked/.test(l) && m.stallLines.length < STALL_LINES_MAX) m.stallLines.push(l);
    }
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  m.proc = proc;
}

function grpcClients(port: number): { kv: grpc.Client; maint: grpc.Client } {
  const ctor = (service: string) =>
    (grpcDefinitions().etcdserverpb as Record<string, unknown>)[service] as new (a: string, c: grpc.ChannelCredentials, o?: object) => grpc.Client;
  const target = `127.0.0.1:${port}`;
  const opts = { 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 };
  return { kv: new (ctor('KV'))(target, grpc.credentials.createInsecure(), opts), maint: new (ctor('Maintenance'))(target, grpc.credentials.createInsecure(), opts) };
}

function call<T>(c: grpc.Client, method: string, req: object, deadlineMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (c as unknown as Record<string, (r: object, o: object, cb: (e: Error | null, v: T) => void) => void>)[method]!;
    fn.call(c, req, { deadline: Date.now() + deadlineMs }, (e, v) => (e ? reject(e) : resolve(v)));
  });
}

interface StatusPb {
  leader: string;
  header: { member_id: string; revision: string };
}

function exited(m: Member): boolean {
  return m.proc === undefined || m.proc.exitCode !== null || m.proc.signalCode !== null;
}

/** Polls until `probe` returns a value; fails if a member in `watch` exited, or at the deadline. */
async function until<T>(what: string, timeoutMs: number, watch: Member[], probe: () => Promise<T | undefined>, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    const dead = watch.find(exited);
    if (dead) throw new Error(`${dead.name} exited while waiting for ${what}:\n${dead.tail.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

async function leaderOf(members: Member[]): Promise<Member> {
  return until('leader', READY_TIMEOUT_MS, members, async () => {
    for (const m of members) {
      const s = await call<StatusPb>(m.maint, 'Status', {}, 1000).catch(() => undefined);
      if (s && s.leader !== '0' && s.leader === s.header.member_id) return m;
    }
    return undefined;
  }, 100);
}

async function revision(m: Member, deadlineMs = 5_000): Promise<number> {
  return Number((await call<StatusPb>(m.maint, 'Status', {}, deadlineMs)).header.revision);
}

function hwm(m: Member): number {
  if (exited(m)) return NaN;
  try {
    const r = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${m.proc!.pid}/status`, 'utf8'));
    return r ? Number(r[1]) * 1024 : NaN;
  } catch {
    return NaN; // gone in the meantime
  }
}

/** Resets a process's peak RSS to its current RSS (Linux: "5" to clear_refs). */
function resetHwm(m: Member): void {
  if (exited(m)) return;
  try {
    fs.writeFileSync(`/proc/${m.proc!.pid}/clear_refs`, '5');
  } catch (err) {
    console.error(`clear_refs of ${m.name}: ${(err as Error).message}`);
  }
}

/** A process's CPU time so far (user + system, all its threads), in ms; NaN once it has exited. */
function cpuMs(m: Member): number {
  if (exited(m)) return NaN;
  try {
    return cpuMsOfPid(m.proc!.pid!);
  } catch {
    return NaN; // gone in the meantime
  }
}
/** Bytes a process has caused to be written to storage so far (/proc/<pid>/io write_bytes); NaN
 *  once it has exited. */
function writtenBytes(m: Member): number {
  if (exited(m)) return NaN;
  try {
    const r = /^write_bytes:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${m.proc!.pid}/io`, 'utf8'));
    return r ? Number(r[1]) : NaN;
  } catch {
    return NaN; // gone in the meantime
  }
}
const selfCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** quorumkv's event-loop lag max since the previous scrape, in ms (NaN: none, e.g. etcd). */
function loopLagMaxMs(m: Member): Promise<number> {
  return exited(m) ? Promise.resolve(NaN) : lagMaxMs(m.clientPort, 5_000);
}

interface OpResult {
  ms: number;
  /** Peak RSS per member (bytes), during the operation. */
  hwm: number[];
  /** Longest loop stall per member (ms; NaN where not known). */
  stallMs: number[];
  /** CPU used during the operation per member and by this benchmark process (the client, its
   *  scrapes of the members' /metrics included), ms. */
  cpuMs: number[];
  clientCpuMs: number;
  /** Bytes written to storage during the operation per member. */
  writtenBytes: number[];
  note: string;
}

/** One /metrics scrape of every member (NaN lag and no values for one that has exited). */
function scrapeAll(members: Member[]): Promise<MetricsScrape[]> {
  return Promise.all(members.map((m) => (exited(m) ? Promise.resolve({ lagMaxMs: NaN, values: new Map<string, number>() }) : scrapeMetrics(m.clientPort, 5_000))));
}

/** "n × mean ms" of a disk histogram between two scrapes, per member ("–" where unknown). */
function diskLatency(before: MetricsScrape[], after: MetricsScrape[], histogram: string): string {
  return after
    .map((a, i) => {
      const b = before[i]!.values;
      const n = (a.values.get(`${histogram}_count`) ?? NaN) - (b.get(`${histogram}_count`) ?? NaN);
      const sum = (a.values.get(`${histogram}_sum`) ?? NaN) - (b.get(`${histogram}_sum`) ?? NaN);
      return Number.isNaN(n) || n <= 0 ? '–' : `${n}×${((sum * 1000) / n).toFixed(1)}`;
    })
    .join('/');
}

/** Runs `op` with every member's peak RSS reset before and read after, loop lag scraped, and
 *  the members' and the client's CPU, the members' bytes written and their disk histograms read
 *  before and after. */
async function measured(members: Member[], op: () => Promise<string>): Promise<OpResult> {
  members.forEach(resetHwm);
  const first = await scrapeAll(members); // starts a new lag window
  onScrape = (s) => fold(s.map((x) => x.lagMaxMs));
  const stall = members.map(() => NaN);
  const peak = members.map(() => NaN);
  const fold = (lags: number[]) => lags.forEach((l, i) => (stall[i] = Number.isNaN(l) ? stall[i]! : Math.max(Number.isNaN(stall[i]!) ? 0 : stall[i]!, l)));
  const foldHwm = () => members.forEach((m, i) => (peak[i] = Math.max(Number.isNaN(peak[i]!) ? 0 : peak[i]!, hwm(m) || 0)));
  let running = true;
  const scraper = (async () => {
    for (let i = 0; running && i < PHASE_TIMEOUT_MS / LAG_SCRAPE_EVERY_MS; i++) {
      await sleep(LAG_SCRAPE_EVERY_MS);
      fold(await Promise.all(members.map(loopLagMaxMs)));
      foldHwm(); // a member killed during the operation keeps its peak
    }
  })();
  const t = Date.now();
  const procs0 = members.map((m) => m.proc);
  const cpu0 = members.map(cpuMs);
  const written0 = members.map(writtenBytes);
  const client0 = selfCpuMs();
  let note: string;
  let cpu: number[];
  let written: number[];
  let clientCpu: number;
  try {
    note = await op();
  } finally {
    // A member restarted during the operation (another process now, or none): its counters
    // started again, so no figure (NaN, printed as '–').
    const same = (m: Member, i: number) => m.proc !== undefined && m.proc === procs0[i];
    cpu = members.map((m, i) => (same(m, i) ? cpuMs(m) - cpu0[i]! : NaN));
    written = members.map((m, i) => (same(m, i) ? writtenBytes(m) - written0[i]! : NaN));
    clientCpu = selfCpuMs() - client0;
    running = false;
    await scraper;
  }
  const ms = Date.now() - t;
  onScrape = undefined;
  const last = await scrapeAll(members);
  fold(last.map((s) => s.lagMaxMs));
  foldHwm();
  // The disk's share (fsyncs of the WAL, backend commits): count × mean ms per member.
  const [wal, backend] = DISK_HISTOGRAMS.map((h) => diskLatency(first, last, h));
  note += `; WAL fsyncs ${wal} ms, backend commits ${backend} ms`;
  return { ms, hwm: peak, stallMs: stall, cpuMs: cpu, clientCpuMs: clientCpu, writtenBytes: written, note };
}

/** 1 MiB of random bytes; values are slices of it at varying offsets (incompressible). */
const POOL = crypto.randomBytes(1 << 20);
function valueFor(i: number): Buffer {
  const off = (i * 7919) % (POOL.length - VALUE_BYTES);
  return POOL.subarray(off, off + VALUE_BYTES);
}
const keyFor = (i: number) => Buffer.from(`key/${String(i % KEYS).padStart(9, '0')}`);
/** Keys of the n-th `fresh` operation: never written before it. */
const freshKeyFor = (n: number) => (i: number) => Buffer.from(`new${n}/${String(i % KEYS).padStart(9, '0')}`);

/** A put the member answered "request timed out" (or that passed its deadline) is tried again, as
 *  an application would; each such put is counted and printed (when and which error), since a
 *  write that took longer than the member's request timeout is a finding, not noise. */
const PUT_TRIES_MAX = 3;
const putRetries: string[] = [];
async function putMany(m: Member, n: number, offset: number, clients: number, key: (i: number) => Buffer = keyFor): Promise<void> {
  let next = 0;
  const deadline = Date.now() + PHASE_TIMEOUT_MS;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      for (let attempt = 1; ; attempt++) {
        if (Date.now() > deadline) throw new Error('puts timed out');
        try {
          await call(m.kv, 'Put', { key: key(i), value: valueFor(i + offset) }, 60_000);
          break;
        } catch (err) {
          const code = (err as grpc.ServiceError).code;
          if (attempt >= PUT_TRIES_MAX || (code !== grpc.status.UNAVAILABLE && code !== grpc.status.DEADLINE_EXCEEDED)) throw err;
          const line = `${new Date().toISOString()} put of ${key(i).toString()} to ${m.name}, try ${attempt}: ${(err as Error).message}`;
          putRetries.push(line);
          console.log(`    retried: ${line}`);
        }
      }
    }
  };
  const done = Promise.all(Array.from({ length: clients }, worker));
  if (PROGRESS_MS > 0) await progress(done, () => Math.min(next, n), n);
  await done;
}

/** With --progress=S: every S seconds until `done`, the puts of that interval, their rate, and the
 *  members' and the client's CPU per put over it (where in an operation the time goes). */
async function progress(done: Promise<unknown>, count: () => number, n: number): Promise<void> {
  let finished = false;
  void done.finally(() => (finished = true)).catch(() => undefined);
  let [c0, cpu0, self0, t0, m0] = [count(), currentMembers.map(cpuMs), selfCpuMs(), Date.now(), await scrapeAll(currentMembers)];
  onScrape?.(m0);
  for (let i = 0; !finished && i < PHASE_TIMEOUT_MS / PROGRESS_MS; i++) {
    await Promise.race([done.catch(() => undefined), sleep(PROGRESS_MS)]);
    const [c1, cpu1, self1, t1, m1] = [count(), currentMembers.map(cpuMs), selfCpuMs(), Date.now(), await scrapeAll(currentMembers)];
    onScrape?.(m1);
    const puts = c1 - c0;
    if (puts > 0) {
      const per = (a: number, b: number) => (((b - a) * 1000) / puts).toFixed(0);
      console.log(
        `    ${c1}/${n} puts (started): ${((puts * 1000) / (t1 - t0)).toFixed(0)} puts/s, CPU µs/put ${cpu1.map((c, j) => per(cpu0[j]!, c)).join('/')}, ` +
          `client ${per(self0, self1)}; WAL fsyncs ${diskLatency(m0, m1, DISK_HISTOGRAMS[0])} ms`,
      );
    }
    [c0, cpu0, self0, t0, m0] = [c1, cpu1, self1, t1, m1];
  }
}

/** One prober: a put every PROBE_EVERY_MS until stopped; latencies in ms. */
function prober(m: () => Member): { stop: () => Promise<{ ms: number[]; failed: number }> } {
  const ms: number[] = [];
  let failed = 0;
  let running = true;
  const loop = (async () => {
    for (let i = 0; running && i < PHASE_TIMEOUT_MS / PROBE_EVERY_MS; i++) {
      const s = Date.now();
      try {
        await call(m().kv, 'Put', { key: Buffer.from('probe'), value: Buffer.from(String(i)) }, 10_000);
        ms.push(Date.now() - s);
      } catch {
        failed++;
      }
      await sleep(PROBE_EVERY_MS);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ms, failed };
    },
  };
}
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)] ?? NaN;

function etcdctl(endpoints: Member[], args: string[]): Promise<string> {
  const eps = endpoints.map((m) => `127.0.0.1:${m.clientPort}`).join(',');
  return new Promise((resolve, reject) => {
    execFile(
      ETCDCTL_BIN,
      [`--endpoints=${eps}`, `--command-timeout=${ETCDCTL_TIMEOUT_S}s`, `--dial-timeout=10s`, ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: (ETCDCTL_TIMEOUT_S + 30) * 1000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => (err ? reject(new Error(`etcdctl ${args.join(' ')}: ${err.message} ${stderr}`)) : resolve(stdout)),
    );
  });
}

/** Puts per operation label (for CPU per put). */
const PUTS_OF: Record<string, number> = { load: KEYS, overwrite: OVERWRITE, 'fresh load': KEYS };

const mib = (b: number) => (Number.isNaN(b) ? '–' : `${(b / 2 ** 20).toFixed(0)}`);
const secs = (ms: number) => (Number.isNaN(ms) ? '–' : (ms / 1000).toFixed(1));

async function runSystem(sys: SystemName): Promise<Map<string, OpResult>> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `bench-scale-${sys}-`));
  roots.add(root);
  const members: Member[] = [];
  const results = new Map<string, OpResult>();
  let completed = false;
  try {
    for (let i = 1; i <= 3; i++) {
      const clientPort = await freePort();
      members.push({ name: `m${i}`, dataDir: path.join(root, `m${i}`), clientPort, peerPort: await freePort(), tail: [], snapshotLines: [], stallLines: [], ...grpcClients(clientPort) });
    }
    const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
    currentMembers = members;
    members.forEach((m) => start(sys, m, initialCluster));
    let leader = await leaderOf(members);
    let retriesSeen = putRetries.length;
    const log = (op: string, r: OpResult) => {
      results.set(op, r);
      // Puts retried since the previous line (the catch-up's count includes its writes while the follower was down).
      if (putRetries.length > retriesSeen) r.note += `; ${putRetries.length - retriesSeen} puts retried after a timeout`;
      retriesSeen = putRetries.length;
      const stall = r.stallMs.some((s) => !Number.isNaN(s)) ? `; longest loop stall ${r.stallMs.map((s) => s.toFixed(0)).join('/')} ms` : '';
      const puts = PUTS_OF[op.replace(/ #\d+$/, '')];
      const cpu =
        puts === undefined
          ? `; CPU s ${r.cpuMs.map((c) => secs(c)).join('/')}, client ${secs(r.clientCpuMs)}`
          : `; CPU µs/put ${r.cpuMs.map((c) => (Number.isNaN(c) ? '–' : ((c * 1000) / puts).toFixed(0))).join('/')}, client ${((r.clientCpuMs * 1000) / puts).toFixed(0)}`;
      console.log(`[${sys}] ${op}: ${secs(r.ms)} s; peak RSS ${r.hwm.map(mib).join('/')} MiB${stall}${cpu}; written ${r.writtenBytes.map(mib).join('/')} MiB${r.note ? `; ${r.note}` : ''}`);
      // Where the longest stalls went (quorumkv logs each block of a heartbeat interval or more
      // with its GC share: src/util/loop_stall.ts).
      for (const m of members) {
        for (const l of m.stallLines) console.log(`    ${m.name}: ${stallSummary(l)}`);
        m.stallLines.length = 0;
      }
    };

    const loadFrom = monotonicUs();
    const loaded = await measured(members, async () => {
      const t = Date.now();
      await putMany(leader, KEYS, 0, CLIENTS);
      return `${((KEYS / (Date.now() - t)) * 1000).toFixed(0)} puts/s`;
    });
    loaded.note += `; window ${loadFrom}..${monotonicUs()} µs`;
    log('load', loaded);

    // The follower killed for the catch-up; later operations pick the other follower for defrag.
    let follower = members.find((m) => m !== leader)!;
    let before: { ms: number[]; failed: number } = { ms: [], failed: 0 };
    /** What an operation needs done first, not timed (the catch-up's kill, writes and quiet probes). */
    const prepare: Partial<Record<OpName, () => Promise<void>>> = {
      'catch-up': async () => {
        follower = members.find((m) => m !== leader)!;
        await killAndWait(follower);
        await putMany(leader, EXTRA, 2, CLIENTS);
        const quiet = prober(() => leader);
        await sleep(10_000);
        before = await quiet.stop();
      },
    };
    /** What must hold before the next operation, not timed. */
    const settle: Partial<Record<OpName, () => Promise<void>>> = {
      // The catch-up's prober wrote until it stopped: the restarted follower may still be applying
      // its last puts, and `endpoint hashkv` hashes each member at its own current revision.
      'catch-up': async () => {
        const settled = await revision(leader);
        for (const m of members) await until(`${m.name} at revision ${settled}`, PHASE_TIMEOUT_MS, members, async () => ((await revision(m, 2_000)) >= settled ? true : undefined));
      },
    };
    let catchUps = 0;
    let freshLoads = 0;
    const ops: Record<OpName, () => Promise<string>> = {
      overwrite: async () => {
        const t = Date.now();
        await putMany(leader, OVERWRITE, 1, CLIENTS);
        return `${((OVERWRITE / (Date.now() - t)) * 1000).toFixed(0)} puts/s`;
      },
      fresh: async () => {
        const t = Date.now();
        await putMany(leader, KEYS, 3, CLIENTS, freshKeyFor(++freshLoads));
        return `${((KEYS / (Date.now() - t)) * 1000).toFixed(0)} puts/s`;
      },
      'catch-up': async () => {
        const target = await revision(leader);
        leader.snapshotLines.length = 0;
        const probes = prober(() => leader);
        start(sys, follower, initialCluster, CATCH_UP_BINS[catchUps++ % CATCH_UP_BINS.length]);
        // The follower's peak RSS when it first answers (its start, before the snapshot comes in).
        let readyHwm = NaN;
        await until(`${follower.name} at revision ${target}`, PHASE_TIMEOUT_MS, [follower], async () => {
          const rev = await revision(follower, 2_000);
          if (Number.isNaN(readyHwm)) readyHwm = hwm(follower);
          return rev >= target ? true : undefined;
        }, 50);
        const during = await probes.stop();
        const received = follower.snapshotLines.filter((l) => RECEIVED_SNAPSHOT.test(l));
        const snap = received.length > 0 ? `by snapshot ("${received[0]!.slice(0, 90)}…")` : 'NO snapshot line in its log';
        for (const m of [leader, follower]) for (const l of m.snapshotLines) console.log(`    ${m.name}: ${l.slice(0, 300)}`);
        return `${follower.name} restarted after ${EXTRA} writes (peak RSS ${mib(readyHwm)} MiB when it first answered), ${snap}; leader put p99 ${p99(during.ms)} ms during (${during.failed} failed) vs ${p99(before.ms)} ms before`;
      },
      hashkv: async () => {
        const out = JSON.parse(await etcdctl(members, ['endpoint', 'hashkv', '-w', 'json'])) as { HashKV: { hash: number } }[];
        const hashes = out.map((h) => h.HashKV.hash);
        if (!hashes.every((h) => h === hashes[0])) throw new Error(`HashKV differs across members: ${hashes.join(', ')}`);
        return `equal on ${hashes.length} members`;
      },
      defrag: async () => {
        const other = members.find((m) => m !== leader && m !== follower)!;
        await etcdctl([other], ['defrag']);
        return `of ${other.name} (a follower)`;
      },
      snapshot: async () => {
        const file = path.join(root, 'snapshot.db');
        try {
          await etcdctl([leader], ['snapshot', 'save', file]);
          return `from the leader, ${mib(fs.statSync(file).size)} MiB file`;
        } finally {
          fs.rmSync(file, { force: true });
        }
      },
      restart: async () => {
        await Promise.all(members.map(killAndWait));
        const t = Date.now();
        members.forEach((m) => start(sys, m, initialCluster));
        const who = await until('a linearizable read', PHASE_TIMEOUT_MS, members, async () => {
          for (const m of members) {
            const r = await call<{ kvs: unknown[] }>(m.kv, 'Range', { key: keyFor(0) }, 1_000).catch(() => undefined);
            if (r && r.kvs.length === 1) return m.name;
          }
          return undefined;
        }, 20);
        leader = await leaderOf(members);
        return `all 3 killed; first linearizable read from ${who} after ${secs(Date.now() - t)} s`;
      },
    };
    const seen = new Map<string, number>();
    for (const op of OPS) {
      const n = (seen.get(op) ?? 0) + 1;
      seen.set(op, n);
      await prepare[op]?.();
      const from = monotonicUs();
      const r = await measured(members, ops[op]);
      // The operation's window on the members' monotonic clock (a --cpu-prof profile's timestamps).
      r.note += `; window ${from}..${monotonicUs()} µs`;
      log(n === 1 ? OP_LABEL[op] : `${OP_LABEL[op]} #${n}`, r);
      await settle[op]?.();
    }
    if (NODE_FLAGS.length > 0 && sys === 'quorumkv') await Promise.all(members.map(stopGracefully));
    completed = true;
    return results;
  } finally {
    // A failed run's data directory goes with it: the members' last log lines are what is left.
    if (!completed) for (const m of members) console.log(`[${sys}] ${m.name}${exited(m) ? ' (exited)' : ''}, last log lines:\n      ${m.tail.join('\n      ')}`);
    for (const m of members) {
      m.kv.close();
      m.maint.close();
      killGroup(m.proc);
    }
    await sleep(1_000);
    fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
    roots.delete(root);
  }
}

async function main(): Promise<void> {
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(
    `bench-scale: ${KEYS} keys × ${VALUE_BYTES} B (${mib(KEYS * VALUE_BYTES)} MiB), overwrite ${OVERWRITE}, ${EXTRA} writes while a follower is down, ` +
      `${CLIENTS} clients; flags ${COMMON_FLAGS.join(' ')}; ${os.cpus().length} CPUs, load average ${load}`,
  );
  const all = new Map<SystemName, Map<string, OpResult>>();
  for (const sys of SYSTEMS) {
    const t = Date.now();
    all.set(sys, await runSystem(sys));
    console.log(`[${sys}] done in ${secs(Date.now() - t)} s; load average now ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  }
  const e = all.get('etcd');
  const q = all.get('quorumkv');
  const ops = [...(q ?? e ?? new Map<string, OpResult>()).keys()];
  console.log('\n| operation | etcd 3.4 | quorumkv | peak RSS MiB, etcd m1/m2/m3 | peak RSS MiB, quorumkv m1/m2/m3 | quorumkv longest loop stall, ms |');
  console.log('|---|---:|---:|---|---|---|');
  for (const op of ops) {
    const a = e?.get(op);
    const b = q?.get(op);
    const stall = b ? b.stallMs.map((s) => (Number.isNaN(s) ? '–' : s.toFixed(0))).join('/') : '–';
    console.log(`| ${op} | ${a ? `${secs(a.ms)} s` : '–'} | ${b ? `${secs(b.ms)} s` : '–'} | ${a ? a.hwm.map(mib).join('/') : '–'} | ${b ? b.hwm.map(mib).join('/') : '–'} | ${stall} |`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
