// quorumkv's own load generator over the etcd v3 gRPC API (usable with no Go toolchain), in the
// spirit of etcd's tools/benchmark: C connections shared by N clients, each issuing requests back
// to back; prints requests/s and latency percentiles per workload.
//
//   npm run bench                                   # starts a local quorumkv, runs put + range
//   npm run bench -- --endpoints=127.0.0.1:2379 --workloads=put --clients=100 --conns=10 --total=20000
//   --warmup=N: requests per workload run first, unmeasured (default 10000; 0 for a cold start)
//
// Point --endpoints at a real etcd to compare with the same client and load.
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { serviceDefinition } from '../src/proto';

interface Opts {
  endpoints: string | undefined;
  workloads: string[];
  clients: number;
  conns: number;
  total: number;
  keySize: number;
  valSize: number;
  keySpace: number;
  /** Requests per workload run first and not measured (0: none). */
  warmup: number;
}

function parseArgs(argv: string[]): Opts {
  const m = new Map<string, string>();
  for (const a of argv) {
    const r = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!r) throw new Error(`bad argument ${a} (use --name=value)`);
    m.set(r[1]!, r[2]!);
  }
  const num = (k: string, d: number, min = 1) => {
    const v = m.has(k) ? Number(m.get(k)) : d;
    if (!Number.isInteger(v) || v < min) throw new Error(`--${k} must be an integer >= ${min}`);
    return v;
  };
  return {
    endpoints: m.get('endpoints'),
    workloads: (m.get('workloads') ?? 'put,range-l,range-s').split(','),
    clients: num('clients', 100),
    conns: num('conns', 10),
    total: num('total', 20_000),
    keySize: num('key-size', 8),
    valSize: num('val-size', 256),
    keySpace: num('key-space', 10_000),
    // A fresh member compiles its hot paths during its first requests (V8's JIT): by default each
    // workload runs once unmeasured first, as bench-vs-etcd.sh does for both systems.
    warmup: num('warmup', 10_000, 0),
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function startLocal(): Promise<{ endpoint: string; proc: ChildProcess }> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-bench-'));
  const bin = path.resolve(__dirname, '..', 'src', 'cli', 'quorumkv.js');
  const proc = spawn(process.execPath, [bin, `--listen-client-urls=http://127.0.0.1:${port}`, `--listen-peer-urls=http://127.0.0.1:${await freePort()}`, `--data-dir=${dir}`, '--log-level=warn'], {
    stdio: 'ignore',
    detached: true,
  });
  process.on('exit', () => {
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  const endpoint = `127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), res(true)));
      s.on('error', () => res(false));
    });
    if (ok) return { endpoint, proc };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('local quorumkv did not start');
}

function keyOf(i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b.writeUIntBE(i % 2 ** 48, Math.max(0, size - 6), Math.min(6, size));
  return b;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function run(o: Opts, endpoint: string, workload: string, quiet = false): Promise<void> {
  const KV = grpc.makeGenericClientConstructor(serviceDefinition('etcdserverpb.KV'), 'KV');
  const conns = Array.from({ length: o.conns }, (_, i) => new KV(endpoint, grpc.credentials.createInsecure(), { 'grpc.channel_id': i } as grpc.ChannelOptions));
  const value = Buffer.alloc(o.valSize, 'x');
  if (workload.startsWith('range')) {
    // Preload the key read by the range workloads.
    await new Promise<void>((res, rej) => (conns[0] as unknown as Record<string, (...args: unknown[]) => unknown>).Put({ key: keyOf(0, o.keySize), value }, (e: Error | null) => (e ? rej(e) : res())));
  }
  const lat = new Float64Array(o.total);
  let next = 0;
  let errors = 0;
  let firstError = '';
  const t0 = process.hrtime.bigint();
  const client = async (c: number) => {
    const conn = conns[c % conns.length] as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (;;) {
      const i = next++;
      if (i >= o.total) return;
      const s = process.hrtime.bigint();
      await new Promise<void>((res) => {
        const done = (e: Error | null) => {
          if (e) {
            errors++;
            if (!firstError) firstError = e.message;
          }
          lat[i] = Number(process.hrtime.bigint() - s) / 1e6;
          res();
        };
        if (workload === 'put') conn.Put({ key: keyOf(i % o.keySpace, o.keySize), value }, done);
        else if (workload === 'range-l') conn.Range({ key: keyOf(0, o.keySize) }, done);
        else if (workload === 'range-s') conn.Range({ key: keyOf(0, o.keySize), serializable: true }, done);
        else throw new Error(`unknown workload ${workload} (put, range-l, range-s)`);
      });
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort();
  for (const c of conns) c.close();
  if (quiet) return;
  const f = (x: number) => x.toFixed(2).padStart(8);
  console.log(
    `${workload.padEnd(8)} ${String(o.total).padStart(7)} reqs ${(o.total / secs).toFixed(0).padStart(7)} req/s  p50 ${f(percentile(lat, 50))} ms  p99 ${f(percentile(lat, 99))} ms  p99.9 ${f(percentile(lat, 99.9))} ms  errors ${errors}`,
  );
  if (firstError) console.log(`         first error: ${firstError}`);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  let endpoint = o.endpoints;
  let local: ChildProcess | undefined;
  if (!endpoint) {
    const l = await startLocal();
    endpoint = l.endpoint;
    local = l.proc;
  }
  console.log(`endpoint ${endpoint}  clients ${o.clients}  conns ${o.conns}  key ${o.keySize} B  value ${o.valSize} B  warm-up ${o.warmup} requests per workload`);
  if (o.warmup > 0) for (const w of o.workloads) await run({ ...o, total: o.warmup }, endpoint, w, true);
  for (const w of o.workloads) await run(o, endpoint, w);
  if (local) process.kill(-local.pid!, 'SIGKILL');
}

main().catch((err) => {
  console.error(String(err));
  process.exit(1);
});
