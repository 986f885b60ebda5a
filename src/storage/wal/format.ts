// The on-disk format of the WAL: segment file names, record framing, limits.
//
// A segment file is a sequence of *batches* followed by zeros (the preallocated, never-written tail).
// A batch is what one save() writes: one write() to a segment open O_DSYNC (durable on return). Each batch starts with a batch
// header record, followed by its body records; every record is framed the same way:
//
//   offset  size  field
//   0       4     crc      CRC32-C over bytes [4, 12 + length) of the record: length, type,
//                          reserved and payload (everything but the crc itself)
//   4       4     length   payload length in bytes
//   8       1     type     RecordType (never 0, so a zeroed header is never a valid record)
//   9       3     reserved zero
//   12      n     payload
//
// All integers are little-endian; u64 fields hold Raft indexes and terms (< 2^53) or the vote (a
// uint64 member ID). Payloads:
//   Batch      seq u64 | bodyBytes u32 | recordCount u32   (seq: +1 per batch over the log's life)
//   Metadata   opaque bytes given to Wal.create (member and cluster IDs)
//   HardState  term u64 | vote u64 | commit u64
//   Snapshot   index u64 | term u64
//   Entry      index u64 | term u64 | entryType u8 | data
//
// Why a batch header: recovery must tell "the last batch was torn by a crash" (repair) from "a
// batch that was once synced is now damaged" (refuse to start). A batch is valid only if its header
// and every body record check out and the body is exactly bodyBytes long with recordCount records;
// batch seqs make a missing batch (a segment cut short at a batch boundary) detectable. Since a batch
// is written only after the previous one's durable write returned, a bad batch is the torn tail only if
// no valid batch with a higher seq exists after it.
//
// Segment files are named %016x-%016x.wal: (segment seq, index of the first entry expected in the
// segment = the log's last index + 1 when the segment was started), as in etcd. Each segment begins
// with a *start batch* (Metadata, HardState, and the Snapshot marker if any) so that recovery can
// begin at any segment once the older ones are released.

import { assert } from '../../util/assert';

export const KiB = 1024;
export const MiB = 1024 * KiB;

export const RECORD_HEADER_BYTES = 12;
export const RECORD_CRC_OFFSET = 0;
export const RECORD_LENGTH_OFFSET = 4;
export const RECORD_TYPE_OFFSET = 8;

export enum RecordType {
  Batch = 1,
  Metadata = 2,
  HardState = 3,
  Snapshot = 4,
  Entry = 5,
}

export const BATCH_PAYLOAD_BYTES = 16;
export const BATCH_HEADER_BYTES = RECORD_HEADER_BYTES + BATCH_PAYLOAD_BYTES;
export const HARD_STATE_PAYLOAD_BYTES = 24;
export const SNAPSHOT_PAYLOAD_BYTES = 16;
/** Entry payload bytes before the entry's data. */
export const ENTRY_FIXED_PAYLOAD_BYTES = 17;

/** Preallocated size of a segment unless WalOptions.segmentBytes says otherwise (etcd's too). */
export const SEGMENT_BYTES_DEFAULT = 64 * MiB;
/** Small enough for tests of rotation, large enough for any start batch. */
export const SEGMENT_BYTES_MIN = 16 * KiB;
/** Recovery reads a whole segment into one Buffer. */
export const SEGMENT_BYTES_MAX = 1024 * MiB;
/** Metadata is a member ID and a cluster ID in practice; the limit keeps start batches small. */
export const METADATA_BYTES_MAX = 4 * KiB;
/** One Ready. A larger batch means flow control upstream is broken; it may exceed a segment. */
export const BATCH_BYTES_MAX = 256 * MiB;
/** Entries in one batch (Raft's MaxSizePerMsg and MaxInflightMsgs keep real Readies far below). */
export const BATCH_ENTRIES_MAX = 1 << 20;
/** At most 3 records (metadata, hard state, snapshot) in a start batch. */
export const START_BATCH_BYTES_MAX =
  BATCH_HEADER_BYTES +
  RECORD_HEADER_BYTES * 3 +
  METADATA_BYTES_MAX +
  HARD_STATE_PAYLOAD_BYTES +
  SNAPSHOT_PAYLOAD_BYTES;

assert(START_BATCH_BYTES_MAX * 2 < SEGMENT_BYTES_MIN, 'a minimal segment holds its start batch and more');
assert(SEGMENT_BYTES_DEFAULT >= SEGMENT_BYTES_MIN && SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX, 'default segment size in range');
assert(BATCH_BYTES_MAX < 2 ** 32, 'bodyBytes fits its u32 field');
assert(SEGMENT_BYTES_MAX + BATCH_BYTES_MAX <= 2 ** 31, 'a segment (plus one oversized batch) fits one Buffer');

export const SEGMENT_SUFFIX = '.wal';
/** A segment being created: written and synced, then renamed to its final name. */
export const TMP_SUFFIX = '.tmp';
const SEGMENT_NAME_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;

export function segmentName(seq: number, firstIndex: number): string {
  assert(Number.isSafeInteger(seq) && seq >= 0, `segment seq ${seq}`);
  assert(Number.isSafeInteger(firstIndex) && firstIndex >= 1, `segment first index ${firstIndex}`);
  return `${seq.toString(16).padStart(16, '0')}-${firstIndex.toString(16).padStart(16, '0')}${SEGMENT_SUFFIX}`;
}

/** Parses a segment file name; undefined if it is not one (or its numbers exceed 2^53). */
export function parseSegmentName(name: string): { seq: number; firstIndex: number } | undefined {
  const m = SEGMENT_NAME_RE.exec(name);
  if (m === null) return undefined;
  const seq = parseInt(m[1]!, 16);
  const firstIndex = parseInt(m[2]!, 16);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(firstIndex) || firstIndex < 1) return undefined;
  assert(segmentName(seq, firstIndex) === name, 'segment name round trip');
  return { seq, firstIndex };
}

const TWO_POW_32 = 2 ** 32;

/** Writes a non-negative safe integer as u64 LE without allocating a BigInt. */
export function writeU64(buf: Buffer, value: number, offset: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field out of range: ${value}`);
  buf.writeUInt32LE(value >>> 0, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_POW_32), offset + 4);
}

/** Reads a u64 LE; undefined if it does not fit a safe integer (never written by us: corruption). */
export function readU64(buf: Buffer, offset: number): number | undefined {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readUInt32LE(offset + 4);
  if (hi > 0x1fffff) return undefined;
  return hi * TWO_POW_32 + lo;
}
