// Recovery: reads every segment in order, verifies every batch, and rebuilds the log (replay.ts).
//
// Classifying a bad batch (see format.ts for why this is sound):
//  - in the start batch of any segment: corruption (a segment gets its name only after its start
//    batch was synced, so that batch cannot be torn);
//  - in any segment but the last: corruption (a later segment exists only because this one was
//    complete and synced);
//  - in the last segment: a torn tail if no valid batch with a higher seq follows it, else corruption.
// Nothing is modified here: Wal.open repairs the torn tail only after the whole log checked out.

import fs from 'node:fs/promises';
import path from 'node:path';
import { checkBatch, endOfNonZero, isZero, mayBeBatchHeader, readEntry, readHardState, readMetadata, readSnapshot, recordEnd, recordType } from './decoder';
import { assert } from '../../util/assert';
import { WalCorruptionError, WalError } from './errors';
import { BATCH_BYTES_MAX, BATCH_HEADER_BYTES, RECORD_HEADER_BYTES, RecordType, SEGMENT_BYTES_MAX, SEGMENT_SUFFIX, TMP_SUFFIX, parseSegmentName } from './format';
import { ReplayLog } from './replay';
import type { SegmentInfo, TornTail, WalState } from './types';

export interface Recovered {
  state: WalState;
  segments: SegmentInfo[];
  /** Seq of the last valid batch. */
  lastBatchSeq: number;
  /** The log's last index as the writer counts it (max of last entry and snapshot index). */
  lastIndex: number;
  /** End of the valid data in the last segment: the next batch goes here. */
  tailOffset: number;
  /** End of the last segment's start batch. */
  tailStartBatchEnd: number;
  /** Size of the last segment file as found. */
  tailFileBytes: number;
  /** Leftover segments of an interrupted rotation: never named, never part of the log. */
  tmpFiles: string[];
}

/** Segment files sorted by seq; refuses misnamed files and gaps in the sequence. */
export async function listSegments(dir: string): Promise<{ segments: SegmentInfo[]; tmpFiles: string[] }> {
  const segments: SegmentInfo[] = [];
  const tmpFiles: string[] = [];
  for (const file of await fs.readdir(dir)) {
    if (file.endsWith(SEGMENT_SUFFIX + TMP_SUFFIX)) tmpFiles.push(file);
    if (!file.endsWith(SEGMENT_SUFFIX)) continue;
    const parsed = parseSegmentName(file);
    if (parsed === undefined) throw new WalCorruptionError(file, 0, 'misnamed segment file (expected %016x-%016x.wal)');
    segments.push({ ...parsed, file });
  }
  segments.sort((a, b) => a.seq - b.seq);
  for (let k = 1; k < segments.length; k++) {
    const prev = segments[k - 1]!;
    if (segments[k]!.seq !== prev.seq + 1) {
      throw new WalCorruptionError(segments[k]!.file, 0, `segment sequence gap (segment ${prev.seq + 1} after ${prev.file} is missing)`);
    }
  }
  return { segments, tmpFiles };
}

/** Bytes of a segment held in memory at once while it is scanned (more only for a batch larger than
 *  this). Reads are this size, each one thread-pool round trip. */
export const SEGMENT_WINDOW_BYTES = 8 * 1024 * 1024;

export async function recover(dir: string, windowBytes = SEGMENT_WINDOW_BYTES): Promise<Recovered> {
  assert(Number.isSafeInteger(windowBytes) && windowBytes >= BATCH_HEADER_BYTES, 'wal: a recovery window holds at least a batch header');
  const { segments, tmpFiles } = await listSegments(dir);
  if (segments.length === 0) throw new WalError(`wal: no segments in ${dir}`);
  const log = new ReplayLog(segments[0]!.firstIndex - 1);
  let seq: number | undefined;
  let tail: SegmentScan | undefined;
  /** Every segment is read through the same window of memory: a fresh buffer's first touch of each
   *  page costs far more than the read itself (64 MiB into fresh memory: ~0.25-0.5 s of page faults
   *  here, ~15 ms into memory touched before). */
  let memory: ArrayBuffer | undefined;
  for (let k = 0; k < segments.length; k++) {
    const seg = segments[k]!;
    if (k > 0 && seg.firstIndex !== log.lastIndex() + 1) {
      throw new WalCorruptionError(seg.file, 0, `segment name says its first index is ${seg.firstIndex} but the log before it ends at ${log.lastIndex()}`);
    }
    const window = await SegmentWindow.open(path.join(dir, seg.file), memory ?? new ArrayBuffer(windowBytes), log);
    try {
      tail = await scanSegment(window, seg.file, k === segments.length - 1, log, seq);
    } finally {
      await window.close();
    }
    memory = window.memory;
    seq = tail.lastBatchSeq;
  }
  const lastIndex = log.lastIndex();
  const done = log.finish();
  if ('missing' in done) throw new WalCorruptionError(segments[0]!.file, 0, done.missing);
  const state: WalState = { hardState: log.hardState, snapshot: log.snapshot, entries: done.entries, metadata: log.metadata };
  if (tail!.torn !== undefined) state.tornTail = tail!.torn;
  return {
    state,
    segments,
    lastBatchSeq: seq!,
    lastIndex,
    tailOffset: tail!.end,
    tailStartBatchEnd: tail!.startBatchEnd,
    tailFileBytes: tail!.fileBytes,
    tmpFiles,
  };
}

/**
 * A segment file seen through one window of memory, reused from the previous segment: the scan
 * asks for the bytes at an offset (`ensure`) and the window slides forward, moving the bytes not yet
 * scanned to its start and reading the next ones behind them. Entries are read as views into the
 * window; before it slides, those the log still keeps are copied out (ReplayLog.copyOut), so only
 * what the last snapshot marker keeps is ever copied. The whole segment was once read into one
 * Buffer of its size: a 64 MiB segment into fresh memory cost ~0.25 s of page faults per start.
 */
class SegmentWindow {
  /** File offset of window[0]; window[0, length) holds the file's bytes from there. */
  private start = 0;
  private length = 0;

  private constructor(
    private readonly fh: fs.FileHandle,
    private readonly file: string,
    readonly size: number,
    /** The window's memory (it grows only for a batch larger than SEGMENT_WINDOW_BYTES). */
    public memory: ArrayBuffer,
    private readonly log: ReplayLog,
  ) {}

  static async open(file: string, memory: ArrayBuffer, log: ReplayLog): Promise<SegmentWindow> {
    const fh = await fs.open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      if (size > SEGMENT_BYTES_MAX + BATCH_BYTES_MAX) throw new WalError(`wal: segment ${file} is ${size} bytes, larger than a segment can be`);
      return new SegmentWindow(fh, file, size, memory, log);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** The file offset `view()[0]` stands for. */
  get base(): number {
    return this.start;
  }

  /** The bytes in the window, from file offset `base` on (valid until the next ensure). */
  view(): Buffer {
    return Buffer.from(this.memory, 0, this.length);
  }

  /** Makes the window hold the file's bytes [offset, offset + bytes), or up to the end of the file. */
  async ensure(offset: number, bytes: number): Promise<void> {
    assert(offset >= this.start && offset <= this.start + this.length, 'wal: a segment is scanned forwards');
    const want = Math.min(bytes, this.size - offset);
    if (offset + want <= this.start + this.length) return;
    // Views into the window are about to be overwritten: the entries kept get their own copies.
    this.log.copyOut(this.memory);
    const keep = this.start + this.length - offset;
    if (want > this.memory.byteLength) {
      const bigger = new ArrayBuffer(want);
      new Uint8Array(bigger).set(new Uint8Array(this.memory, offset - this.start, keep));
      this.memory = bigger;
    } else {
      new Uint8Array(this.memory).copyWithin(0, offset - this.start, offset - this.start + keep);
    }
    this.start = offset;
    this.length = keep;
    const end = Math.min(this.size, this.start + this.memory.byteLength);
    const buf = Buffer.from(this.memory);
    while (this.start + this.length < end) {
      const { bytesRead } = await this.fh.read(buf, this.length, end - this.start - this.length, this.start + this.length);
      if (bytesRead === 0) throw new WalError(`wal: segment ${this.file} shrank while it was read (${this.start + this.length} of ${this.size} bytes)`);
      this.length += bytesRead;
    }
  }

  /** True if the file's bytes from `offset` to its end are all zeros (read a window at a time). */
  async zeroFrom(offset: number): Promise<boolean> {
    for (let o = offset; o < this.size; o = this.start + this.length) {
      await this.ensure(o, this.memory.byteLength);
      if (!isZero(this.view(), o - this.start, this.length)) return false;
    }
    return true;
  }

  /** The file's bytes from `offset` to its end, in one Buffer of their own (the rare path: a bad
   *  batch, whose classification looks at everything after it). */
  async rest(offset: number): Promise<Buffer> {
    this.log.copyOut(this.memory);
    const buf = Buffer.allocUnsafeSlow(this.size - offset);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await this.fh.read(buf, off, buf.length - off, offset + off);
      if (bytesRead === 0) throw new WalError(`wal: segment ${this.file} shrank while it was read (${offset + off} of ${this.size} bytes)`);
      off += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    // The next segment is read into the same memory.
    this.log.copyOut(this.memory);
    await this.fh.close();
  }
}

interface SegmentScan {
  lastBatchSeq: number;
  end: number;
  startBatchEnd: number;
  fileBytes: number;
  torn?: TornTail;
}

/**
 * Whether the bytes at `rel` in `buf` start a batch header whose batch (as its header says) is
 * no larger than a batch can be; its byte count, header included, if so. Nothing is verified here:
 * it tells the window how much to hold before checkBatch looks.
 */
function plausibleBatchBytes(buf: Buffer, rel: number): number | undefined {
  if (buf.length - rel < BATCH_HEADER_BYTES || !mayBeBatchHeader(buf, rel)) return undefined;
  const bodyBytes = buf.readUInt32LE(rel + RECORD_HEADER_BYTES + 8);
  return bodyBytes <= BATCH_BYTES_MAX ? BATCH_HEADER_BYTES + bodyBytes : undefined;
}

/**
 * Replays one segment's batches into `log`; throws WalCorruptionError on anything but a torn tail.
 * Each batch is checked with the window holding all of it (or all up to the end of the file), so
 * checkBatch sees what it would see in the whole file; anything but a valid batch is then judged on
 * the whole rest of the file, as before the window.
 */
async function scanSegment(w: SegmentWindow, file: string, isLast: boolean, log: ReplayLog, prevSeq: number | undefined): Promise<SegmentScan> {
  let off = 0;
  let seq = prevSeq;
  let startBatchEnd = 0;
  for (;;) {
    await w.ensure(off, BATCH_HEADER_BYTES);
    const batchBytes = plausibleBatchBytes(w.view(), off - w.base);
    if (batchBytes === undefined) break;
    await w.ensure(off, batchBytes);
    const buf = w.view();
    const r = checkBatch(buf, off - w.base);
    if (r.kind !== 'ok') break;
    const base = w.base;
    if (seq !== undefined && r.seq !== seq + 1) {
      const why = off === 0 ? 'the previous segment was cut short or batches are missing' : 'batches are missing';
      throw new WalCorruptionError(file, off, `batch seq ${r.seq} where ${seq + 1} was expected (${why})`);
    }
    if (off === 0 && (r.records === 0 || recordType(buf, r.bodyStart) !== RecordType.Metadata)) {
      throw new WalCorruptionError(file, off, 'segment does not begin with a start batch');
    }
    applyBatch(buf, r.bodyStart, r.end, file, log, base);
    seq = r.seq;
    off = base + r.end;
    if (startBatchEnd === 0) startBatchEnd = off;
  }
  if (await w.zeroFrom(off)) {
    if (off === 0) throw new WalCorruptionError(file, 0, 'segment is empty (no start batch)');
    return { lastBatchSeq: seq!, end: off, startBatchEnd, fileBytes: w.size };
  }
  // Not a valid batch, and not the zeroed end: judged on everything after it, in one Buffer.
  const rest = await w.rest(off);
  const r = checkBatch(rest, 0);
  assert(r.kind !== 'ok', 'wal: a batch the window refused checks out in the whole file');
  const bad = r.kind === 'bad' ? { offset: off + r.offset, reason: r.reason } : { offset: off + firstNonZero(rest, 0), reason: 'non-zero bytes after the end of the log' };
  if (off === 0) throw new WalCorruptionError(file, bad.offset, `${bad.reason} in the start batch`);
  if (!isLast) throw new WalCorruptionError(file, bad.offset, bad.reason);
  const next = findValidBatch(rest, 1, seq!);
  if (next !== undefined) throw new WalCorruptionError(file, bad.offset, `${bad.reason} (and a valid batch follows at offset ${off + next})`);
  const torn: TornTail = { file, offset: off, droppedBytes: endOfNonZero(rest, 0) };
  return { lastBatchSeq: seq!, end: off, startBatchEnd, fileBytes: w.size, torn };
}

/** Applies a checked batch's records; `base` is the file offset of buf[0] (for errors). */
function applyBatch(buf: Buffer, start: number, end: number, file: string, log: ReplayLog, base: number): void {
  for (let o = start; o < end; o = recordEnd(buf, o)) {
    let reason: string | undefined;
    switch (recordType(buf, o)) {
      case RecordType.Entry:
        // A view into the window: the window copies out those still kept before it slides.
        reason = log.appendEntry(readEntry(buf, o, buf, 0));
        break;
      case RecordType.HardState:
        log.hardState = readHardState(buf, o);
        break;
      case RecordType.Snapshot:
        reason = log.applySnapshot(readSnapshot(buf, o));
        break;
      case RecordType.Metadata:
        reason = log.applyMetadata(readMetadata(buf, o));
        break;
      default:
        reason = `unexpected record type ${recordType(buf, o)}`;
    }
    if (reason !== undefined) throw new WalCorruptionError(file, base + o, reason);
  }
}

/**
 * The offset of a complete, valid batch with seq > afterSeq at or after `from`, if any. Scans every
 * byte offset: after a torn write, nothing about the damaged batch (not even its length) can be
 * trusted. The seq condition keeps bytes that merely look like a batch (inside the torn batch's own
 * entry data, for instance) from being mistaken for a later batch.
 */
function findValidBatch(buf: Buffer, from: number, afterSeq: number): number | undefined {
  const end = endOfNonZero(buf, from);
  for (let o = from; o < end; o++) {
    if (!mayBeBatchHeader(buf, o)) continue;
    const r = checkBatch(buf, o);
    if (r.kind === 'ok' && r.seq > afterSeq) return o;
  }
  return undefined;
}

function firstNonZero(buf: Buffer, from: number): number {
  let o = from;
  while (o < buf.length && buf[o] === 0) o++;
  return o;
}
