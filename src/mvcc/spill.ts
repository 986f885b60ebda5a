// Values out of the JavaScript heap. With a spill attached, the store keeps only the most recently
// written values (up to a byte budget) as heap strings; older ones are appended to a spill file and
// the version keeps a SpillRef instead, read back with a positioned read when a range, an event or
// a hash needs the bytes. etcd keeps its values in bbolt's memory-mapped file for the same reason:
// the heap holds the index, the page cache holds the values.
//
// The spill file is a cache, not durable state: the backend (LevelDB) and the WAL hold every
// value, the file is recreated empty at every start, and nothing is ever fsynced. The store stays
// free of I/O: it talks to the file through the ValueSpill interface (storage/spill_file.ts).
//
// A SpillRef is (position / 8) * 2 + generation: records are 8-byte aligned, and the generation
// (0 or 1) names one of two files (a rewrite copies the live values of one into the other to
// reclaim the space of values that compaction freed). Below 8 GiB of file it is a V8 small integer,
// so a spilled version costs no extra heap object; it stays exact far beyond. A record is the
// value's length (u32, little-endian) and its bytes, so the length is not in the ref: a version
// compacted away is released with releaseMany, which reads the lengths.

import { Bytes, SpillRef } from './types';

/** Position limit of one spill file (refs stay exact integers below it). */
export const SPILL_FILE_BYTES_MAX = 2 ** 52;

export function spillRef(position: number, generation: 0 | 1): SpillRef {
  return (position / 8) * 2 + generation;
}

export function spillRefGeneration(ref: SpillRef): 0 | 1 {
  return (ref % 2) as 0 | 1;
}

export function spillRefPosition(ref: SpillRef): number {
  return ((ref - (ref % 2)) / 2) * 8;
}

/** What the store needs from a spill file. */
export interface ValueSpill {
  /** Appends values to the current file; one ref per value. Undefined = cannot spill now (the
   *  implementation failed to write, e.g. a full disk, and backs off): the values stay in the heap. */
  append(values: readonly Bytes[]): SpillRef[] | undefined;
  /** append() of values given as bytes (a backend record's value: no string is made for it). */
  appendBytes(values: readonly Uint8Array[]): SpillRef[] | undefined;
  /** Bytes in the files (garbage included), and bytes of values still referenced. */
  readonly fileBytes: number;
  readonly liveBytes: number;
  /** False while appends would fail (backing off after a failed write). */
  readonly writable: boolean;
  /** The bytes of a value appended earlier. */
  read(ref: SpillRef): Bytes;
  /** The bytes of several values (neighbours in the file are read together). */
  readMany(refs: readonly SpillRef[]): Bytes[];
  /** readMany without a string per value: fn(i, buf, off, len) gets refs[i]'s bytes at
   *  buf[off, off + len), valid only during the call (buf is reused). */
  forEachValue(refs: readonly SpillRef[], fn: (i: number, buf: Buffer, off: number, len: number) => void): void;
  /** The version holding `ref` (a value of `length` bytes) is gone: its bytes are garbage. */
  release(ref: SpillRef, length: number): void;
  /** release() for versions whose lengths the caller does not know (read from the file);
   *  returns the value bytes released. */
  releaseMany(refs: readonly SpillRef[]): number;
  /** True when enough of the file is garbage that a rewrite is worth its copying (never while a
   *  rewrite runs). */
  readonly rewriteDue: boolean;
  /** Starts a rewrite: appends go to the other generation's (emptied) file from now on. */
  beginRewrite(): void;
  /** Generation being rewritten (refs in it must be copied), or undefined when none is. */
  readonly rewriting: 0 | 1 | undefined;
  /** Every live ref of the old generation has been copied: its file is emptied. */
  finishRewrite(): void;
  /** Drops everything (the store's state was replaced wholesale). */
  reset(): void;
  close(): void;
}
