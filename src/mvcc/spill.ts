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
// A SpillRef packs, exactly within a double's 53-bit integer range:
//   ((position / 8) * 2^20 + length) * 2 + generation
// so values are written 8-byte aligned, are shorter than SPILL_VALUE_BYTES_MAX, and a file stays
// below SPILL_FILE_BYTES_MAX. The generation (0 or 1) names one of two files: a rewrite copies the
// live values of one into the other to reclaim the space of values that compaction freed.

import { Bytes, SpillRef } from './types';

/** Values this long or longer stay in the heap (the length must fit in 20 bits). */
export const SPILL_VALUE_BYTES_MAX = 1 << 20;
/** Position limit of one spill file (positions / 8 must fit in 32 bits). */
export const SPILL_FILE_BYTES_MAX = 2 ** 35;
const LEN_FACTOR = 2 ** 20;

export function spillRef(position: number, length: number, generation: 0 | 1): SpillRef {
  return ((position / 8) * LEN_FACTOR + length) * 2 + generation;
}

export function spillRefGeneration(ref: SpillRef): 0 | 1 {
  return (ref % 2) as 0 | 1;
}

export function spillRefLength(ref: SpillRef): number {
  return ((ref - (ref % 2)) / 2) % LEN_FACTOR;
}

export function spillRefPosition(ref: SpillRef): number {
  const t = (ref - (ref % 2)) / 2;
  return ((t - (t % LEN_FACTOR)) / LEN_FACTOR) * 8;
}

/** What the store needs from a spill file. */
export interface ValueSpill {
  /** Appends values to the current file; one ref per value. Undefined = cannot spill now (the
   *  implementation failed to write, e.g. a full disk, and backs off): the values stay in the heap. */
  append(values: readonly Bytes[]): SpillRef[] | undefined;
  /** Bytes in the files (garbage included), and bytes of values still referenced. */
  readonly fileBytes: number;
  readonly liveBytes: number;
  /** False while appends would fail (backing off after a failed write). */
  readonly writable: boolean;
  /** The bytes of a value appended earlier. */
  read(ref: SpillRef): Bytes;
  /** The bytes of several values (neighbours in the file are read together). */
  readMany(refs: readonly SpillRef[]): Bytes[];
  /** The version holding `ref` is gone (compacted): its bytes are garbage. */
  release(ref: SpillRef): void;
  /** True when enough of the file is garbage that a rewrite is worth its copying. */
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

/** The value bytes of a stored version, without reading them. */
export function storedValueLength(value: Bytes | SpillRef): number {
  return typeof value === 'string' ? value.length : spillRefLength(value);
}
