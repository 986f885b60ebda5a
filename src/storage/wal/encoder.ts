// Batch encoding: one Buffer per batch, sized exactly before anything is written, records written
// in place (entry data is copied once, from the Entry straight into the batch).

import { assert } from '../../util/assert';
import type { Entry, HardState } from '../../raft/types';
import { EntryType } from '../../raft/types';
import { crc32c } from '../../util/crc32c';
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
  writeU64,
} from './format';

/** "State up to (index, term) lives in the backend/snapshot; earlier entries are not needed." */
export interface SnapshotMarker {
  index: number;
  term: number;
}

export function entryRecordBytes(e: Entry): number {
  return RECORD_HEADER_BYTES + ENTRY_FIXED_PAYLOAD_BYTES + e.data.byteLength;
}

/** Exact size of the batch encodeSaveBatch() produces. */
export function saveBatchBytes(hardState: HardState | undefined, entries: readonly Entry[]): number {
  let bytes = BATCH_HEADER_BYTES;
  for (let i = 0; i < entries.length; i++) bytes += entryRecordBytes(entries[i]!);
  if (hardState !== undefined) bytes += RECORD_HEADER_BYTES + HARD_STATE_PAYLOAD_BYTES;
  return bytes;
}

export function startBatchBytes(metadata: Uint8Array, snapshot: SnapshotMarker | undefined): number {
  return (
    BATCH_HEADER_BYTES +
    RECORD_HEADER_BYTES + metadata.byteLength +
    RECORD_HEADER_BYTES + HARD_STATE_PAYLOAD_BYTES +
    (snapshot === undefined ? 0 : RECORD_HEADER_BYTES + SNAPSHOT_PAYLOAD_BYTES)
  );
}

export const SNAPSHOT_BATCH_BYTES = BATCH_HEADER_BYTES + RECORD_HEADER_BYTES + SNAPSHOT_PAYLOAD_BYTES;

/** A save() batch: the entries, then the hard state (if any). */
export function encodeSaveBatch(seq: number, hardState: HardState | undefined, entries: readonly Entry[]): Buffer {
  const enc = new BatchEncoder(saveBatchBytes(hardState, entries));
  for (let i = 0; i < entries.length; i++) enc.entry(entries[i]!);
  if (hardState !== undefined) enc.hardState(hardState);
  return enc.finish(seq);
}

/** The first batch of every segment: what recovery needs to start reading at this segment. */
export function encodeStartBatch(seq: number, metadata: Uint8Array, hardState: HardState, snapshot: SnapshotMarker | undefined): Buffer {
  const enc = new BatchEncoder(startBatchBytes(metadata, snapshot));
  enc.metadata(metadata);
  enc.hardState(hardState);
  if (snapshot !== undefined) enc.snapshot(snapshot);
  return enc.finish(seq);
}

export function encodeSnapshotBatch(seq: number, snapshot: SnapshotMarker): Buffer {
  const enc = new BatchEncoder(SNAPSHOT_BATCH_BYTES);
  enc.snapshot(snapshot);
  return enc.finish(seq);
}

/** Writes records into a batch Buffer of a precomputed size; finish() writes the batch header. */
class BatchEncoder {
  private readonly buf: Buffer;
  private offset = BATCH_HEADER_BYTES;
  private records = 0;

  constructor(totalBytes: number) {
    assert(totalBytes >= BATCH_HEADER_BYTES && totalBytes <= BATCH_BYTES_MAX, `batch of ${totalBytes} bytes exceeds BATCH_BYTES_MAX`);
    this.buf = Buffer.allocUnsafe(totalBytes);
  }

  entry(e: Entry): void {
    assert(e.type === EntryType.Normal || e.type === EntryType.ConfChange, `entry ${e.index}: unknown type ${e.type}`);
    const payloadBytes = ENTRY_FIXED_PAYLOAD_BYTES + e.data.byteLength;
    const p = this.begin(RecordType.Entry, payloadBytes);
    writeU64(this.buf, e.index, p);
    writeU64(this.buf, e.term, p + 8);
    this.buf[p + 16] = e.type;
    this.buf.set(e.data, p + ENTRY_FIXED_PAYLOAD_BYTES);
    this.seal(payloadBytes);
  }

  hardState(hs: HardState): void {
    const p = this.begin(RecordType.HardState, HARD_STATE_PAYLOAD_BYTES);
    writeU64(this.buf, hs.term, p);
    this.buf.writeBigUInt64LE(hs.vote, p + 8);
    writeU64(this.buf, hs.commit, p + 16);
    this.seal(HARD_STATE_PAYLOAD_BYTES);
  }

  snapshot(s: SnapshotMarker): void {
    const p = this.begin(RecordType.Snapshot, SNAPSHOT_PAYLOAD_BYTES);
    writeU64(this.buf, s.index, p);
    writeU64(this.buf, s.term, p + 8);
    this.seal(SNAPSHOT_PAYLOAD_BYTES);
  }

  metadata(m: Uint8Array): void {
    assert(m.byteLength <= METADATA_BYTES_MAX, `metadata of ${m.byteLength} bytes exceeds METADATA_BYTES_MAX`);
    const p = this.begin(RecordType.Metadata, m.byteLength);
    this.buf.set(m, p);
    this.seal(m.byteLength);
  }

  finish(seq: number): Buffer {
    assert(this.offset === this.buf.length, `batch size: wrote ${this.offset} of ${this.buf.length} bytes`);
    const body = this.buf.length - BATCH_HEADER_BYTES;
    writeHeader(this.buf, 0, RecordType.Batch, BATCH_PAYLOAD_BYTES);
    writeU64(this.buf, seq, RECORD_HEADER_BYTES);
    this.buf.writeUInt32LE(body, RECORD_HEADER_BYTES + 8);
    this.buf.writeUInt32LE(this.records, RECORD_HEADER_BYTES + 12);
    sealAt(this.buf, 0, BATCH_PAYLOAD_BYTES);
    return this.buf;
  }

  /** Writes a record header at the current offset; returns where the payload goes. */
  private begin(type: RecordType, payloadBytes: number): number {
    assert(this.offset + RECORD_HEADER_BYTES + payloadBytes <= this.buf.length, 'record overruns its batch');
    writeHeader(this.buf, this.offset, type, payloadBytes);
    return this.offset + RECORD_HEADER_BYTES;
  }

  private seal(payloadBytes: number): void {
    sealAt(this.buf, this.offset, payloadBytes);
    this.offset += RECORD_HEADER_BYTES + payloadBytes;
    this.records++;
  }
}

function writeHeader(buf: Buffer, offset: number, type: RecordType, payloadBytes: number): void {
  buf.writeUInt32LE(payloadBytes, offset + 4);
  buf[offset + 8] = type;
  buf[offset + 9] = 0;
  buf[offset + 10] = 0;
  buf[offset + 11] = 0;
}

/** Computes and stores the record's crc (over everything after the crc field). */
function sealAt(buf: Buffer, offset: number, payloadBytes: number): void {
  buf.writeUInt32LE(crc32c(0, buf, offset + 4, offset + RECORD_HEADER_BYTES + payloadBytes), offset);
}
