// Snapshot save, phase by phase, in one process (issue 17), not run in CI: a LevelDB backend is
// filled with KEYS × VALUE_BYTES, overwritten once (2 × KEYS revisions, as bench-scale's load and
// overwrite leave it), then the conversion to etcd's bbolt file is timed in separate passes, each
// over the same backend snapshot:
//   read      the backend snapshot's records alone (LevelDB's reads);
//   convert   read + conversion to bbolt pages into a sink that drops them (the CPU of the writer);
//   save      what Maintenance.Snapshot does, end to end, into a file (the etcdctl side's write
//             included, without the network): see saveSnapshot in api/maintenance_service.ts.
// Each pass prints its time, its longest gap between two event-loop turns (a timer every 5 ms) and
// the process's peak RSS.
//
// Usage: npx tsc -p . && node dist/scripts/bench-snapshot-save.js [--keys=50000] [--value-bytes=4096]
//        [--passes=read,convert,save] [--dir=/tmp/...] (the backend and the files go under --dir,
//        removed at the end)
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { Backend } from '../src/storage/backend/backend';
import { SpillFile } from '../src/storage/spill_file';
import { writeEtcdDb } from '../src/storage/etcddb/etcd_db';
import { openSnapshotFileStream } from '../src/api/maintenance_service';
import { LOOP_CLOCK } from '../src/util/slice_clock';
import { arg } from './bench_support';
import { assert } from '../src/util/assert';

/** Bytes per chunk and the time between yields to the loop, as the Snapshot RPC sends them. */
const CHUNK_BYTES = 256 * 1024;
const SLICE_MS_MAX = 10;

/**
 * The save as `etcdctl snapshot save` does it with the stream (written in order to `file`.part,
 * fsynced, renamed into place), from the member's own file stream (openSnapshotFileStream),
 * without the network. Returns its size.
 */
async function saveSnapshotToFile(backend: Backend, spoolDir: string, file: string): Promise<number> {
  const stream = await openSnapshotFileStream(backend, spoolDir, CHUNK_BYTES, () => false);
  assert(stream !== undefined, 'a save nobody cancels completes');
  const part = `${file}.part`;
  let bytes = 0;
  try {
    const fh = await fs.promises.open(part, 'w', 0o600);
    try {
      let sliceStart = LOOP_CLOCK.now();
      for await (const chunk of stream.chunks) {
        if (LOOP_CLOCK.now() - sliceStart >= SLICE_MS_MAX) {
          await LOOP_CLOCK.yieldToLoop();
          sliceStart = LOOP_CLOCK.now();
        }
        for (let off = 0; off < chunk.length; ) off += (await fh.write(chunk, off, chunk.length - off, bytes + off)).bytesWritten;
        bytes += chunk.length;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  } finally {
    await stream.close();
  }
  assert(bytes === stream.fileBytes, 'snapshot file: the size announced is the size written');
  await fs.promises.rename(part, file);
  return bytes;
}

const KEYS = Number(arg('keys', '50000'));
const VALUE_BYTES = Number(arg('value-bytes', '4096'));
const PASSES = arg('passes', 'read,convert,save').split(',').filter((p) => p !== '');
/** Loads the in-memory store (values spilled beyond 8 MiB, as a member's) before the passes, so
 *  that the heap a garbage collection walks is a member's size, not a bare process's. */
const LOAD_STORE = arg('load-store', '1') === '1';
const DIR = fs.mkdtempSync(arg('dir', path.join(os.tmpdir(), 'bench-snapshot-save-')));

/** Garbage collections seen: count, total and longest pause, by kind (minor, major). */
const gc = { minor: { n: 0, ms: 0, max: 0 }, major: { n: 0, ms: 0, max: 0 } };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind === 1 ? gc.minor : gc.major;
    kind.n++;
    kind.ms += e.duration;
    kind.max = Math.max(kind.max, e.duration);
  }
}).observe({ entryTypes: ['gc'] });
const gcText = () => `GC: ${gc.minor.n} minor ${gc.minor.ms.toFixed(0)} ms (max ${gc.minor.max.toFixed(0)}), ${gc.major.n} other ${gc.major.ms.toFixed(0)} ms (max ${gc.major.max.toFixed(0)})`;
const gcReset = () => {
  for (const k of [gc.minor, gc.major]) k.n = k.ms = k.max = 0;
};

let cpuStart = process.cpuUsage();
/** CPU seconds (user + system, every thread: LevelDB's and libuv's included) since withStall began. */
const cpuSecs = () => {
  const u = process.cpuUsage(cpuStart);
  return ((u.user + u.system) / 1e6).toFixed(2);
};

/** Longest gap between turns of a 5 ms timer while `fn` runs. */
async function withStall(fn: () => Promise<string>): Promise<{ result: string; ms: number; stallMs: number }> {
  gcReset();
  cpuStart = process.cpuUsage();
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 5);
  const t0 = performance.now();
  try {
    const result = await fn();
    return { result: `${result}   CPU ${cpuSecs()} s`, ms: performance.now() - t0, stallMs: worst };
  } finally {
    clearInterval(timer);
  }
}

async function fill(backend: Backend): Promise<void> {
  const value = crypto.randomBytes(VALUE_BYTES).toString('latin1');
  let rev = 1;
  let index = 0;
  const PER_COMMIT = 500;
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < KEYS; i += PER_COMMIT) {
      for (let j = i; j < Math.min(KEYS, i + PER_COMMIT); j++) {
        rev++;
        const key = `key/${String(j).padStart(8, '0')}`;
        // Each value differs (its first bytes are the revision): no two records alike.
        const v = String(rev).padStart(12, '0') + value.slice(12);
        backend.stageEvents([{ type: 0, kv: { key, value: v, createRevision: round === 0 ? rev : rev - KEYS, modRevision: rev, version: round + 1, lease: 0n } }] as never, rev);
      }
      await backend.commit(++index, 2);
    }
  }
  await backend.flush();
}

async function main(): Promise<void> {
  // The backend's group commit timer is unref'd: this keeps the process alive meanwhile.
  const keepAlive = setInterval(() => undefined, 1000);
  const backend = await Backend.open(path.join(DIR, 'db'));
  try {
    const tf = performance.now();
    await fill(backend);
    console.log(`filled ${KEYS} keys × ${VALUE_BYTES} B twice in ${((performance.now() - tf) / 1000).toFixed(1)} s; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    let held: unknown;
    if (LOAD_STORE) {
      const tl = performance.now();
      held = await backend.load({ spill: SpillFile.open(path.join(DIR, 'spill')), hotValueBytes: 8 * 2 ** 20 });
      console.log(`store loaded in ${((performance.now() - tl) / 1000).toFixed(1)} s; heap used ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB`);
    }
    for (const pass of PASSES) {
      const out = path.join(DIR, 'snap.db');
      const r = await withStall(async (): Promise<string> => {
        if (pass === 'read') {
          const snap = await backend.openSnapshotRecords();
          let bytes = 0;
          try {
            for await (const batch of snap.records) for (const [k, v] of batch) bytes += k.length + v.length;
          } finally {
            await snap.close();
          }
          return `${(bytes / 2 ** 20).toFixed(0)} MiB of records`;
        }
        if (pass === 'convert') {
          const snap = await backend.openSnapshotRecords();
          try {
            const w = await writeEtcdDb(snap.records, snap.meta, async () => undefined);
            return `${(w.bytes / 2 ** 20).toFixed(0)} MiB bbolt`;
          } finally {
            await snap.records.return(undefined);
            await snap.close();
          }
        }
        if (pass === 'save') {
          const bytes = await saveSnapshotToFile(backend, DIR, out);
          return `${(bytes / 2 ** 20).toFixed(0)} MiB file`;
        }
        throw new Error(`unknown pass ${pass}`);
      });
      fs.rmSync(out, { force: true });
      const rss = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
      console.log(`${pass.padEnd(8)} ${(r.ms / 1000).toFixed(2).padStart(7)} s   longest turn gap ${r.stallMs.toFixed(0).padStart(5)} ms   peak RSS ${rss.toFixed(0)} MiB   ${r.result}   ${gcText()}   load ${os.loadavg()[0]!.toFixed(1)}`);
    }
    assert(!LOAD_STORE || held !== undefined, 'the store stays loaded through the passes');
  } finally {
    clearInterval(keepAlive);
    await backend.close();
    fs.rmSync(DIR, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  fs.rmSync(DIR, { recursive: true, force: true });
  process.exit(1);
});
