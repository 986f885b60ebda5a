// A snapshot install on the receiving side alone (issue 17, "catch-up by snapshot"), not run in CI:
// the leader's stream is made once into a file (a backend of KEYS keys × VALUE_BYTES random values,
// each overwritten OVERWRITES times, as bench-scale's load and overwrite make it), then installed
// ROUNDS times into a fresh member directory through Snapshotter.install, the server and Raft faked
// at their seams as in test/server/snapshot_install.test.ts. The stream is read from the file in
// CHUNK_BYTES pieces, as fast as the install takes them: what is measured is the receiver (parse,
// LevelDB's writes, the load into a new store, the spill), not the sender or the network.
//
// Per round it prints the wall time of the install, the process CPU it used, the install's own log
// line (input/write/load wait, batches), the longest event-loop stall seen by a 5 ms timer, and
// the process's RSS high-water mark so far. Compare builds by running each build's copy of this
// script alternately (`--stream=` the same file): the fixture is made by the first run that finds
// none.
//
// Usage: npx tsc -p . && node dist/scripts/bench-install.js [--keys=20000] [--value-bytes=4096]
//        [--overwrites=1] [--rounds=3] [--chunk-bytes=1048576] [--hot-value-bytes=8388608]
//        [--stream=/tmp/install-stream.bin] [--dir=/tmp/install-bench] [--reload]
// --reload: after each install, also time the next start's load of the installed backend.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MvccStore } from '../src/mvcc';
import { Backend } from '../src/storage/backend/backend';
import { SpillFile } from '../src/storage/spill_file';
import { arg } from './bench_support';
import { msgSnap, seamedSnapshotter } from '../test/server/snapshot_seams';

const KEYS = Number(arg('keys', '20000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const OVERWRITES = Number(arg('overwrites', '1'));
const ROUNDS = Number(arg('rounds', '3'));
const CHUNK_BYTES = Number(arg('chunk-bytes', String(1024 * 1024)));
const HOT_VALUE_BYTES = Number(arg('hot-value-bytes', String(8 * 1024 * 1024)));
const STREAM = arg('stream', '/tmp/install-stream.bin');
const DIR = arg('dir', '/tmp/install-bench');
const RELOAD = process.argv.includes('--reload');
const PUTS_PER_COMMIT = 100;

async function makeStream(): Promise<{ index: number; chunkLengths: number[] }> {
  const src = path.join(DIR, 'source');
  fs.rmSync(src, { recursive: true, force: true });
  const backend = await Backend.open(src);
  const store = new MvccStore();
  const pool = crypto.randomBytes(1 << 20);
  let index = 0;
  let puts = 0;
  for (let round = 0; round <= OVERWRITES; round++) {
    for (let i = 0; i < KEYS; i++) {
      const off = crypto.randomInt(0, pool.length - VALUE_BYTES);
      const txn = store.write();
      txn.put(Buffer.from(`key-${String(i).padStart(8, '0')}`), pool.subarray(off, off + VALUE_BYTES), 0n);
      const r = txn.end();
      backend.stageEvents(r.events, r.revision);
      if (++puts % PUTS_PER_COMMIT === 0) await backend.commit(++index, 2);
    }
  }
  await backend.commit(++index, 2, true);
  const { chunks } = await backend.openSnapshot();
  const fd = fs.openSync(STREAM, 'w');
  let bytes = 0;
  const chunkLengths: number[] = [];
  for await (const c of chunks) {
    fs.writeSync(fd, c);
    bytes += c.length;
    chunkLengths.push(c.length);
  }
  fs.closeSync(fd);
  await backend.close();
  store.closeSpill();
  fs.rmSync(src, { recursive: true, force: true });
  fs.writeFileSync(`${STREAM}.json`, JSON.stringify({ index, bytes, chunkLengths }));
  console.log(`made ${STREAM}: ${(bytes / 1e6).toFixed(1)} MB, index ${index}`);
  return { index, chunkLengths };
}

/** The stream as the leader's transport sends it: each chunk of the leader's stream (one LevelDB
 *  read's records) cut into pieces of at most CHUNK_BYTES (transport/snapshot.ts chunksOf). */
async function* readStream(chunkLengths: readonly number[]): AsyncGenerator<Buffer> {
  const fh = await fs.promises.open(STREAM, 'r');
  try {
    for (const length of chunkLengths) {
      for (let off = 0; off < length; off += CHUNK_BYTES) {
        const n = Math.min(CHUNK_BYTES, length - off);
        const buf = Buffer.allocUnsafe(n);
        const { bytesRead } = await fh.read(buf, 0, n, null);
        if (bytesRead !== n) throw new Error(`${STREAM}: shorter than its chunk lengths`);
        yield buf;
      }
    }
  } finally {
    await fh.close();
  }
}

/** CPU ms (user + system) of each thread of this process by its name: the main thread is the
 *  process's name; LevelDB's background thread and libuv's pool have their own names. */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  const tick = 1000 / 100; // USER_HZ
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = (Number(f[11]) + Number(f[12])) * tick;
      out.set(`${name}#${tid}`, ms);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

function threadCpuDelta(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const byName: Record<string, number> = {};
  for (const [k, ms] of b) {
    const name = k.slice(0, k.lastIndexOf('#')) + (k.endsWith(`#${process.pid}`) ? '(main)' : '');
    byName[name] = (byName[name] ?? 0) + ms - (a.get(k) ?? 0);
  }
  return byName;
}

async function installOnce(index: number, chunkLengths: readonly number[], round: number): Promise<void> {
  const memberDir = path.join(DIR, 'member');
  fs.rmSync(memberDir, { recursive: true, force: true });
  fs.mkdirSync(memberDir, { recursive: true });
  const store = new MvccStore();
  const follower = seamedSnapshotter({
    memberDir,
    backend: await Backend.open(path.join(memberDir, 'backend')),
    store,
    committedIndex: 0,
    appliedIndex: 0,
    hotValueBytes: HOT_VALUE_BYTES < 0 ? undefined : HOT_VALUE_BYTES,
  });
  const { snapshotter, lines } = follower;
  let stallMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last - 5);
    last = now;
  }, 5);
  const threads0 = threadCpu();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await snapshotter.install(msgSnap(index, 2), readStream(chunkLengths));
  const tookMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const threads1 = threadCpu();
  clearInterval(timer);
  const written = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => String(l.msg).startsWith('snapshot data written'));
  const keys = store.keyCount;
  await follower.backend().close();
  store.closeSpill();
  // --reload: the next start's load of the installed backend (its tables are the install's).
  let reload: { took_ms: number; cpu_ms: number } | undefined;
  if (RELOAD) {
    const r0 = process.cpuUsage();
    const t1 = performance.now();
    const reopened = await Backend.open(path.join(memberDir, 'backend'));
    const spill = HOT_VALUE_BYTES < 0 ? undefined : { spill: SpillFile.open(path.join(memberDir, 'spill'), undefined), hotValueBytes: HOT_VALUE_BYTES };
    const loaded = await reopened.load(spill);
    const rc = process.cpuUsage(r0);
    reload = { took_ms: Math.round(performance.now() - t1), cpu_ms: Math.round((rc.user + rc.system) / 1000) };
    if (loaded.store.keyCount !== keys) throw new Error(`reload: ${loaded.store.keyCount} keys, installed ${keys}`);
    await reopened.close();
    loaded.store.closeSpill();
  }
  const rss = /VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(
    JSON.stringify({
      round,
      took_ms: Math.round(tookMs),
      cpu_user_ms: Math.round(cpu.user / 1000),
      cpu_sys_ms: Math.round(cpu.system / 1000),
      keys,
      written_took_ms: written?.took_ms,
      input_ms: written?.input_ms,
      write_ms: written?.write_ms,
      load_ms: written?.load_ms,
      batches: written?.batches,
      stall_ms: Math.round(stallMs),
      thread_cpu_ms: threadCpuDelta(threads0, threads1),
      vmhwm_mib: rss ? Math.round(Number(rss[1]) / 1024) : undefined,
      reload,
      load,
    }),
  );
  fs.rmSync(memberDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  // The backend's commit groups wait on unref'd timers: keep the process up meanwhile.
  const keepAlive = setInterval(() => undefined, 1000);
  fs.mkdirSync(DIR, { recursive: true });
  const made = fs.existsSync(`${STREAM}.json`) ? (JSON.parse(fs.readFileSync(`${STREAM}.json`, 'utf8')) as { index: number; chunkLengths: number[] }) : await makeStream();
  for (let round = 1; round <= ROUNDS; round++) await installOnce(made.index, made.chunkLengths, round);
  clearInterval(keepAlive);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
