// What the one-member whole-state benchmarks (bench-range.ts, bench-whole-state.ts) share: argv
// flags, ports, the member process killed on every exit path, grpc-js clients of the etcd
// services, the member's loop-stall and memory readings, and the bulk load of KEYS × VALUE_BYTES.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../src/proto';

/** `--name=value` from argv, else `def`. */
export function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

/** Kills the process group of `current()` (a member started `detached`) when this script exits,
 *  is interrupted or terminated; returns that kill, for the script's own use. */
export function killOnExit(current: () => ChildProcess | undefined): () => void {
  const kill = (): void => {
    const p = current();
    if (p?.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch (err) {
      console.error(`kill ${p.pid}: ${(err as Error).message}`);
    }
  };
  process.on('exit', kill);
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  return kill;
}

export type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

/** A grpc-js client of etcdserverpb.`service` on 127.0.0.1:`port`, taking answers of any size. */
export function client(service: string, port: number): Client {
  const ctor = (grpcDefinitions().etcdserverpb as Record<string, unknown>)[service] as new (a: string, c: grpc.ChannelCredentials, o?: object) => Client;
  return new ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
}

export function unary<T>(c: Client, method: string, req: object, deadlineMs = 10 * 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as (r: object, o: object, cb: (e: Error | null, v: T) => void) => void).call(c, req, { deadline: Date.now() + deadlineMs }, (e, v) => (e ? reject(e) : resolve(v)));
  });
}

/** The member's longest event-loop stall since the last scrape (nodejs_eventloop_lag_max_seconds
 *  on /metrics; each scrape restarts its window), in ms; NaN if it could not be read. */
export async function lagMaxMs(port: number, timeoutMs = 60_000): Promise<number> {
  return (await scrapeMetrics(port, timeoutMs)).lagMaxMs;
}

/** The disk histograms' sums (seconds) and counts that bench-scale reports per operation (etcd
 *  exports the same names). */
export const DISK_HISTOGRAMS = ['etcd_disk_wal_fsync_duration_seconds', 'etcd_disk_backend_commit_duration_seconds'] as const;

export interface MetricsScrape {
  /** nodejs_eventloop_lag_max_seconds in ms (NaN: absent, e.g. etcd, or unreadable). */
  lagMaxMs: number;
  /** `<histogram>_sum` and `<histogram>_count` of DISK_HISTOGRAMS (absent when unreadable). */
  values: Map<string, number>;
}

/** One scrape of /metrics (restarts the member's loop-lag window). */
export function scrapeMetrics(port: number, timeoutMs = 60_000): Promise<MetricsScrape> {
  return new Promise((resolve) => {
    const failed = { lagMaxMs: NaN, values: new Map<string, number>() };
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        const r = /^nodejs_eventloop_lag_max_seconds\s+(\S+)/m.exec(body);
        const values = new Map<string, number>();
        for (const h of DISK_HISTOGRAMS) {
          for (const suffix of ['_sum', '_count']) {
            const v = new RegExp(`^${h}${suffix}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'm').exec(body);
            if (v) values.set(h + suffix, Number(v[1]));
          }
        }
        resolve({ lagMaxMs: r ? Number(r[1]) * 1000 : NaN, values });
      });
      res.on('error', () => resolve(failed));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(failed));
  });
}

/** A process's CPU time so far (user + system, all its threads) in ms, from /proc/<pid>/stat
 *  (utime and stime, the 12th and 13th fields after the command's closing parenthesis, in ticks
 *  of USER_HZ: 100 on Linux on every architecture node runs on). Throws if the process is gone. */
export function cpuMsOfPid(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), NaN if absent. */
export function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export const keyOf = (i: number) => Buffer.from(`big/${String(i).padStart(8, '0')}`);

/** Puts keys big/00000000 .. big/<keys-1> with `value(i)`: `clients` concurrent Txns of
 *  `putsPerTxn` puts each. */
export async function loadKeys(kv: Client, keys: number, value: (i: number) => Buffer, clients = 8, putsPerTxn = 64): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < keys) {
        const from = next;
        next = Math.min(keys, next + putsPerTxn);
        const success = [];
        for (let i = from; i < next; i++) success.push({ request_put: { key: keyOf(i), value: value(i) } });
        await unary(kv, 'Txn', { success });
      }
    }),
  );
}

/** The flags of one member of a new loopback cluster (etcd's names: etcd and quorumkv take the
 *  same), before any system's own. */
export function memberFlags(m: { name: string; dataDir: string; clientPort: number; peerPort: number }, initialCluster: string, token: string): string[] {
  const url = `http://127.0.0.1:${m.clientPort}`;
  const peer = `http://127.0.0.1:${m.peerPort}`;
  return [
    `--name=${m.name}`,
    `--data-dir=${m.dataDir}`,
    `--listen-client-urls=${url}`,
    `--advertise-client-urls=${url}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${initialCluster}`,
    '--initial-cluster-state=new',
    `--initial-cluster-token=${token}`,
  ];
}
