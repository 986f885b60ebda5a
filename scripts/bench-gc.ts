// GC under a large-state overwrite (issue 17), not run in CI. Three quorumkv members on 127.0.0.1,
// each with node flags of its own (and optionally a build of its own), all under --trace-gc: the
// followers apply the same entries, so giving m2 and m3 different flags is an A/B of GC policy
// inside one run, under the same machine load. m1 is made the leader (move-leader, again after
// every election during a phase) and takes the
// clients. Phases:
//   load       KEYS keys × VALUE_BYTES through Txns of TXN_PUTS (4) puts (32 clients; builds the state quickly,
//              in entries small enough that the members' in-memory Raft log stays small);
//   overwrite  etcd's benchmark: `put --sequential-keys --key-space-size=KEYS --total=OVERWRITE`,
//              CLIENTS clients, to the leader (the issue's scenario: one put per revision).
// Per phase and member: scavenges and mark-compacts (count, pause sum, longest pause, incremental
// marking steps) from the --trace-gc lines of that phase, CPU seconds (utime+stime), peak RSS
// (VmHWM, reset at the phase's start), the longest loop stall (/metrics, scraped every 500 ms) and
// leader changes seen.
//
// Usage: npx tsc -p . && node dist/scripts/bench-gc.js [--keys=100000] [--value-bytes=4096]
//        [--overwrite=KEYS] [--clients=100] [--key-size=16] [--dir=/tmp/gc-bench]
//        [--m1="node flags"] [--m2="node flags"] [--m3="node flags"] [--f1="member flags"] [--f2=..] [--f3=..]
//        [--bin1=dist/src/cli/quorumkv.js] [--bin2=...] [--bin3=...] [--flags="member flags"]
//        [--benchmark=/work/bin/etcd-benchmark] [--etcdctl=/usr/bin/etcdctl] [--overwrites=1] [--txn-puts=4]
// The members' logs (with the GC trace) stay in DIR/mN.log; their data directories are removed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { arg, client, cpuMsOfPid, freePort, lagMaxMs, memberFlags, sleep, statusKb, unary, type Client } from './bench_support';

const KEYS = Number(arg('keys', '100000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const OVERWRITE = Number(arg('overwrite', String(KEYS)));
const OVERWRITES = Number(arg('overwrites', '1'));
const CLIENTS = Number(arg('clients', '100'));
const KEY_SIZE = Number(arg('key-size', '16'));
const TXN_PUTS = Number(arg('txn-puts', '4'));
const DIR = path.resolve(arg('dir', '/tmp/gc-bench'));
const BENCHMARK = arg('benchmark', '/work/bin/etcd-benchmark');
const ETCDCTL = arg('etcdctl', '/usr/bin/etcdctl');
const FLAGS = ['--snapshot-count=1000', '--quota-backend-bytes=8589934592', ...arg('flags', '').split(' ').filter((f) => f !== '')];
const DEFAULT_BIN = path.join(__dirname, '..', 'src', 'cli', 'quorumkv.js');
const PHASE_TIMEOUT_MS = 30 * 60_000;
const words = (s: string) => s.split(' ').filter((f) => f !== '');

interface Member {
  name: string;
  dataDir: string;
  clientPort: number;
  peerPort: number;
  nodeFlags: string[];
  /** Member flags of its own (after --flags). */
  flags: string[];
  bin: string;
  log: string;
  proc?: ChildProcess;
  id?: string;
}

const procs: ChildProcess[] = [];
const killAll = (): void => {
  for (const p of procs) {
    if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) continue;
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch (err) {
      console.error(`kill ${p.pid}: ${(err as Error).message}`);
    }
  }
};
process.on('exit', () => {
  killAll();
  fs.rmSync(path.join(DIR, 'data'), { recursive: true, force: true, maxRetries: 3 });
});
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, out, errOut) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${errOut}`)) : resolve(out + errOut)));
    procs.push(p);
  });
}

/** etcd's benchmark key i: binary.PutVarint(i) (zig-zag) in a zeroed KEY_SIZE buffer. */
function benchKey(i: number): Buffer {
  const k = Buffer.alloc(KEY_SIZE);
  let ux = BigInt(i) << 1n;
  let o = 0;
  while (ux >= 0x80n) {
    k[o++] = Number(ux & 0x7fn) | 0x80;
    ux >>= 7n;
  }
  k[o] = Number(ux);
  return k;
}

const cpuSeconds = (pid: number): number => cpuMsOfPid(pid) / 1000;

interface GcStats {
  scavenges: number;
  scavengeMs: number;
  scavengeMaxMs: number;
  markCompacts: number;
  markCompactMs: number;
  markCompactMaxMs: number;
  incrementalMs: number;
  /** Heap in use after the phase's last mark-compact (MB). */
  liveAfterMcMb: number;
}

/** Sums the --trace-gc lines of one phase (a slice of a member's log). */
export function parseGcTrace(text: string): GcStats {
  const s: GcStats = { scavenges: 0, scavengeMs: 0, scavengeMaxMs: 0, markCompacts: 0, markCompactMs: 0, markCompactMaxMs: 0, incrementalMs: 0, liveAfterMcMb: NaN };
  const re = /ms: (Scavenge|Mark-Compact|Minor Mark-Compact)[^,]*?-> ([\d.]+) \([\d.]+\) MB, ([\d.]+) \/ [\d.]+ ms(?:\s+\(\+ ([\d.]+) ms in)?/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const pause = Number(m[3]);
    if (m[1] === 'Scavenge') {
      s.scavenges++;
      s.scavengeMs += pause;
      s.scavengeMaxMs = Math.max(s.scavengeMaxMs, pause);
    } else {
      s.markCompacts++;
      s.markCompactMs += pause;
      s.markCompactMaxMs = Math.max(s.markCompactMaxMs, pause);
      s.incrementalMs += m[4] === undefined ? 0 : Number(m[4]);
      s.liveAfterMcMb = Number(m[2]);
    }
  }
  return s;
}

async function leaderChanges(m: Member): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${m.clientPort}/metrics`).then((x) => x.text()).catch(() => '');
  const v = /^etcd_server_leader_changes_seen_total\s+(\S+)/m.exec(r);
  return v ? Number(v[1]) : NaN;
}

/** Every 2 s: if m1 is not the leader (an election under load), leadership is moved back to it,
 *  so that the followers' figures stay comparable (a leader spends ~1/3 more CPU). Returns the
 *  number of moves when stopped. */
function keepLeader(members: Member[], maints: Client[]): () => Promise<number> {
  let running = true;
  let moves = 0;
  const loop = (async () => {
    for (let i = 0; running && i < PHASE_TIMEOUT_MS / 2000; i++) {
      await sleep(2000);
      const s = await unary<{ leader: string; header: { member_id: string } }>(maints[0]!, 'Status', {}, 2000).catch(() => undefined);
      if (!running || s === undefined || s.leader === '0' || s.leader === s.header.member_id) continue;
      const from = members.find((m) => m.id === BigInt(s.leader).toString(16));
      if (from === undefined) continue;
      await run(ETCDCTL, [`--endpoints=127.0.0.1:${from.clientPort}`, 'move-leader', members[0]!.id!], 30_000)
        .then(() => moves++)
        .catch((err: unknown) => console.log(`  move-leader back to m1: ${(err as Error).message.split('\n')[0]}`));
    }
  })();
  return async () => {
    running = false;
    await loop;
    return moves;
  };
}

async function phase(name: string, members: Member[], maints: Client[], work: () => Promise<string>): Promise<void> {
  const stopKeeper = keepLeader(members, maints);
  const logAt = members.map((m) => fs.statSync(m.log).size);
  const cpuAt = members.map((m) => cpuSeconds(m.proc!.pid!));
  const lcAt = await Promise.all(members.map(leaderChanges));
  for (const m of members) fs.writeFileSync(`/proc/${m.proc!.pid}/clear_refs`, '5');
  await Promise.all(members.map((m) => lagMaxMs(m.clientPort, 5000)));
  const stall = members.map(() => 0);
  let running = true;
  const scraper = (async () => {
    for (let i = 0; running && i < PHASE_TIMEOUT_MS / 500; i++) {
      await sleep(500);
      const l = await Promise.all(members.map((m) => lagMaxMs(m.clientPort, 5000)));
      l.forEach((v, j) => (stall[j] = Number.isNaN(v) ? stall[j]! : Math.max(stall[j]!, v)));
    }
  })();
  const t = Date.now();
  const note = await work().finally(() => (running = false));
  const secs = (Date.now() - t) / 1000;
  await scraper;
  const moves = await stopKeeper();
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`== ${name}: ${secs.toFixed(1)} s; ${note}; leadership moved back to m1 ${moves} times; load average now ${load}`);
  for (const [j, m] of members.entries()) {
    const text = fs.readFileSync(m.log, 'utf8').slice(logAt[j]);
    const g = parseGcTrace(text);
    const cpu = cpuSeconds(m.proc!.pid!) - cpuAt[j]!;
    const lc = (await leaderChanges(m)) - lcAt[j]!;
    console.log(
      `  ${m.name} [${[...m.nodeFlags, ...m.flags].join(' ') || 'no flags'}${m.bin === DEFAULT_BIN ? '' : ` ${m.bin}`}]: cpu ${cpu.toFixed(1)} s; ` +
        `scavenges ${g.scavenges} (${(g.scavengeMs / 1000).toFixed(1)} s, max ${g.scavengeMaxMs.toFixed(0)} ms); ` +
        `mark-compacts ${g.markCompacts} (${(g.markCompactMs / 1000).toFixed(1)} s, max ${g.markCompactMaxMs.toFixed(0)} ms, incremental ${(g.incrementalMs / 1000).toFixed(1)} s; live after last ${g.liveAfterMcMb} MB); ` +
        `peak RSS ${(statusKb(m.proc!.pid!, 'VmHWM') / 1024).toFixed(0)} MiB; longest stall ${stall[j]!.toFixed(0)} ms; leader changes ${lc}`,
    );
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(path.join(DIR, 'data'), { recursive: true });
  const members: Member[] = [];
  for (const i of [1, 2, 3]) {
    members.push({
      name: `m${i}`,
      dataDir: path.join(DIR, 'data', `m${i}`),
      clientPort: await freePort(),
      peerPort: await freePort(),
      nodeFlags: words(arg(`m${i}`, '')),
      flags: words(arg(`f${i}`, '')),
      bin: path.resolve(arg(`bin${i}`, DEFAULT_BIN)),
      log: path.join(DIR, `m${i}.log`),
    });
  }
  const initial = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  for (const m of members) {
    const fd = fs.openSync(m.log, 'w');
    const p = spawn(process.execPath, ['--trace-gc', ...m.nodeFlags, m.bin, ...memberFlags(m, initial, 'bench-gc'), ...FLAGS, ...m.flags], { detached: true, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    procs.push(p);
    p.on('exit', (code, sig) => console.log(`${m.name} exited (${code ?? sig})`));
    m.proc = p;
  }
  const kvs: Client[] = members.map((m) => client('KV', m.clientPort));
  const maints: Client[] = members.map((m) => client('Maintenance', m.clientPort));
  let leader = -1;
  for (let i = 0; i < 600 && (leader < 0 || members.some((m) => m.id === undefined)); i++) {
    await sleep(100);
    for (const [j, mt] of maints.entries()) {
      const s = await unary<{ leader: string; header: { member_id: string } }>(mt, 'Status', {}, 1000).catch(() => undefined);
      if (s) members[j]!.id = BigInt(s.header.member_id).toString(16);
      if (s && s.leader !== '0' && s.leader === s.header.member_id) leader = j;
    }
  }
  if (leader < 0 || members.some((m) => m.id === undefined)) throw new Error('no leader (or a member did not answer) within 60 s');
  if (leader !== 0) {
    await run(ETCDCTL, [`--endpoints=127.0.0.1:${members[leader]!.clientPort}`, 'move-leader', members[0]!.id!], 60_000);
    await sleep(2000);
  }
  console.log(`bench-gc: ${KEYS} keys × ${VALUE_BYTES} B, overwrite ${OVERWRITE} × ${OVERWRITES}, ${CLIENTS} clients; m1 leads; ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const value = Buffer.alloc(VALUE_BYTES);
  for (let i = 0; i < VALUE_BYTES; i++) value[i] = (i * 131 + 7) & 0xff;
  await phase('load', members, maints, async () => {
    let next = 0;
    let retried = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < KEYS) {
          const from = next;
          next = Math.min(KEYS, next + TXN_PUTS);
          const success = [];
          for (let i = from; i < next; i++) success.push({ request_put: { key: benchKey(i), value } });
          for (let attempt = 1; ; attempt++) {
            try {
              await unary(kvs[0]!, 'Txn', { success }, 60_000);
              break;
            } catch (err) {
              // A Txn of puts is idempotent here: one that timed out (an election) is sent again.
              if (attempt >= 3 || !/timed out|UNAVAILABLE|DEADLINE/i.test((err as Error).message)) throw err;
              retried++;
            }
          }
        }
      }),
    );
    return `${KEYS} keys (${retried} Txns retried after a timeout)`;
  });
  for (let r = 0; r < OVERWRITES; r++) {
    await phase(`overwrite ${r + 1}`, members, maints, async () => {
      const out = await run(
        BENCHMARK,
        [`--endpoints=127.0.0.1:${members[0]!.clientPort}`, `--clients=${CLIENTS}`, `--conns=${Math.min(CLIENTS, 10)}`, 'put', `--key-size=${KEY_SIZE}`, '--sequential-keys', `--key-space-size=${KEYS}`, `--total=${OVERWRITE}`, `--val-size=${VALUE_BYTES}`],
        PHASE_TIMEOUT_MS,
      );
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
      const p99 = /99% in ([\d.]+) secs/.exec(out)?.[1];
      const errs = /Error distribution:([\s\S]*)/.exec(out)?.[1]?.trim().split('\n').slice(0, 3).join(' | ');
      return `${rps} puts/s, p99 ${p99} s${errs ? `; errors: ${errs}` : ''}`;
    });
  }
}

main()
  .then(() => process.exit(0))
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
