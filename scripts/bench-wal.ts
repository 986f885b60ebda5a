// WAL benchmark: what one member's disk allows, and how much of it the WAL gets.
//
//   npx tsc -p . && node dist/scripts/bench-wal.js [--dir=/path/on/the/data/disk] [--seconds=3]
//
// Measures in one run, on the same directory (default: os.tmpdir(); point --dir at the disk the
// data dir will live on, since fdatasync cost is a property of the device):
//   1. raw: 4 KiB write + fdatasync in a loop (appending to a preallocated file, through the same
//      async fs path as the WAL): the ceiling for synced batches per second;
//   2. wal: Wal.save() with fdatasync per batch, batches of 1, 10, 100 and 1000 entries of 256 B:
//      batches/s, entries (records)/s, MB/s written, mean and p99 fdatasync latency;
//   3. cpu: encoding + CRC32-C of a 1000-entry batch in memory (no I/O), MB/s.
// Every batch size gets a fresh WAL with 64 MiB segments, so rotations are included when they happen.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Entry } from '../src/raft/types';
import { EntryType } from '../src/raft/types';
import { Wal } from '../src/storage/wal';
import { encodeSaveBatch } from '../src/storage/wal/encoder';

const BATCH_SIZES = [1, 10, 100, 1000];
const ENTRY_DATA_BYTES = 256;
const RAW_WRITE_BYTES = 4096;
const RAW_FILE_BYTES = 64 * 1024 * 1024;
const MB = 1e6;

function arg(name: string): string | undefined {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a?.slice(name.length + 3);
}

function p99(samples: number[]): number {
  if (samples.length === 0) return 0;
  const s = samples.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}

interface Row {
  name: string;
  batches: number;
  records: number;
  bytes: number;
  seconds: number;
  syncMs: number[];
}

async function rawFdatasync(dir: string, seconds: number): Promise<Row> {
  const file = path.join(dir, 'raw.bin');
  const fh = await fsp.open(file, 'w+');
  const buf = Buffer.alloc(RAW_WRITE_BYTES, 0xab);
  const syncMs: number[] = [];
  let n = 0;
  try {
    await fh.truncate(RAW_FILE_BYTES);
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      await fh.write(buf, 0, buf.length, (n * RAW_WRITE_BYTES) % RAW_FILE_BYTES);
      const s = performance.now();
      await fh.datasync();
      syncMs.push(performance.now() - s);
      n++;
    }
    return { name: 'raw 4 KiB write+fdatasync', batches: n, records: n, bytes: n * RAW_WRITE_BYTES, seconds: (performance.now() - t0) / 1000, syncMs };
  } finally {
    await fh.close();
    await fsp.unlink(file);
  }
}

function makeEntries(from: number, count: number): Entry[] {
  const data = Buffer.alloc(ENTRY_DATA_BYTES, 0x5a);
  const out: Entry[] = [];
  for (let i = 0; i < count; i++) out.push({ index: from + i, term: 1, type: EntryType.Normal, data });
  return out;
}

async function walThroughput(dir: string, batchEntries: number, seconds: number): Promise<Row> {
  const walDir = path.join(dir, `wal-${batchEntries}`);
  const wal = await Wal.create(walDir, Buffer.from('bench'), { fsync: true });
  const syncMs: number[] = [];
  let next = 1;
  let batches = 0;
  try {
    const bytes0 = wal.stats.bytes;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      // Entries are built outside the timed save, as Raft hands them over ready-made.
      const es = makeEntries(next, batchEntries);
      await wal.save({ term: 1, vote: 1n, commit: next - 1 }, es);
      syncMs.push(wal.stats.lastFsyncMs);
      next += batchEntries;
      batches++;
    }
    const elapsed = (performance.now() - t0) / 1000;
    return { name: `wal ${batchEntries} x ${ENTRY_DATA_BYTES} B`, batches, records: batches * batchEntries, bytes: wal.stats.bytes - bytes0, seconds: elapsed, syncMs };
  } finally {
    await wal.close();
    fs.rmSync(walDir, { recursive: true, force: true });
  }
}

function encodeThroughput(): number {
  const es = makeEntries(1, 1000);
  const rounds = 300;
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) bytes += encodeSaveBatch(i, { term: 1, vote: 1n, commit: 0 }, es).length;
  return bytes / MB / ((performance.now() - t0) / 1000);
}

function printTable(rows: Row[]): void {
  const header = ['workload', 'batches/s', 'records/s', 'MB/s', 'fsync mean ms', 'fsync p99 ms'];
  const lines = rows.map((r) => [
    r.name,
    (r.batches / r.seconds).toFixed(0),
    (r.records / r.seconds).toFixed(0),
    (r.bytes / MB / r.seconds).toFixed(2),
    (r.syncMs.reduce((a, b) => a + b, 0) / Math.max(1, r.syncMs.length)).toFixed(3),
    p99(r.syncMs).toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds') ?? 3);
  const parent = arg('dir') ?? os.tmpdir();
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, 'quorumkv-bench-wal-'));
  console.log(`bench-wal: dir=${dir} seconds=${seconds} node=${process.version} cpus=${os.cpus().length}`);
  try {
    const rows = [await rawFdatasync(dir, seconds)];
    for (const n of BATCH_SIZES) rows.push(await walThroughput(dir, n, seconds));
    printTable(rows);
    console.log(`cpu: encode + CRC32-C of a 1000-entry batch: ${encodeThroughput().toFixed(0)} MB/s (in memory, no I/O)`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
