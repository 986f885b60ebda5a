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
import { WalCorruptionError, WalError } from './errors';
import { BATCH_BYTES_MAX, RecordType, SEGMENT_BYTES_MAX, SEGMENT_SUFFIX, TMP_SUFFIX, parseSegmentName } from './format';
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

export async function recover(dir: string): Promise<Recovered> {
  const { segments, tmpFiles } = await listSegments(dir);
  if (segments.length === 0) throw new WalError(`wal: no segments in ${dir}`);
  const log = new ReplayLog(segments[0]!.firstIndex - 1);
  let seq: number | undefined;
  let tail: SegmentScan | undefined;
  /** Every segment is read into the same memory: a fresh buffer's first touch of each page costs
   *  far more than the read itself (64 MiB into fresh memory: ~0.5 s of page faults here, ~15 ms
   *  into memory touched before). */
  let reused: ArrayBufferLike | undefined;
  for (let k = 0; k < segments.length; k++) {
    const seg = segments[k]!;
    if (k > 0 && seg.firstIndex !== log.lastIndex() + 1) {
      throw new WalCorruptionError(seg.file, 0, `segment name says its first index is ${seg.firstIndex} but the log before it ends at ${log.lastIndex()}`);
    }
    const buf = await readSegment(path.join(dir, seg.file), reused);
    reused = buf.buffer;
    tail = scanSegment(buf, seg.file, k === segments.length - 1, log, seq);
    seq = tail.lastBatchSeq;
    // Entries are read as views into their segment; those a snapshot marker has not dropped are
    // copied out before the next segment is read into the same memory. A copy per entry read cost
    // a quarter of a restart's WAL scan in its profile (20k entries of 4 KiB, of which the last
    // snapshot marker keeps fewer than --snapshot-count).
    log.copyOut(buf.buffer);
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

/** Bytes per read of a segment (each on libuv's thread pool). */
const SEGMENT_READ_BYTES = 16 * 1024 * 1024;

/**
 * A segment file into one Buffer of its size (in `reuse`'s memory if it is large enough: nothing
 * may still refer to it). fs.readFile reads a file in 512 KiB pieces, one
 * thread-pool round trip each, and then copies them into one Buffer: in a restart's profile (two
 * 64 MiB segments) that copy and the waits were half of the WAL's recovery.
 */
async function readSegment(file: string, reuse: ArrayBufferLike | undefined): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size > SEGMENT_BYTES_MAX + BATCH_BYTES_MAX) throw new WalError(`wal: segment ${file} is ${size} bytes, larger than a segment can be`);
    const buf = reuse !== undefined && reuse.byteLength >= size ? Buffer.from(reuse, 0, size) : Buffer.allocUnsafeSlow(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, Math.min(SEGMENT_READ_BYTES, size - off), off);
      if (bytesRead === 0) throw new WalError(`wal: segment ${file} shrank while it was read (${off} of ${size} bytes)`);
      off += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

interface SegmentScan {
  lastBatchSeq: number;
  end: number;
  startBatchEnd: number;
  fileBytes: number;
  torn?: TornTail;
}

/** Replays one segment's batches into `log`; throws WalCorruptionError on anything but a torn tail. */
function scanSegment(buf: Buffer, file: string, isLast: boolean, log: ReplayLog, prevSeq: number | undefined): SegmentScan {
  let off = 0;
  let seq = prevSeq;
  let startBatchEnd = 0;
  for (;;) {
    const r = checkBatch(buf, off);
    if (r.kind === 'ok') {
      if (seq !== undefined && r.seq !== seq + 1) {
        const why = off === 0 ? 'the previous segment was cut short or batches are missing' : 'batches are missing';
        throw new WalCorruptionError(file, off, `batch seq ${r.seq} where ${seq + 1} was expected (${why})`);
      }
      if (off === 0 && (r.records === 0 || recordType(buf, r.bodyStart) !== RecordType.Metadata)) {
        throw new WalCorruptionError(file, off, 'segment does not begin with a start batch');
      }
      applyBatch(buf, r.bodyStart, r.end, file, log);
      seq = r.seq;
      off = r.end;
      if (startBatchEnd === 0) startBatchEnd = off;
      continue;
    }
    if (r.kind === 'end' && isZero(buf, off, buf.length)) {
      if (off === 0) throw new WalCorruptionError(file, 0, 'segment is empty (no start batch)');
      return { lastBatchSeq: seq!, end: off, startBatchEnd, fileBytes: buf.length };
    }
    const bad = r.kind === 'bad' ? r : { offset: firstNonZero(buf, off), reason: 'non-zero bytes after the end of the log' };
    if (off === 0) throw new WalCorruptionError(file, bad.offset, `${bad.reason} in the start batch`);
    if (!isLast) throw new WalCorruptionError(file, bad.offset, bad.reason);
    const next = findValidBatch(buf, off + 1, seq!);
    if (next !== undefined) throw new WalCorruptionError(file, bad.offset, `${bad.reason} (and a valid batch follows at offset ${next})`);
    const torn: TornTail = { file, offset: off, droppedBytes: endOfNonZero(buf, off) - off };
    return { lastBatchSeq: seq!, end: off, startBatchEnd, fileBytes: buf.length, torn };
  }
}

function applyBatch(buf: Buffer, start: number, end: number, file: string, log: ReplayLog): void {
  for (let o = start; o < end; o = recordEnd(buf, o)) {
    let reason: string | undefined;
    switch (recordType(buf, o)) {
      case RecordType.Entry:
        // A view into the segment: the scan's end copies out those still kept (copyOut).
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
    if (reason !== undefined) throw new WalCorruptionError(file, o, reason);
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
