// Helpers for the WAL tests: temp dirs, deterministic entries, and a reference model of the log.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Entry, HardState } from '../../../src/raft/types';
import { EntryType } from '../../../src/raft/types';
import type { WalOptions, WalState } from '../../../src/storage/wal';

/** Small segments, no fsync: framing and recovery tests do not need the disk's durability. */
export const SMALL: WalOptions = { segmentBytes: 64 * 1024, fsync: false };
export const META = Buffer.from('member=0x8e9e05c52164694d cluster=0xcdf818194e3a8c32');

const dirs: string[] = [];

export function tmpDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `quorumkv-wal-${tag}-`));
  dirs.push(dir);
  return dir;
}

/** Removes every temp dir made by tmpDir (call from an after() hook). */
export function cleanup(): void {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/**
 * Copies a WAL directory. Only the last segment and the files in `mutable` are copied; the others
 * are hard links (recovery only reads them), because unlinking copied blocks is slow on disks
 * mounted with `discard` and the damage tests make hundreds of copies.
 */
export function copyDir(src: string, tag: string, mutable: readonly string[] = []): string {
  const dst = path.join(tmpDir(tag), 'wal');
  fs.mkdirSync(dst);
  const files = fs.readdirSync(src).sort();
  const last = segmentFiles(src).pop();
  for (const f of files) {
    if (f === last || mutable.includes(f)) fs.copyFileSync(path.join(src, f), path.join(dst, f));
    else fs.linkSync(path.join(src, f), path.join(dst, f));
  }
  return dst;
}

/** Entry data never ends in a zero byte, so zeroing any suffix of a batch changes it. */
export function ent(index: number, term: number, dataBytes = 32, type = EntryType.Normal): Entry {
  const data = Buffer.alloc(dataBytes);
  for (let i = 0; i < dataBytes; i++) data[i] = ((index * 31 + term * 7 + i) % 251) + 1;
  return { index, term, type, data };
}

export function ents(from: number, to: number, term: number, dataBytes = 32): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term, dataBytes));
  return out;
}

export function hs(term: number, commit: number, vote = 0x8e9e05c52164694dn): HardState {
  return { term, vote, commit };
}

export function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.wal')).sort();
}

/** The reference log: the same Raft rules, written the obvious way. */
export class Model {
  hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  snapshot: { index: number; term: number } | undefined = undefined;
  entries: Entry[] = [];

  save(h: HardState | undefined, es: readonly Entry[]): void {
    if (h !== undefined) this.hardState = { ...h };
    if (es.length > 0) {
      this.entries = this.entries.filter((e) => e.index < es[0]!.index);
      this.entries.push(...es);
    }
  }

  saveSnapshot(s: { index: number; term: number }): void {
    this.snapshot = { ...s };
    this.entries = this.entries.filter((e) => e.index > s.index);
  }

  lastIndex(): number {
    const last = this.entries.length > 0 ? this.entries[this.entries.length - 1]!.index : 0;
    return Math.max(last, this.snapshot?.index ?? 0);
  }

  clone(): Model {
    const m = new Model();
    m.hardState = { ...this.hardState };
    m.snapshot = this.snapshot && { ...this.snapshot };
    m.entries = this.entries.slice();
    return m;
  }
}

/** A comparable summary of a recovered state (Buffers vs Uint8Arrays do not matter). */
export function summary(s: Pick<WalState, 'hardState' | 'snapshot' | 'entries'>): unknown {
  return {
    hardState: { ...s.hardState },
    snapshot: s.snapshot,
    entries: s.entries.map((e) => `${e.index}/${e.term}/${e.type}/${Buffer.from(e.data).toString('hex')}`),
  };
}

export function flipBit(file: string, offset: number, bit: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0] ^= 1 << bit;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

export function zeroFrom(file: string, from: number, to: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(to - from), 0, to - from, from);
  } finally {
    fs.closeSync(fd);
  }
}

export function overwrite(file: string, at: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, at);
  } finally {
    fs.closeSync(fd);
  }
}
