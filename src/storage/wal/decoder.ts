// Batch verification and record decoding, the read side of encoder.ts.
//
// checkBatch() verifies a whole batch (header, every record's length and crc, the body's exact size
// and record count) before anything of it is applied: a batch counts entirely or not at all, as its
// single write() was meant to.

import type { Entry, HardState } from '../../raft/types';
import { EntryType } from '../../raft/types';
import { assert } from '../../util/assert';
import { crc32c } from '../../util/crc32c';
import type { SnapshotMarker } from './encoder';
import {
  BATCH_BYTES_MAX,
  BATCH_HEADER_BYTES,
  BATCH_PAYLOAD_BYTES,
  ENTRY_FIXED_PAYLOAD_BYTES,
  HARD_STATE_PAYLOAD_BYTES,
  METADATA_BYTES_MAX,
  RECORD_HEADER_BYTES,
  RecordType,
  SNAPSHOT_PAYLOAD_BYTES,
  readU64,
} from './format';

export type BatchCheck =
  /** No batch here: end of file, or a zeroed header (the preallocated tail). */
  | { kind: 'end' }
  /** `offset` is the record (or batch header) that failed. */
  | { kind: 'bad'; offset: number; reason: string }
  | { kind: 'ok'; seq: number; bodyStart: number; end: number; records: number };

export function checkBatch(buf: Buffer, offset: number): BatchCheck {
  if (offset === buf.length) return { kind: 'end' };
  if (buf.length - offset < RECORD_HEADER_BYTES) {
    return isZero(buf, offset, buf.length) ? { kind: 'end' } : bad(offset, 'truncated batch header');
  }
  if (isZero(buf, offset, offset + RECORD_HEADER_BYTES)) return { kind: 'end' };
  const header = checkRecord(buf, offset, buf.length);
  if (header !== undefined) return bad(offset, header);
  if (buf[offset + 8] !== RecordType.Batch || buf.readUInt32LE(offset + 4) !== BATCH_PAYLOAD_BYTES) {
    return bad(offset, 'expected a batch header record');
  }
  const seq = readU64(buf, offset + RECORD_HEADER_BYTES);
  const bodyBytes = buf.readUInt32LE(offset + RECORD_HEADER_BYTES + 8);
  const records = buf.readUInt32LE(offset + RECORD_HEADER_BYTES + 12);
  if (seq === undefined) return bad(offset, 'batch seq out of range');
  const bodyStart = offset + BATCH_HEADER_BYTES;
  const end = bodyStart + bodyBytes;
  if (bodyBytes > BATCH_BYTES_MAX || end > buf.length) return bad(offset, `batch of ${bodyBytes} bytes extends past the end of the file`);
  let o = bodyStart;
  let count = 0;
  while (o < end) {
    const reason = checkRecord(buf, o, end) ?? checkBodyRecord(buf, o);
    if (reason !== undefined) return bad(o, reason);
    o += RECORD_HEADER_BYTES + buf.readUInt32LE(o + 4);
    count++;
  }
  if (count !== records) return bad(offset, `batch header says ${records} records, body has ${count}`);
  return { kind: 'ok', seq, bodyStart, end, records };
}

function bad(offset: number, reason: string): BatchCheck {
  return { kind: 'bad', offset, reason };
}

/** Framing of one record ending at or before `limit`: length in bounds, reserved zero, crc. */
function checkRecord(buf: Buffer, offset: number, limit: number): string | undefined {
  if (limit - offset < RECORD_HEADER_BYTES) return 'record header overruns its batch';
  const length = buf.readUInt32LE(offset + 4);
  if (length > limit - offset - RECORD_HEADER_BYTES) return `record length ${length} overruns its batch`;
  const end = offset + RECORD_HEADER_BYTES + length;
  if (crc32c(0, buf, offset + 4, end) !== buf.readUInt32LE(offset)) return 'checksum mismatch';
  if (buf[offset + 9] !== 0 || buf[offset + 10] !== 0 || buf[offset + 11] !== 0) return 'reserved header bytes are not zero';
  return undefined;
}

/** Types and sizes allowed in a batch body (its crc already checked out). */
function checkBodyRecord(buf: Buffer, offset: number): string | undefined {
  const length = buf.readUInt32LE(offset + 4);
  const type = buf[offset + 8];
  const p = offset + RECORD_HEADER_BYTES;
  switch (type) {
    case RecordType.Metadata:
      return length <= METADATA_BYTES_MAX ? undefined : `metadata record of ${length} bytes`;
    case RecordType.HardState:
      if (length !== HARD_STATE_PAYLOAD_BYTES) return `hard state record of ${length} bytes`;
      return readU64(buf, p) === undefined || readU64(buf, p + 16) === undefined ? 'hard state field out of range' : undefined;
    case RecordType.Snapshot:
      if (length !== SNAPSHOT_PAYLOAD_BYTES) return `snapshot record of ${length} bytes`;
      return readU64(buf, p) === undefined || readU64(buf, p + 8) === undefined ? 'snapshot field out of range' : undefined;
    case RecordType.Entry: {
      if (length < ENTRY_FIXED_PAYLOAD_BYTES) return `entry record of ${length} bytes`;
      const index = readU64(buf, p);
      const term = readU64(buf, p + 8);
      if (index === undefined || term === undefined || index < 1 || term < 1) return 'entry index or term out of range';
      const t = buf[p + 16];
      return t === EntryType.Normal || t === EntryType.ConfChange ? undefined : `unknown entry type ${t}`;
    }
    default:
      return `unexpected record type ${type} in a batch body`;
  }
}

/** The quick, allocation-free test that `offset` may start a batch header (crc not yet checked). */
export function mayBeBatchHeader(buf: Buffer, offset: number): boolean {
  return (
    buf[offset + 8] === RecordType.Batch &&
    buf[offset + 4] === BATCH_PAYLOAD_BYTES &&
    buf[offset + 5] === 0 &&
    buf[offset + 6] === 0 &&
    buf[offset + 7] === 0 &&
    offset + BATCH_HEADER_BYTES <= buf.length
  );
}

export function recordType(buf: Buffer, offset: number): RecordType {
  return buf[offset + 8] as RecordType;
}

export function recordEnd(buf: Buffer, offset: number): number {
  return offset + RECORD_HEADER_BYTES + buf.readUInt32LE(offset + 4);
}

/** Decoders of verified records. Entry data is copied: the segment Buffer must not be retained. */
/** The entry record at `offset`. Its data is a copy, or, with `copy` (a copy of buf from
 *  `copyBase` on that holds the record), a view into that copy. */
export function readEntry(buf: Buffer, offset: number, copy?: Buffer, copyBase = 0): Entry {
  const p = offset + RECORD_HEADER_BYTES;
  const end = recordEnd(buf, offset);
  const dataStart = p + ENTRY_FIXED_PAYLOAD_BYTES;
  assert(copy === undefined || (copyBase <= offset && end - copyBase <= copy.length), 'wal: entry outside the copy it is read from');
  return {
    index: readU64(buf, p)!,
    term: readU64(buf, p + 8)!,
    type: buf[p + 16] as EntryType,
    data: copy === undefined ? Buffer.from(buf.subarray(dataStart, end)) : copy.subarray(dataStart - copyBase, end - copyBase),
  };
}

export function readHardState(buf: Buffer, offset: number): HardState {
  const p = offset + RECORD_HEADER_BYTES;
  return { term: readU64(buf, p)!, vote: buf.readBigUInt64LE(p + 8), commit: readU64(buf, p + 16)! };
}

export function readSnapshot(buf: Buffer, offset: number): SnapshotMarker {
  const p = offset + RECORD_HEADER_BYTES;
  return { index: readU64(buf, p)!, term: readU64(buf, p + 8)! };
}

export function readMetadata(buf: Buffer, offset: number): Uint8Array {
  return Buffer.from(buf.subarray(offset + RECORD_HEADER_BYTES, recordEnd(buf, offset)));
}

const ZERO_CHUNK_BYTES = 64 * 1024;
const ZEROS = Buffer.alloc(ZERO_CHUNK_BYTES);

/** True if buf[from, to) is all zeros (compared natively, a chunk at a time). */
export function isZero(buf: Buffer, from: number, to: number): boolean {
  for (let o = from; o < to; o += ZERO_CHUNK_BYTES) {
    const n = Math.min(ZERO_CHUNK_BYTES, to - o);
    if (ZEROS.compare(buf, o, o + n, 0, n) !== 0) return false;
  }
  return true;
}

/** One past the last non-zero byte in buf[from, end), or `from` if all are zero. */
export function endOfNonZero(buf: Buffer, from: number): number {
  let hi = buf.length;
  while (hi > from) {
    const lo = Math.max(from, hi - ZERO_CHUNK_BYTES);
    if (!isZero(buf, lo, hi)) {
      for (let o = hi - 1; o >= lo; o--) if (buf[o] !== 0) return o + 1;
    }
    hi = lo;
  }
  return from;
}
