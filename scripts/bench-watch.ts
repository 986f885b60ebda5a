// Watch benchmark against a real quorumkv process (started here, killed at the end):
//   1. memory per idle watcher: the server's VmRSS (/proc/<pid>/status) before and after creating
//      10,000 idle watchers on distinct keys;
//   2. fan-out: events delivered per second to 1,000 and 10,000 watchers of one key, counted by
//      the client (raw grpc-js streams, WATCHERS_PER_STREAM watchers per stream).
//
//   npx tsc -p . && node dist/scripts/bench-watch.js [--puts=200] [--endpoint=host:port --pid=N]
//
// With --endpoint (and --pid for the memory figure) it measures an already running server, e.g.
// real etcd for comparison.
import fs from 'node:fs';
import { startServer, type ServerProcess } from '../test/integration/harness';
import { RawWatchStream, kvClient, unary } from '../test/compat/grpc_client';

const WATCHERS_PER_STREAM = 1000;
const IDLE_WATCHERS = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function arg(name: string): string | undefined {
  const p = process.argv.find((a) => a.startsWith(`--${name}=`));
  return p?.slice(name.length + 3);
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function until(cond: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

/** Opens ceil(n / WATCHERS_PER_STREAM) streams with n watchers; keyOf(i) chooses each key. */
async function openWatchers(endpoint: string, n: number, keyOf: (i: number) => string): Promise<RawWatchStream[]> {
  const streams: RawWatchStream[] = [];
  let created = 0;
  for (let i = 0; i < n; i += WATCHERS_PER_STREAM) {
    const s = new RawWatchStream(endpoint);
    s.keep = false;
    s.onResponse = (r) => void (r.created && created++);
    streams.push(s);
    for (let j = i; j < Math.min(n, i + WATCHERS_PER_STREAM); j++) s.create({ key: Buffer.from(keyOf(j)) });
  }
  await until(() => created === n, `${n} watchers created (${created})`);
  return streams;
}

async function idleMemory(endpoint: string, pid: number | undefined): Promise<void> {
  if (pid === undefined) return console.log('memory per idle watcher: skipped (no --pid)');
  await sleep(500);
  const before = rssKb(pid);
  const streams = await openWatchers(endpoint, IDLE_WATCHERS, (i) => `idle/${i}`);
  await sleep(1000);
  const after = rssKb(pid);
  const per = ((after - before) * 1024) / IDLE_WATCHERS;
  console.log(`memory: server VmRSS ${before} kB -> ${after} kB with ${IDLE_WATCHERS} idle watchers on distinct keys = ${per.toFixed(0)} bytes/watcher (incl. ${streams.length} streams)`);
  for (const s of streams) s.closeClient();
}

async function fanOut(endpoint: string, watchers: number, puts: number): Promise<void> {
  const streams = await openWatchers(endpoint, watchers, () => 'fan');
  let delivered = 0;
  for (const s of streams) s.onResponse = (r) => (delivered += r.events.length);
  const kv = kvClient(endpoint);
  const value = Buffer.alloc(64, 0x78);
  const t0 = process.hrtime.bigint();
  const CONCURRENCY = 16;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < puts) {
        next++;
        await unary(kv, 'Put', { key: Buffer.from('fan'), value });
      }
    }),
  );
  const tPuts = Number(process.hrtime.bigint() - t0) / 1e9;
  await until(() => delivered >= watchers * puts, `${watchers * puts} events (${delivered})`);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(
    `fan-out: ${watchers} watchers x ${puts} puts = ${delivered} events in ${secs.toFixed(2)} s ` +
      `= ${Math.round(delivered / secs).toLocaleString('en')} events/s (puts done in ${tPuts.toFixed(2)} s)`,
  );
  kv.close();
  for (const s of streams) s.closeClient();
  await sleep(300);
}

async function main(): Promise<void> {
  const puts = Number(arg('puts') ?? 200);
  let srv: ServerProcess | undefined;
  let endpoint = arg('endpoint');
  let pid = arg('pid') ? Number(arg('pid')) : undefined;
  if (!endpoint) {
    srv = await startServer();
    endpoint = srv.endpoint;
    pid = srv.proc.pid;
  }
  try {
    await idleMemory(endpoint, pid);
    await fanOut(endpoint, 1000, puts);
    await fanOut(endpoint, 10_000, puts);
  } finally {
    await srv?.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
