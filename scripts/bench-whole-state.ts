// Whole-state operations on one member (issue 17), not run in CI: the member is loaded with
// KEYS × VALUE_BYTES (values beyond --hot-value-bytes are spilled to disk), then each operation
// runs while a client puts one key every PROBE_EVERY_MS; for each the script prints its time, the
// member's longest event-loop stall (nodejs_eventloop_lag_max_seconds on /metrics, whose window
// restarts at every scrape: scraped right before and right after the operation) and the probes'
// worst latency. Operations:
//   idle      5 s of nothing but the probes (the machine's noise floor);
//   range     one gRPC Range over every key (etcdctl get big/ big0, keys counted);
//   gateway   the same through the JSON gateway, with --gateway-limit keys;
//   snapshot  Maintenance.Snapshot, read to the end (etcdctl snapshot save);
//   compact   every key overwritten once with a small value, then Compact(physical) at the head;
//   defrag    Maintenance.Defragment.
// Usage: npx tsc -p . && node dist/scripts/bench-whole-state.js [--keys=100000]
//        [--value-bytes=4096] [--ops=idle,range,gateway,snapshot,compact,defrag] [--gateway-limit=20000]
//        [--bin=dist/src/cli/quorumkv.js] [--flags="..."]
// --bin runs another build (e.g. the commit before) for a before/after comparison.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { arg, client, freePort, killOnExit, lagMaxMs, loadKeys, sleep, unary, type Client } from './bench_support';

const KEYS = Number(arg('keys', '100000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const OPS = arg('ops', 'idle,range,gateway,snapshot,compact,defrag').split(',');
const GATEWAY_LIMIT = Number(arg('gateway-limit', '20000'));
const BIN = path.resolve(arg('bin', path.join(__dirname, '..', 'src', 'cli', 'quorumkv.js')));
const FLAGS = arg('flags', '').split(' ').filter((f) => f !== '');
const PUTS_PER_TXN = 64;
const LOAD_CLIENTS = 8;
const PROBE_EVERY_MS = 50;
/** Bounds on each step: the benchmark gives up rather than hang. */
const STEP_TIMEOUT_MS = 10 * 60_000;

let proc: ChildProcess | undefined;
const killMember = killOnExit(() => proc);

/** Puts one key every PROBE_EVERY_MS until stopped; returns the count and the worst latency. */
function prober(kv: Client): { stop: () => Promise<{ ok: number; failed: number; maxMs: number }> } {
  let running = true;
  let ok = 0;
  let failed = 0;
  let maxMs = 0;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const t0 = performance.now();
      try {
        await unary(kv, 'Put', { key: Buffer.from(`probe/${i % 100}`), value: Buffer.from('p') }, 30_000);
        ok++;
      } catch {
        failed++;
      }
      maxMs = Math.max(maxMs, performance.now() - t0);
      await sleep(PROBE_EVERY_MS);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ok, failed, maxMs };
    },
  };
}

async function measure(port: number, kv: Client, name: string, op: () => Promise<string>): Promise<void> {
  await lagMaxMs(port); // restarts the window
  const probes = prober(kv);
  const t0 = performance.now();
  // A failed operation is a result too (reported, and the next one runs).
  const detail = await op().catch((err: unknown) => `FAILED: ${String(err).split('\n')[0]!.slice(0, 160)}`);
  const ms = performance.now() - t0;
  const lag = await lagMaxMs(port);
  const p = await probes.stop();
  console.log(
    `${name.padEnd(9)} ${(ms / 1000).toFixed(2).padStart(7)} s   loop stall max ${lag.toFixed(0).padStart(6)} ms   ` +
      `probes ok ${p.ok} failed ${p.failed} worst ${p.maxMs.toFixed(0)} ms   ${detail}`,
  );
}

/** etcdctl (the Go client, which takes any response size) reads every key; the keys in its
 *  output are counted. grpc-js's client cancels a call whose response is a few hundred MB. */
function etcdctlRange(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('etcdctl', [`--endpoints=127.0.0.1:${port}`, '--command-timeout=600s', 'get', 'big/', 'big0'], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let keys = 0;
    let tail = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => {
      const lines = (tail + d.toString('latin1')).split('\n');
      tail = lines.pop()!;
      for (const l of lines) if (l.startsWith('big/')) keys++;
    });
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(`etcdctl got ${keys} keys`) : reject(new Error(`etcdctl exited ${code}: ${err}`))));
  });
}

function gatewayRange(port: number): Promise<string> {
  const body = JSON.stringify({ key: Buffer.from('big/').toString('base64'), range_end: Buffer.from('big0').toString('base64'), limit: GATEWAY_LIMIT });
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v3/kv/range', method: 'POST', timeout: STEP_TIMEOUT_MS }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve(`HTTP ${res.statusCode}, ${(bytes / 2 ** 20).toFixed(0)} MiB of JSON`));
    });
    req.on('timeout', () => req.destroy(new Error('gateway range timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

function snapshot(maint: Client): Promise<string> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const s = (maint.Snapshot as (r: object, o: object) => grpc.ClientReadableStream<{ blob: Buffer }>).call(maint, {}, { deadline: Date.now() + STEP_TIMEOUT_MS });
    s.on('data', (m: { blob: Buffer }) => (bytes += m.blob.length));
    s.on('end', () => resolve(`${(bytes / 2 ** 20).toFixed(0)} MiB`));
    s.on('error', reject);
  });
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-whole-'));
  const port = await freePort();
  const peer = await freePort();
  try {
    proc = spawn(
      process.execPath,
      [BIN, '--name=m1', `--data-dir=${path.join(dir, 'm1')}`, `--listen-client-urls=http://127.0.0.1:${port}`, `--advertise-client-urls=http://127.0.0.1:${port}`,
        `--listen-peer-urls=http://127.0.0.1:${peer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`, `--initial-cluster=m1=http://127.0.0.1:${peer}`,
        '--quota-backend-bytes=8589934592', ...FLAGS],
      { detached: true, stdio: ['ignore', process.env.BENCH_MEMBER_STDOUT ? 'inherit' : 'ignore', 'inherit'] },
    );
    const kv = client('KV', port);
    const maint = client('Maintenance', port);
    for (let i = 0; ; i++) {
      try {
        await unary(maint, 'Status', {}, 1000);
        break;
      } catch (err) {
        if (i > 100) throw err;
        await sleep(200);
      }
    }
    const value = Buffer.alloc(VALUE_BYTES, 'v');
    let t0 = performance.now();
    await loadKeys(kv, KEYS, (i) => Buffer.concat([Buffer.from(String(i)), value.subarray(String(i).length)]), LOAD_CLIENTS, PUTS_PER_TXN);
    console.log(`loaded ${KEYS} x ${VALUE_BYTES} B in ${((performance.now() - t0) / 1000).toFixed(1)} s (${BIN})`);
    await sleep(2000); // the spill catches up
    for (const op of OPS) {
      if (op === 'idle') {
        await measure(port, kv, op, async () => {
          await sleep(5000);
          return 'nothing but the probes: the noise floor of this machine';
        });
      } else if (op === 'range') {
        await measure(port, kv, op, () => etcdctlRange(port));
      } else if (op === 'gateway') {
        await measure(port, kv, op, () => gatewayRange(port));
      } else if (op === 'snapshot') {
        await measure(port, kv, op, () => snapshot(maint));
      } else if (op === 'compact') {
        t0 = performance.now();
        await loadKeys(kv, KEYS, (i) => Buffer.from(`small${i}`), LOAD_CLIENTS, PUTS_PER_TXN);
        console.log(`overwrote ${KEYS} keys in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        const st = await unary<{ header: { revision: string } }>(maint, 'Status', {});
        await measure(port, kv, op, async () => {
          await unary(kv, 'Compact', { revision: st.header.revision, physical: true });
          return `at revision ${st.header.revision}`;
        });
      } else if (op === 'defrag') {
        await measure(port, kv, op, async () => {
          await unary(maint, 'Defragment', {});
          return '';
        });
      } else {
        throw new Error(`unknown op ${op}`);
      }
    }
    kv.close();
    maint.close();
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
