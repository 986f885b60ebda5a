// TLS handshake flood against the client port, quorumkv and etcd 3.4 side by side (issue 22's
// "TLS listener under a handshake flood", measured). Not run in CI.
//
// For each system: one fresh member with an https:// client URL (EC P-256 certificates from
// openssl, as the TLS tests make them); a flooding child process keeps CONNS concurrent loops of
// "TCP connect, full TLS handshake, close" for FLOOD_MS; meanwhile this process measures
//   - Range latency on a TLS gRPC connection opened before the flood (every 100 ms),
//   - a new client's wait: a fresh TLS gRPC connection + Range, every second,
//   - the server's CPU seconds (/proc/PID/stat) and RSS, and handshakes completed by the flood;
// then a second phase: IDLE connections that open TCP and never send a ClientHello, while the
// same probes run (the handshake timeout and the connection cap are what bound them).
//
// Usage: npx tsc -p . && node dist/scripts/tls-flood.js [--conns=64] [--seconds=10] [--idle=3000]
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../src/proto';
import { freePort, killGroup, SERVER_BIN, spawnMember } from '../test/integration/harness';
import { makeTestCerts, removeTestCerts, type TestCerts } from '../test/integration/tls_certs';

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

const CONNS = Number(arg('conns', '64'));
const FLOOD_MS = Number(arg('seconds', '10')) * 1000;
const IDLE = Number(arg('idle', '3000'));
const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

// ---- the flooding child ----------------------------------------------------------------------

/** Child mode: CONNS loops of connect + handshake + close until the deadline; prints the count. */
function floodChild(port: number, ca: string, conns: number, ms: number): void {
  const deadline = Date.now() + ms;
  let done = 0;
  let failed = 0;
  let running = conns;
  const loop = (): void => {
    if (Date.now() >= deadline) {
      if (--running === 0) process.send!({ done, failed }, () => process.exit(0));
      return;
    }
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: undefined, ALPNProtocols: ['h2'] });
    s.once('secureConnect', () => {
      done++;
      s.destroy();
      loop();
    });
    s.once('error', () => {
      failed++;
      s.destroy();
      setTimeout(loop, 10);
    });
  };
  for (let i = 0; i < conns; i++) loop();
}

// ---- the systems -------------------------------------------------------------------------------

interface Target {
  name: string;
  proc: ChildProcess;
  port: number;
}

async function start(name: 'quorumkv' | 'etcd', certs: TestCerts): Promise<Target> {
  const port = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  const url = `https://127.0.0.1:${port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tls-flood-${name}-`));
  const tlsArgs = [`--cert-file=${certs.server.cert}`, `--key-file=${certs.server.key}`];
  const args =
    name === 'etcd'
      ? [`--data-dir=${dir}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=default=${peer}`, ...tlsArgs]
      : [SERVER_BIN, `--data-dir=${dir}`, `--listen-client-urls=${url}`, `--listen-peer-urls=${peer}`, ...tlsArgs];
  const { proc } = await spawnMember(name === 'etcd' ? ETCD_BIN : process.execPath, args, name);

  return { name, proc, port };
}

function kvClient(t: Target, ca: Buffer): Client {
  const ctor = (grpcDefinitions().etcdserverpb as Record<string, unknown>).KV as new (a: string, c: grpc.ChannelCredentials, o?: object) => Client;
  // A fresh channel each time (no subchannel sharing): a new client's full connect + handshake.
  return new ctor(`127.0.0.1:${t.port}`, grpc.credentials.createSsl(ca), { 'grpc.use_local_subchannel_pool': 1 });
}

function range(kv: Client, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    kv.Range!({ key: Buffer.from('probe') }, { deadline: Date.now() + timeoutMs }, (err: Error | null) => resolve(err ? Number.POSITIVE_INFINITY : performance.now() - t0));
  });
}

function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks (USER_HZ = 100 on Linux)
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? 0) / 1024);
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};
const fmt = (ms: number) => (Number.isFinite(ms) ? `${ms.toFixed(0)} ms` : 'timeout');

/** Runs the probes while `attack` runs; returns a summary line. */
async function underProbes(t: Target, ca: Buffer, attack: () => Promise<string>): Promise<string> {
  const old = kvClient(t, ca);
  await range(old, 5000); // connected before the attack
  const cpu0 = cpuSeconds(t.proc.pid!);
  let stop = false;
  const oldLat: number[] = [];
  const newLat: number[] = [];
  const oldLoop = (async () => {
    while (!stop) {
      oldLat.push(await range(old, 5000));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const newLoop = (async () => {
    while (!stop) {
      const c = kvClient(t, ca);
      newLat.push(await range(c, 5000));
      c.close();
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const result = await attack();
  stop = true;
  await Promise.all([oldLoop, newLoop]);
  old.close();
  const cpu = cpuSeconds(t.proc.pid!) - cpu0;
  return `${result}; open-connection Range p50 ${fmt(pct(oldLat, 50))}, p99 ${fmt(pct(oldLat, 99))}, max ${fmt(Math.max(...oldLat))} (${oldLat.length}); new client connect+Range max ${fmt(Math.max(...newLat))} (${newLat.length}, ${newLat.filter((x) => !Number.isFinite(x)).length} failed); server CPU ${cpu.toFixed(1)} s; RSS ${rssMb(t.proc.pid!)} MB`;
}

function flood(t: Target, certs: TestCerts): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, ['--child', String(t.port), certs.ca, String(CONNS), String(FLOOD_MS)], { stdio: 'inherit' });
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error('flood child did not finish'))), FLOOD_MS + 30_000);
    child.on('message', (m: { done: number; failed: number }) => {
      clearTimeout(timer);
      resolve(`${m.done} handshakes in ${FLOOD_MS / 1000} s (${Math.round(m.done / (FLOOD_MS / 1000))}/s), ${m.failed} failed`);
    });
  });
}

async function idleConnections(t: Target): Promise<string> {
  const sockets: net.Socket[] = [];
  let refused = 0;
  await Promise.all(
    Array.from({ length: IDLE }, () => new Promise<void>((resolve) => {
      const s = net.connect(t.port, '127.0.0.1', () => resolve());
      s.on('error', () => (refused++, resolve()));
      s.on('close', () => undefined);
      sockets.push(s);
    })),
  );
  await new Promise((r) => setTimeout(r, FLOOD_MS));
  const open = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
  for (const s of sockets) s.destroy();
  return `${IDLE} TCP connections without a ClientHello for ${FLOOD_MS / 1000} s (${refused} refused, ${open} still open at the end)`;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') {
    const [, , , port, caFile, conns, ms] = process.argv;
    return floodChild(Number(port), fs.readFileSync(caFile!, 'utf8'), Number(conns), Number(ms));
  }
  const certs = makeTestCerts();
  const ca = fs.readFileSync(certs.ca);
  const lines: string[] = [];
  try {
    for (const name of ['etcd', 'quorumkv'] as const) {
      const t = await start(name, certs);
      try {
        const idleRss = rssMb(t.proc.pid!);
        lines.push(`${name} (idle RSS ${idleRss} MB), handshake flood, ${CONNS} loops: ${await underProbes(t, ca, () => flood(t, certs))}`);
        lines.push(`${name}, idle TLS connections: ${await underProbes(t, ca, () => idleConnections(t))}`);
      } finally {
        killGroup(t.proc);
      }
    }
  } finally {
    removeTestCerts(certs);
  }
  console.log(lines.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
