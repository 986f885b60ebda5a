// Memory of a member's backend load (issue 17: a restarting member peaked at ~2x its steady RSS).
//
//   node dist/scripts/bench-load-mem.js build --dir=/tmp/x --keys=50000 --value-bytes=4096 --revisions=112000
//   node --expose-gc dist/scripts/bench-load-mem.js load --dir=/tmp/x [--hot-value-bytes=8388608]
//   node --expose-gc dist/scripts/bench-load-mem.js install --dir=/tmp/x [--hot-value-bytes=8388608]
//
// `build` writes a backend of that shape through Backend.stageEvents/commit (random values, keys
// overwritten round-robin). `load` opens it and runs Backend.load() with a spill file in a temp
// dir, as bootstrap does, sampling process.memoryUsage() every 20 ms; it prints the peaks (RSS,
// heap used, heap total, external + array buffers), the state after load, after a full GC, and the
// time. `install` does what a leader and a follower do with a Raft snapshot, in one process: the
// backend's snapshot stream (Backend.openSnapshot) is written into a new LevelDB
// (restoreSnapshotInto) and that is loaded; the peaks cover both sides. Not in CI.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import { Backend } from '../src/storage/backend/backend';
import { SpillFile } from '../src/storage/spill_file';
import { restoreSnapshotInto } from '../src/storage/backend/snapshot';
import { makeKv } from '../src/mvcc/key_index';
import { EventType, type Event } from '../src/mvcc';

function arg(name: string, dflt?: string): string {
  const a = process.argv.find((s) => s.startsWith(`--${name}=`));
  if (a !== undefined) return a.slice(name.length + 3);
  if (dflt === undefined) throw new Error(`--${name}= is required`);
  return dflt;
}

const MiB = 1024 * 1024;
const mib = (n: number) => (n / MiB).toFixed(0);

/** RssAnon and RssFile (file-backed pages mapped: LevelDB maps its table files) in MiB. */
function rssSplit(): { anon: number; file: number } {
  const st = fs.readFileSync('/proc/self/status', 'utf8');
  const kib = (f: string) => Number(new RegExp(`${f}:\\s+(\\d+) kB`).exec(st)?.[1] ?? 0);
  return { anon: Math.round(kib('RssAnon') / 1024), file: Math.round(kib('RssFile') / 1024) };
}

/** Resident MiB of mapped files, by directory (from /proc/self/smaps). */
function mappedFiles(): Record<string, number> {
  const out: Record<string, number> = {};
  let file: string | undefined;
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) file = head[1].startsWith('/') ? path.dirname(head[1]) : undefined;
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && file !== undefined) out[file] = (out[file] ?? 0) + Number(rss[1]) / 1024;
  }
  for (const k of Object.keys(out)) out[k] = Math.round(out[k]);
  return out;
}

function vmHwmKiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function build(): Promise<void> {
  const dir = arg('dir');
  const keys = Number(arg('keys'));
  const valueBytes = Number(arg('value-bytes'));
  const revisions = Number(arg('revisions'));
  fs.mkdirSync(dir, { recursive: true });
  const b = await Backend.open(dir);
  const version = new Map<number, number>();
  const created = new Map<number, number>();
  const t0 = Date.now();
  for (let rev = 2; rev < revisions + 2; rev++) {
    const k = (rev - 2) % keys;
    const ver = (version.get(k) ?? 0) + 1;
    version.set(k, ver);
    if (!created.has(k)) created.set(k, rev);
    const kv = makeKv(`/bench/key-${String(k).padStart(8, '0')}`, created.get(k)!, rev, ver, crypto.randomBytes(valueBytes).toString('latin1'), 0n);
    const ev: Event = { type: EventType.PUT, kv, prevKv: undefined };
    b.stageEvents([ev], rev);
    const p = b.commit(rev, 2);
    // The group timer is unref'd: flush now and then so the process waits for the writes.
    if (rev % 1000 === 0) {
      await b.flush();
      await p;
    }
  }
  await b.close();
  console.log(`built ${revisions} revisions of ${keys} keys x ${valueBytes} B in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

async function load(): Promise<void> {
  const dir = arg('dir');
  const hot = Number(arg('hot-value-bytes', String(8 * MiB)));
  const spillDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-loadmem-spill-'));
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const base = process.memoryUsage();
  const peak = { anon: 0, file: 0, rss: 0, heapUsed: 0, heapTotal: 0, external: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    const split = rssSplit();
    peak.anon = Math.max(peak.anon, split.anon);
    peak.file = Math.max(peak.file, split.file);
    peak.rss = Math.max(peak.rss, m.rss);
    peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
    peak.heapTotal = Math.max(peak.heapTotal, m.heapTotal);
    peak.external = Math.max(peak.external, m.external + m.arrayBuffers);
  };
  const timer = setInterval(sample, 20);
  const t0 = performance.now();
  let b = await Backend.open(dir);
  let incoming: string | undefined;
  if (process.argv[2] === 'install') {
    incoming = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-loadmem-incoming-'));
    const snap = await b.openSnapshot();
    await restoreSnapshotInto(path.join(incoming, 'db'), snap.chunks);
    await b.close();
    b = await Backend.open(path.join(incoming, 'db'));
  }
  const spill = SpillFile.open(spillDir);
  const loaded = await b.load({ spill, hotValueBytes: hot });
  const ms = performance.now() - t0;
  clearInterval(timer);
  sample();
  const after = process.memoryUsage();
  gc?.();
  const settled = process.memoryUsage();
  const hs = v8.getHeapStatistics();
  console.log(JSON.stringify({
    loadSeconds: +(ms / 1000).toFixed(2),
    revision: loaded.store.currentRevision,
    keys: loaded.store.keyCount,
    baseRssMiB: mib(base.rss),
    peakRssMiB: mib(peak.rss),
    vmHwmMiB: (vmHwmKiB() / 1024).toFixed(0),
    peakRssAnonMiB: peak.anon,
    peakRssFileMiB: peak.file,
    afterGcRss: rssSplit(),
    peakHeapUsedMiB: mib(peak.heapUsed),
    peakHeapTotalMiB: mib(peak.heapTotal),
    peakExternalMiB: mib(peak.external),
    afterLoad: { rss: mib(after.rss), heapUsed: mib(after.heapUsed), heapTotal: mib(after.heapTotal), external: mib(after.external + after.arrayBuffers) },
    afterGc: { rss: mib(settled.rss), heapUsed: mib(settled.heapUsed), heapTotal: mib(settled.heapTotal), external: mib(settled.external + settled.arrayBuffers) },
    spillFileMiB: mib(spill.fileBytes),
    peakMallocedMiB: mib(hs.peak_malloced_memory),
  }));
  if (process.argv.includes('--smaps')) console.log(JSON.stringify(mappedFiles()));
  loaded.store.closeSpill();
  await b.close();
  fs.rmSync(spillDir, { recursive: true, force: true });
  if (incoming !== undefined) fs.rmSync(incoming, { recursive: true, force: true });
}

const mode = process.argv[2];
if (mode === 'build') void build().catch((e: unknown) => { console.error(e); process.exit(1); });
else if (mode === 'load' || mode === 'install') void load().catch((e: unknown) => { console.error(e); process.exit(1); });
else {
  console.error('usage: bench-load-mem.js build|load --dir=... (see the file header)');
  process.exit(2);
}
