// Concurrent large ranges on one member (issue 17), not run in CI: the member is loaded once with
// KEYS × VALUE_BYTES (values past --hot-value-bytes spill to disk), then, for each build given
// (--bins, alternating, ROUNDS times, each restarted on the same data dir), GRPC concurrent gRPC
// Ranges over every key and GATEWAY concurrent JSON-gateway ones run while a client puts one key
// every PROBE_EVERY_MS. Printed per run: the wall time of the ranges, the member's peak RSS
// (VmHWM, reset through /proc/<pid>/clear_refs just before) and its RSS before, the longest
// event-loop stall (nodejs_eventloop_lag_max_seconds, scraped every 500 ms), and the probes' p99
// and worst latency. The range clients count the bytes and drop them (raw HTTP/2 and HTTP/1.1),
// so the machine's cores go to the member.
// Usage: npx tsc -p . && node dist/scripts/bench-range.js [--keys=50000] [--value-bytes=4096]
//        [--grpc=4] [--gateway=2] [--rounds=1] [--bins=before.js,after.js] [--flags="..."]
// BENCH_MEMBER_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the members.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { protoRoot } from '../src/proto';
import { arg, client, freePort, killOnExit, lagMaxMs, loadKeys, sleep, statusKb, unary, type Client } from './bench_support';

const KEYS = Number(arg('keys', '50000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const GRPC = Number(arg('grpc', '4'));
const GATEWAY = Number(arg('gateway', '2'));
const ROUNDS = Number(arg('rounds', '1'));
const BINS = arg('bins', path.join(__dirname, '..', 'src', 'cli', 'quorumkv.js')).split(',').map((b) => path.resolve(b));
const FLAGS = arg('flags', '').split(' ').filter((f) => f !== '');
const PUTS_PER_TXN = 64;
const LOAD_CLIENTS = 8;
const PROBE_EVERY_MS = 20;
const IDLE_MS = 5000;
/** Bounds on each step: the benchmark gives up rather than hang. */
const STEP_TIMEOUT_MS = 5 * 60_000;

let proc: ChildProcess | undefined;
const killMember = killOnExit(() => proc);

/** Puts one key every PROBE_EVERY_MS until stopped; returns the latencies. */
function prober(kv: Client): { stop: () => Promise<number[]> } {
  let running = true;
  const ms: number[] = [];
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const t0 = performance.now();
      try {
        await unary(kv, 'Put', { key: Buffer.from(`probe/${i % 100}`), value: Buffer.from('p') }, 30_000);
      } catch {
        ms.push(30_000);
        continue;
      }
      ms.push(performance.now() - t0);
      await sleep(PROBE_EVERY_MS);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return ms;
    },
  };
}

const RANGE_ALL = { key: Buffer.from('big/'), range_end: Buffer.from('big0') };

/** One gRPC Range over every key on its own HTTP/2 connection; resolves to the bytes received
 *  (the message is not decoded: only its gRPC status is checked). */
function grpcRange(port: number): Promise<number> {
  const reqType = protoRoot().lookupType('etcdserverpb.RangeRequest');
  const body = Buffer.from(reqType.encode(reqType.fromObject(RANGE_ALL)).finish());
  const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
  framed.writeUInt32BE(body.length, 1);
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const timer = setTimeout(() => session.destroy(new Error('grpc range timed out')), STEP_TIMEOUT_MS);
    const stream = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers' });
    let bytes = 0;
    let status = '';
    stream.on('data', (d: Buffer) => (bytes += d.length));
    stream.on('trailers', (t) => (status = String(t['grpc-status'] ?? '')));
    stream.on('response', (h) => (status = String(h['grpc-status'] ?? status)));
    stream.on('error', reject);
    stream.on('end', () => {
      clearTimeout(timer);
      session.close();
      if (status !== '0') reject(new Error(`grpc range: status ${status}`));
      else resolve(bytes);
    });
    stream.end(framed);
  });
}

function gatewayRange(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v3/kv/range', method: 'POST', timeout: STEP_TIMEOUT_MS }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`gateway range: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('gateway range timed out')));
    req.on('error', reject);
    req.end(JSON.stringify({ key: RANGE_ALL.key.toString('base64'), range_end: RANGE_ALL.range_end.toString('base64') }));
  });
}

async function startMember(bin: string, dir: string, port: number, peer: number): Promise<Client> {
  proc = spawn(
    process.execPath,
    [...(process.env.BENCH_MEMBER_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''), bin, '--name=m1', `--data-dir=${dir}`, `--listen-client-urls=http://127.0.0.1:${port}`, `--advertise-client-urls=http://127.0.0.1:${port}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`, `--initial-cluster=m1=http://127.0.0.1:${peer}`,
      '--quota-backend-bytes=8589934592', ...FLAGS],
    { detached: true, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const kv = client('KV', port);
  for (let i = 0; ; i++) {
    try {
      await unary(kv, 'Range', { key: Buffer.from('x'), serializable: false }, 1000);
      return kv;
    } catch (err) {
      if (i > 600) throw err;
      await sleep(200);
    }
  }
}

async function stopMember(): Promise<void> {
  const p = proc;
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  process.kill(-p.pid!, 'SIGTERM');
  await Promise.race([exited, sleep(20_000)]);
  killMember();
}

/** IDLE_MS of probes alone: the machine's noise floor (longest stall, probe p99). */
async function idle(port: number, kv: Client): Promise<string> {
  await lagMaxMs(port);
  const probe = prober(kv);
  await sleep(IDLE_MS);
  const probes = (await probe.stop()).sort((a, b) => a - b);
  const lag = await lagMaxMs(port);
  return `idle ${IDLE_MS / 1000} s: stall max ${lag.toFixed(0)} ms, probe p99 ${(probes[Math.floor(probes.length * 0.99)] ?? NaN).toFixed(0)} ms`;
}

async function run(bin: string, port: number, kv: Client): Promise<void> {
  const pid = proc!.pid!;
  await sleep(2000); // the spill catches up after a start
  const floor = await idle(port, kv);
  const rssBeforeMb = statusKb(pid, 'VmRSS') / 1024;
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
  await lagMaxMs(port); // starts the window
  let lagMs = 0;
  let scrapesFailed = 0;
  let scraping = true;
  const seen = (ms: number) => (Number.isNaN(ms) ? scrapesFailed++ : (lagMs = Math.max(lagMs, ms)));
  const scraper = (async () => {
    while (scraping) {
      await sleep(500);
      seen(await lagMaxMs(port));
    }
  })();
  const probe = prober(kv);
  const t0 = performance.now();
  const got = await Promise.allSettled([...Array.from({ length: GRPC }, () => grpcRange(port)), ...Array.from({ length: GATEWAY }, () => gatewayRange(port))]);
  const wallS = (performance.now() - t0) / 1000;
  const probes = (await probe.stop()).sort((a, b) => a - b);
  scraping = false;
  await scraper;
  seen(await lagMaxMs(port));
  const peakMb = statusKb(pid, 'VmHWM') / 1024;
  const failed = got.filter((g) => g.status === 'rejected').map((g) => String((g as PromiseRejectedResult).reason));
  const mb = got.filter((g) => g.status === 'fulfilled').map((g) => ((g as PromiseFulfilledResult<number>).value / 1e6).toFixed(0));
  const p99 = probes[Math.min(probes.length - 1, Math.floor(probes.length * 0.99))] ?? NaN;
  console.log(
    `${path.relative(process.cwd(), bin)}: ${GRPC} grpc + ${GATEWAY} gateway ranges in ${wallS.toFixed(1)} s (MB each: ${mb.join(' ')})` +
      `${failed.length ? `, FAILED: ${failed.join('; ')}` : ''}; RSS before ${rssBeforeMb.toFixed(0)} MB, peak ${peakMb.toFixed(0)} MB; ` +
      `loop stall max ${lagMs.toFixed(0)} ms${scrapesFailed ? ` (${scrapesFailed} /metrics scrapes failed)` : ''}; probes ${probes.length}, p99 ${p99.toFixed(0)} ms, max ${(probes[probes.length - 1] ?? NaN).toFixed(0)} ms (${floor})`,
  );
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-range-'));
  const port = await freePort();
  const peer = await freePort();
  try {
    let kv = await startMember(BINS[BINS.length - 1]!, path.join(dir, 'm1'), port, peer);
    const t0 = performance.now();
    const value = Buffer.alloc(VALUE_BYTES, 'v');
    await loadKeys(kv, KEYS, (i) => Buffer.concat([Buffer.from(String(i)), value.subarray(String(i).length)]), LOAD_CLIENTS, PUTS_PER_TXN);
    console.log(`loaded ${KEYS} x ${VALUE_BYTES} B in ${((performance.now() - t0) / 1000).toFixed(1)} s; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    kv.close();
    await stopMember();
    for (let round = 0; round < ROUNDS; round++) {
      for (const bin of BINS) {
        kv = await startMember(bin, path.join(dir, 'm1'), port, peer);
        await run(bin, port, kv);
        kv.close();
        await stopMember();
      }
    }
    console.log(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  } finally {
    killMember();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
