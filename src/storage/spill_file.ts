// The spill file behind the store's out-of-heap values (mvcc/spill.ts): two files, one per
// generation, in <data-dir>/member/spill. A record is the value's length (u32 LE) and its bytes,
// 8-byte aligned; records are appended with one positioned write per batch and read back with one
// positioned read (two for a value longer than READ_GUESS_BYTES, one per 256 KB for a group of
// neighbouring records); both are synchronous, because the
// store is synchronous and a read of a recently written file is served from the page cache (a few
// microseconds), like etcd's reads from bbolt's mmap. Nothing is fsynced: the files are a cache
// of values the backend and the WAL hold durably, and they are recreated empty at every start.
//
// Space: a value released by compaction stays in its file as garbage; once a file's garbage
// exceeds both its live bytes and REWRITE_GARBAGE_BYTES_MIN, the store copies the live values into
// the other generation (in bounded steps) and this file is truncated.
//
// Freeing space never blocks the event loop: a truncation or removal of a file of gigabytes keeps
// the kernel busy for hundreds of milliseconds, so an emptied generation gets a fresh file and the
// old one's blocks are freed by the thread pool when its descriptor closes there; a closed spill's
// directory is renamed away and removed in the background (util/remove_later.ts).
//
// Failures: a failed write (a full disk, an I/O error) leaves the values in the heap; appends are
// refused for WRITE_RETRY_MS, then tried again. The failure is logged once per retry period.
import fs from 'node:fs';
import path from 'node:path';
import { removeInBackground } from '../util/remove_later';
import {
  SPILL_FILE_BYTES_MAX,
  spillRef,
  spillRefGeneration,
  spillRefPosition,
  type Bytes,
  type SpillRef,
  type ValueSpill,
} from '../mvcc';

/** A file is rewritten once its garbage exceeds its live bytes and this much. */
export const REWRITE_GARBAGE_BYTES_MIN = 64 * 1024 * 1024;
/** After a failed write, appends are refused for this long. */
export const WRITE_RETRY_MS = 10_000;
/** One read covers records starting within this span of the file. */
const READ_SPAN_BYTES_MAX = 256 * 1024;
/** Bytes read past the last record's start: its header and, for most values, all of it. */
const READ_GUESS_BYTES = 512;
/** Appends stop this far below the position limit of a SpillRef. */
const FILE_HEADROOM_BYTES = 64 * 1024 * 1024;

/** A record: the value's length (u32 LE), its bytes, padding to 8 bytes. */
const HEADER_BYTES = 4;

function recordBytes(valueLength: number): number {
  return Math.ceil((HEADER_BYTES + valueLength) / 8) * 8;
}

export interface SpillLog {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Where a spill without a logger (tools, tests) reports a failure: never dropped silently. */
const STDERR_LOG: SpillLog = {
  warn: (msg, fields) => process.stderr.write(`value spill file: ${msg} ${JSON.stringify(fields ?? {})}\n`),
};

export interface SpillFileOptions {
  /** Tests: rewrite at a smaller garbage size than REWRITE_GARBAGE_BYTES_MIN. */
  rewriteGarbageBytesMin?: number;
}

export class SpillFile implements ValueSpill {
  private readonly fds: [number, number];
  /** Bytes written to each generation's file (its end). */
  private readonly sizes = [0, 0];
  /** Bytes (aligned) of each file's values not yet released. */
  private readonly live = [0, 0];
  private gen: 0 | 1 = 0;
  private rewritingGen: 0 | 1 | undefined;
  private retryAtMs = 0;
  /** Rewrites finished since open (metrics, tests). */
  rewrites = 0;
  private closed = false;
  private readBuf = Buffer.allocUnsafe(64 * 1024);
  private writeBuf = Buffer.allocUnsafe(1024 * 1024 + 64 * 1024);

  private readonly rewriteGarbageBytesMin: number;

  private constructor(
    readonly dir: string,
    private readonly log: SpillLog | undefined,
    opts: SpillFileOptions,
  ) {
    this.rewriteGarbageBytesMin = opts.rewriteGarbageBytesMin ?? REWRITE_GARBAGE_BYTES_MIN;
    // A previous run's files (as large as its values): renamed away now, removed in the background.
    void removeInBackground(dir, log ?? STDERR_LOG);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.fds = [this.openGen(0), this.openGen(1)];
  }

  /** Creates (or empties) the spill files in `dir`. */
  static open(dir: string, log?: SpillLog, opts: SpillFileOptions = {}): SpillFile {
    return new SpillFile(dir, log, opts);
  }

  private openGen(gen: 0 | 1): number {
    return fs.openSync(path.join(this.dir, `values.${gen}`), 'w+', 0o600);
  }

  get writable(): boolean {
    return !this.closed && Date.now() >= this.retryAtMs && this.sizes[this.gen]! < SPILL_FILE_BYTES_MAX - FILE_HEADROOM_BYTES;
  }

  /** Bytes in both files, garbage included. */
  get fileBytes(): number {
    return this.sizes[0]! + this.sizes[1]!;
  }

  /** Bytes of values still referenced. */
  get liveBytes(): number {
    return this.live[0]! + this.live[1]!;
  }

  append(values: readonly Bytes[]): SpillRef[] | undefined {
    return this.appendValues(values);
  }

  appendBytes(values: readonly Uint8Array[]): SpillRef[] | undefined {
    return this.appendValues(values);
  }

  private appendValues(values: readonly (Bytes | Uint8Array)[]): SpillRef[] | undefined {
    if (!this.writable) return undefined;
    let total = 0;
    for (const v of values) total += recordBytes(v.length);
    if (total > this.writeBuf.length) this.writeBuf = Buffer.allocUnsafe(total);
    const buf = this.writeBuf;
    const gen = this.gen;
    const start = this.sizes[gen]!;
    const refs: SpillRef[] = new Array<SpillRef>(values.length);
    let off = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      buf.writeUInt32LE(v.length, off);
      if (typeof v === 'string') buf.write(v, off + HEADER_BYTES, 'latin1');
      else buf.set(v, off + HEADER_BYTES);
      refs[i] = spillRef(start + off, gen);
      off += recordBytes(v.length);
    }
    try {
      let done = 0;
      while (done < total) done += fs.writeSync(this.fds[gen], buf, done, total - done, start + done);
    } catch (err) {
      this.retryAtMs = Date.now() + WRITE_RETRY_MS;
      this.log?.warn('cannot write the value spill file: values stay in memory for now', {
        file: path.join(this.dir, `values.${gen}`),
        error: (err as Error).message,
        'retry-in-ms': WRITE_RETRY_MS,
      });
      return undefined;
    }
    this.sizes[gen] = start + total;
    this.live[gen]! += total;
    return refs;
  }

  read(ref: SpillRef): Bytes {
    const gen = spillRefGeneration(ref);
    const pos = spillRefPosition(ref);
    const got = this.readUpTo(gen, pos, READ_GUESS_BYTES);
    if (got < HEADER_BYTES) throw new Error(`value spill file: record at ${pos} is past the end of the file`);
    const len = this.readBuf.readUInt32LE(0);
    if (HEADER_BYTES + len <= got) return this.readBuf.toString('latin1', HEADER_BYTES, HEADER_BYTES + len);
    return this.readExact(gen, pos + HEADER_BYTES, len).toString('latin1');
  }

  readMany(refs: readonly SpillRef[]): Bytes[] {
    const out: Bytes[] = new Array<Bytes>(refs.length);
    this.forEachRecord(refs, false, (i, buf, off, len) => (out[i] = buf.toString('latin1', off, off + len)));
    return out;
  }

  forEachValue(refs: readonly SpillRef[], fn: (i: number, buf: Buffer, off: number, len: number) => void): void {
    this.forEachRecord(refs, false, fn);
  }

  release(ref: SpillRef, length: number): void {
    this.live[spillRefGeneration(ref)]! -= recordBytes(length);
  }

  releaseMany(refs: readonly SpillRef[]): number {
    let bytes = 0;
    this.forEachRecord(refs, true, (i, _buf, _off, len) => {
      this.live[spillRefGeneration(refs[i]!)]! -= recordBytes(len);
      bytes += len;
    });
    return bytes;
  }

  /**
   * Calls fn(i, buf, off, len) for each refs[i] with its value at buf[off, off + len) (with
   * `headersOnly`, only len is meaningful). In file order, records within READ_SPAN_BYTES_MAX come
   * from one read: a range over keys written together reads its values in a few large reads
   * instead of one system call per value. A single record is read with a first guess of
   * READ_GUESS_BYTES, and again if it is longer.
   */
  private forEachRecord(refs: readonly SpillRef[], headersOnly: boolean, fn: (i: number, buf: Buffer, off: number, len: number) => void): void {
    const n = refs.length;
    if (n === 0) return;
    const order = Array.from({ length: n }, (_, i) => i);
    // Versions written together are usually asked for together and in order: sort only if not.
    let sorted = true;
    for (let i = 1; i < n && sorted; i++) sorted = refs[i]! > refs[i - 1]! && spillRefGeneration(refs[i]!) === spillRefGeneration(refs[i - 1]!);
    if (!sorted) order.sort((a, b) => spillRefGeneration(refs[a]!) - spillRefGeneration(refs[b]!) || refs[a]! - refs[b]!);
    let i = 0;
    while (i < n) {
      const first = refs[order[i]!]!;
      const gen = spillRefGeneration(first);
      const start = spillRefPosition(first);
      let last = start;
      let j = i + 1;
      for (; j < n; j++) {
        const r = refs[order[j]!]!;
        const pos = spillRefPosition(r);
        if (spillRefGeneration(r) !== gen || pos - start > READ_SPAN_BYTES_MAX) break;
        last = pos;
      }
      const got = this.readUpTo(gen, start, last - start + (headersOnly ? HEADER_BYTES : READ_GUESS_BYTES));
      const buf = this.readBuf;
      for (let k = i; k < j; k++) {
        const idx = order[k]!;
        const off = spillRefPosition(refs[idx]!) - start;
        if (off + HEADER_BYTES > got) throw new Error(`value spill file: record at ${start + off} is past the end of the file`);
        const len = buf.readUInt32LE(off);
        if (headersOnly || off + HEADER_BYTES + len <= got) fn(idx, buf, off + HEADER_BYTES, len);
        else fn(idx, this.readExact(gen, start + off + HEADER_BYTES, len), 0, len);
      }
      i = j;
    }
  }

  /** Reads up to `len` bytes at `pos` into readBuf (fewer at the end of the file). */
  private readUpTo(gen: 0 | 1, pos: number, len: number): number {
    // A closed descriptor's number may already belong to another file: never read through it.
    if (this.closed) throw new Error('value spill file: read after close');
    if (len > this.readBuf.length) this.readBuf = Buffer.allocUnsafe(Math.max(len, this.readBuf.length * 2));
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fds[gen], this.readBuf, done, len - done, pos + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** Exactly `len` bytes at `pos`, in a buffer of their own (readBuf may be in use). */
  private readExact(gen: 0 | 1, pos: number, len: number): Buffer {
    const buf = Buffer.allocUnsafe(len);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fds[gen], buf, done, len - done, pos + done);
      if (n === 0) throw new Error(`value spill file: read past its end (position ${pos}, length ${len})`);
      done += n;
    }
    return buf;
  }

  get rewriteDue(): boolean {
    const g = this.gen;
    const garbage = this.sizes[g]! - this.live[g]!;
    return this.rewritingGen === undefined && garbage > this.rewriteGarbageBytesMin && garbage > this.live[g]!;
  }

  get rewriting(): 0 | 1 | undefined {
    return this.rewritingGen;
  }

  beginRewrite(): void {
    this.rewritingGen = this.gen;
    this.gen = this.gen === 0 ? 1 : 0;
    this.empty(this.gen);
  }

  finishRewrite(): void {
    if (this.rewritingGen === undefined) return;
    this.empty(this.rewritingGen);
    this.rewritingGen = undefined;
    this.rewrites++;
  }

  reset(): void {
    this.rewritingGen = undefined;
    this.gen = 0;
    this.empty(0);
    this.empty(1);
  }

  private empty(gen: 0 | 1): void {
    this.sizes[gen] = 0;
    this.live[gen] = 0;
    if (this.closed) return;
    // A fresh file takes the generation's name; the old one's blocks are freed when its descriptor
    // closes, in the thread pool (an ftruncate here took ~0.5 s per 1.6 GB on the event loop).
    const file = path.join(this.dir, `values.${gen}`);
    const fresh = `${file}.fresh`;
    let fd: number | undefined;
    try {
      fd = fs.openSync(fresh, 'w+', 0o600);
      fs.renameSync(fresh, file);
    } catch (err) {
      if (fd !== undefined) this.closeInBackground(fd); // opened, not renamed: not kept
      this.log?.warn('cannot replace the value spill file; truncating it in place', { file, error: (err as Error).message });
      try {
        fs.ftruncateSync(this.fds[gen], 0);
      } catch (err2) {
        // The space is not returned, but positions restart at 0: the file stays usable.
        this.log?.warn('cannot truncate the value spill file', { file, error: (err2 as Error).message });
      }
      return;
    }
    this.closeInBackground(this.fds[gen]);
    this.fds[gen] = fd;
  }

  private closeInBackground(fd: number): void {
    fs.close(fd, (err) => {
      if (err) (this.log ?? STDERR_LOG).warn('cannot close a value spill file', { dir: this.dir, error: err.message });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds) this.closeInBackground(fd);
    void removeInBackground(this.dir, this.log ?? STDERR_LOG);
  }
}
