// The hostile-client attacks of test/hostile/ measured side by side against a quorumkv member and
// a real etcd (3.4 at /usr/bin/etcd, or $ETCD_BIN), each on loopback with a fresh data dir; prints
// one table row per attack for docs/security.md. Every attack is bounded (ATTACK_MS), every
// process started is killed (its process group) at the end, on failure too.
//
//   npx tsc -p . && node dist/scripts/hostile-vs-etcd.js [--attack=<words of a row>]
//
// --attack runs only the rows whose name contains those words (the control row always runs).
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, killGroup, SERVER_BIN, spawnMember } from '../test/integration/harness';
import { kvClient, unary } from '../test/compat/grpc_client';
import * as F from '../test/hostile/frames';

const ATTACK_MS = 5000;
const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';

interface Target {
  name: string;
  proc: ChildProcess;
  port: number;
}

async function start(name: 'quorumkv' | 'etcd'): Promise<Target> {
  const port = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  const url = `http://127.0.0.1:${port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `hostile-${name}-`));
  const args =
    name === 'etcd'
      ? [`--data-dir=${dir}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=default=${peer}`]
      : [SERVER_BIN, `--data-dir=${dir}`, `--listen-client-urls=${url}`, `--listen-peer-urls=${peer}`];
  const { proc } = await spawnMember(name === 'etcd' ? ETCD_BIN : process.execPath, args, name);

  const kv = kvClient(`127.0.0.1:${port}`);
  await unary(kv, 'Put', { key: Buffer.from('probe'), value: Buffer.from('v') });
  kv.close();
  return { name, proc, port };
}

function rssMb(t: Target): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${t.proc.pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? 0) / 1024);
}

/** A Range from a fresh client: ms until answered, or "timeout" after 5 s. */
async function probe(t: Target): Promise<string> {
  const kv = kvClient(`127.0.0.1:${t.port}`);
  const t0 = Date.now();
  try {
    await Promise.race([unary(kv, 'Range', { key: Buffer.from('probe') }), new Promise((_, j) => setTimeout(() => j(new Error('timeout')), 5000))]);
    return `${Date.now() - t0} ms`;
  } catch (err) {
    return `failed (${(err as Error).message})`;
  } finally {
    kv.close();
  }
}

function goaway(s: net.Socket, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('no GOAWAY'), ms);
    F.readFrames(s, (type, _f, _id, p) => {
      if (type === F.T.GOAWAY) (clearTimeout(t), resolve(`GOAWAY ${p.readUInt32BE(4) === 0xb ? 'ENHANCE_YOUR_CALM' : `code ${p.readUInt32BE(4)}`}`));
    });
  });
}

const attacks: [string, (t: Target, s: () => Promise<net.Socket>) => Promise<string>][] = [
  [
    // Not an attack: what ordinary traffic of the same length costs in RSS (V8's young generation
    // grows under any allocation; etcd's Go heap much less), the baseline for the rows below.
    'control: an ordinary client, sequential Range calls for 5 s',
    async (t) => {
      const kv = kvClient(`127.0.0.1:${t.port}`);
      const until = Date.now() + ATTACK_MS;
      let n = 0;
      while (Date.now() < until) {
        await unary(kv, 'Range', { key: Buffer.from('probe') });
        n++;
      }
      kv.close();
      return `${n} calls; RSS ${rssMb(t)} MB`;
    },
  ],
  [
    'incomplete 1.5 MB Put requests on up to 1000 streams of one connection (flow control obeyed, PINGs answered)',
    async (t) => {
      const s = await F.connectRaw(t.port, [F.settings()]);
      const r = await F.partialRequestFlood(s, '/etcdserverpb.KV/Put', 1_500_000, ATTACK_MS, 300, 1000);
      const out = `${(r.sent / 1048576).toFixed(0)} MB sent on ${r.streams} streams, ${r.ended} ended by the server, at most ${(r.heldMax / 1048576).toFixed(0)} MB outstanding; RSS ${rssMb(t)} MB; probe ${await probe(t)}`;
      s.destroy();
      return out;
    },
  ],
  [
    'LeaseKeepAlive requests, zero window (flow control obeyed)',
    async (t) => {
      const s = await F.connectRaw(t.port, [F.settings([[F.SETTINGS_INITIAL_WINDOW_SIZE, 0]]), F.grpcHeaders(1, '/etcdserverpb.Lease/LeaseKeepAlive')]);
      const sent = await F.floodWithinWindows(s, new F.SendWindows(s), [1], ATTACK_MS, new Array<Buffer>(1500).fill(F.keepAliveRequest(1)));
      const r = `${(sent / 1048576).toFixed(1)} MB accepted; RSS ${rssMb(t)} MB; probe ${await probe(t)}`;
      s.destroy();
      return r;
    },
  ],
  [
    'Watch creates, zero window, 20 streams',
    async (t) => {
      const ids = Array.from({ length: 20 }, (_, i) => 2 * i + 1);
      const s = await F.connectRaw(t.port, [F.settings([[F.SETTINGS_INITIAL_WINDOW_SIZE, 0]]), ...ids.map((id) => F.grpcHeaders(id, '/etcdserverpb.Watch/Watch'))]);
      const sent = await F.floodWithinWindows(s, new F.SendWindows(s), ids, ATTACK_MS, new Array<Buffer>(800).fill(F.watchCreateRequest('k')));
      const r = `${(sent / 1048576).toFixed(1)} MB accepted; RSS ${rssMb(t)} MB; probe ${await probe(t)}`;
      s.destroy();
      return r;
    },
  ],
  [
    '1000 blocked streams, then 10k SETTINGS, then PING',
    async (t) => {
      const s = await F.connectRaw(t.port, [F.settings([[F.SETTINGS_INITIAL_WINDOW_SIZE, 0]])]);
      const parts: Buffer[] = [];
      for (let id = 1; id < 2000; id += 2) {
        const d = F.grpcData(id, [Buffer.concat([Buffer.from([0x0a, 5]), Buffer.from('probe')])], true);
        parts.push(F.grpcHeaders(id, '/etcdserverpb.KV/Range'), d);
      }
      s.write(Buffer.concat(parts));
      const code = goaway(s, ATTACK_MS);
      let pingAt = 0;
      let pong = 'no PING answer';
      F.readFrames(s, (type, flags) => {
        if (type === F.T.PING && flags & 1 && pingAt > 0) pong = `PING answered in ${Date.now() - pingAt} ms`;
      });
      await new Promise((r) => setTimeout(r, 500));
      s.write(Buffer.concat(new Array<Buffer>(10_000).fill(F.settings())));
      pingAt = Date.now();
      s.write(F.ping());
      await new Promise((r) => setTimeout(r, 2000));
      const r = `${pong}; ${await code}; RSS ${rssMb(t)} MB; probe ${await probe(t)}`;
      s.destroy();
      return r;
    },
  ],
  [
    '5000 streams reset by the server (WINDOW_UPDATE of 0)',
    async (t) => {
      const s = await F.connectRaw(t.port, [F.settings()]);
      const code = goaway(s, ATTACK_MS);
      const parts: Buffer[] = [];
      for (let id = 1; id < 10_000; id += 2) parts.push(F.grpcHeaders(id, '/etcdserverpb.KV/Range'), F.windowUpdate(id, 0));
      s.write(Buffer.concat(parts));
      const r = `${await code}; RSS ${rssMb(t)} MB; probe ${await probe(t)}`;
      s.destroy();
      return r;
    },
  ],
  [
    '20k PINGs',
    async (t) => {
      const s = await F.connectRaw(t.port, [F.settings()]);
      const code = goaway(s, 2000);
      s.write(Buffer.concat(new Array<Buffer>(20_000).fill(F.ping())));
      const r = `${await code}; probe ${await probe(t)}`;
      s.destroy();
      return r;
    },
  ],
  [
    '1010 streams on one connection',
    async (t) => {
      const s = await F.connectRaw(t.port, [F.settings([[F.SETTINGS_INITIAL_WINDOW_SIZE, 0]])]);
      let advertised = 'none';
      let refused = 0;
      F.readFrames(s, (type, flags, _id, p) => {
        if (type === F.T.SETTINGS && !(flags & 1)) for (let o = 0; o < p.length; o += 6) if (p.readUInt16BE(o) === F.SETTINGS_MAX_CONCURRENT_STREAMS) advertised = String(p.readUInt32BE(o + 2));
        if (type === F.T.RST_STREAM && p.readUInt32BE(0) === 7) refused++;
      });
      const parts: Buffer[] = [];
      for (let id = 1; id < 2020; id += 2) parts.push(F.grpcHeaders(id, '/etcdserverpb.Watch/Watch'));
      s.write(Buffer.concat(parts));
      await new Promise((r) => setTimeout(r, 1000));
      s.destroy();
      return `MAX_CONCURRENT_STREAMS ${advertised}; ${refused} refused`;
    },
  ],
];

async function sigtermUnderFlood(t: Target): Promise<string> {
  const s = await F.connectRaw(t.port, [F.settings([[F.SETTINGS_INITIAL_WINDOW_SIZE, 0]]), F.grpcHeaders(1, '/etcdserverpb.Lease/LeaseKeepAlive')]);
  void F.floodWithinWindows(s, new F.SendWindows(s), [1], 3000, new Array<Buffer>(1500).fill(F.keepAliveRequest(1)));
  await new Promise((r) => setTimeout(r, 1000));
  const exited = new Promise<void>((r) => t.proc.once('exit', () => r()));
  const t0 = Date.now();
  process.kill(t.proc.pid!, 'SIGTERM');
  const res = await Promise.race([exited.then(() => `exited ${Date.now() - t0} ms after SIGTERM`), new Promise<string>((r) => setTimeout(() => r('still running 15 s after SIGTERM'), 15_000))]);
  s.destroy();
  return res;
}

async function main(): Promise<void> {
  const rows = new Map<string, string[]>();
  for (const name of ['etcd', 'quorumkv'] as const) {
    if (name === 'etcd' && !fs.existsSync(ETCD_BIN)) {
      console.log(`no ${ETCD_BIN}: etcd column left out`);
      continue;
    }
    const t = await start(name);
    try {
      const idle = `RSS ${rssMb(t)} MB`;
      console.log(`${name}: idle ${idle}`);
      rows.set('idle (after one Put)', [...(rows.get('idle (after one Put)') ?? []), idle]);
      const only = process.argv.find((a) => a.startsWith('--attack='))?.slice('--attack='.length);
      for (const [what, run] of attacks) {
        if (only !== undefined && !what.startsWith('control') && !what.includes(only)) continue;
        const r = await run(t, () => F.connectRaw(t.port, []));
        console.log(`${name} | ${what} | ${r}`);
        rows.set(what, [...(rows.get(what) ?? []), r]);
        await new Promise((res) => setTimeout(res, 500));
      }
      const r = await sigtermUnderFlood(t);
      console.log(`${name} | SIGTERM during a zero-window flood | ${r}`);
      rows.set('SIGTERM during a zero-window flood', [...(rows.get('SIGTERM during a zero-window flood') ?? []), r]);
    } finally {
      killGroup(t.proc);
    }
  }
  console.log('\n| what a client did | etcd | quorumkv |\n|---|---|---|');
  for (const [what, r] of rows) console.log(`| ${what} | ${r.join(' | ')} |`);
  process.exit(0);
}

void main();
