// etcd's snapshot file: what Maintenance.Snapshot streams and `etcdctl snapshot save` stores, and
// what `quorumkv snapshot restore|status` and quorumctl read back (etcd: clientv3/snapshot
// v3_snapshot.go).
//
//   [payload][zero padding to a multiple of 512 bytes][SHA-256 of payload + padding, 32 bytes]
//
// etcd clients refuse a file whose size is not n % 512 == 32 ("sha256 checksum not found"). The
// payload quorumkv writes is an etcd (bbolt) database made from the backend snapshot
// (etcddb/etcd_db.ts), whose size is already a multiple of the 4 KiB page, so the padding is empty.
// Files of earlier quorumkv versions carried the backend snapshot stream itself
// (backend/snapshot.ts), which ends in its own trailer: readBackendStreamFile finds the end of
// that payload with the stream's parser and checks that only zero padding follows.
//
// Writer: snapshotFileChunks (payload pieces in, file chunks out). Reader: SnapshotFileVerifier
// (a file arriving as a stream), verifySnapshotFile (a file on disk), isEtcdDbFile (which payload),
// readBackendStreamFile (the records of an earlier quorumkv file).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { assert } from '../util/assert';
import { crc32c } from '../util/crc32c';
import { SnapshotStreamParser, type SnapshotMeta } from './backend/snapshot';
import { META_CURRENT_REV } from './backend/records';
import { PAGE_BYTES, isBoltHeader } from './etcddb/bolt';

/** The payload is padded to a multiple of this (etcd: bolt's pages are, so etcd pads nothing). */
export const SNAPSHOT_ALIGN_BYTES = 512;
/** The SHA-256 trailer. */
export const SNAPSHOT_SHA256_BYTES = 32;
/** File read size for hashing and reading payloads. */
const READ_CHUNK_BYTES = 1024 * 1024;

export class SnapshotFileError extends Error {
  override name = 'SnapshotFileError';
}

/** Zero bytes that bring `payloadBytes` to the file alignment. */
export function paddingBytes(payloadBytes: number): number {
  return (SNAPSHOT_ALIGN_BYTES - (payloadBytes % SNAPSHOT_ALIGN_BYTES)) % SNAPSHOT_ALIGN_BYTES;
}

/** The size of the file around a payload of `payloadBytes`. */
export function snapshotFileBytes(payloadBytes: number): number {
  return payloadBytes + paddingBytes(payloadBytes) + SNAPSHOT_SHA256_BYTES;
}

// --- writer ----------------------------------------------------------------------------------------

/**
 * The file around a payload, as chunks of exactly `chunkBytes` (the last one before the trailer
 * may be shorter; it carries the padding), then the SHA-256 as a chunk of its own: a stream's
 * last message holds the hash, as etcd sends it. Payload pieces that are already `chunkBytes`
 * long pass through without a copy.
 */
export async function* snapshotFileChunks(payload: AsyncIterable<Buffer>, chunkBytes: number): AsyncGenerator<Buffer> {
  assert(chunkBytes > 0, 'snapshot file: chunkBytes must be positive');
  const sha = createHash('sha256');
  const held = new HeldBytes();
  let payloadBytes = 0;
  for await (const piece of payload) {
    sha.update(piece);
    payloadBytes += piece.length;
    held.push(piece);
    while (held.bytes >= chunkBytes) yield held.take(chunkBytes);
  }
  const padding = Buffer.alloc(paddingBytes(payloadBytes));
  sha.update(padding);
  held.push(padding);
  while (held.bytes > 0) yield held.take(Math.min(chunkBytes, held.bytes));
  yield sha.digest();
}

/** Pieces waiting to be cut into chunks. */
class HeldBytes {
  private readonly pieces: Buffer[] = [];
  bytes = 0;

  push(piece: Buffer): void {
    if (piece.length === 0) return;
    this.pieces.push(piece);
    this.bytes += piece.length;
  }

  /** The next `n` bytes (n <= bytes): a view when one piece holds them, else one copy. */
  take(n: number): Buffer {
    assert(n > 0 && n <= this.bytes, 'snapshot file: take within what is held');
    this.bytes -= n;
    const first = this.pieces[0]!;
    if (first.length >= n) {
      if (first.length === n) this.pieces.shift();
      else this.pieces[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const p = this.pieces[0]!;
      const k = Math.min(p.length, n - off);
      p.copy(out, off, 0, k);
      off += k;
      if (k === p.length) this.pieces.shift();
      else this.pieces[0] = p.subarray(k);
    }
    return out;
  }
}

// --- reader ----------------------------------------------------------------------------------------

/** Throws etcd's message if a file of `fileBytes` cannot carry the SHA-256 trailer. */
export function checkSnapshotFileSize(fileBytes: number): void {
  if (fileBytes % SNAPSHOT_ALIGN_BYTES !== SNAPSHOT_SHA256_BYTES) {
    throw new SnapshotFileError(
      `snapshot file integrity check failed: sha256 checksum not found (${fileBytes} bytes is not a multiple of ${SNAPSHOT_ALIGN_BYTES} plus ${SNAPSHOT_SHA256_BYTES})`,
    );
  }
}

/**
 * Checks a snapshot file fed in pieces (as `snapshot save` receives it): hashes everything but the
 * last 32 bytes seen, which must be the SHA-256 of what came before them.
 */
export class SnapshotFileVerifier {
  private readonly sha = createHash('sha256');
  private tail = Buffer.alloc(0);
  private fileBytes = 0;

  push(piece: Buffer): void {
    this.fileBytes += piece.length;
    if (piece.length >= SNAPSHOT_SHA256_BYTES) {
      this.sha.update(this.tail);
      this.sha.update(piece.subarray(0, piece.length - SNAPSHOT_SHA256_BYTES));
      this.tail = Buffer.from(piece.subarray(piece.length - SNAPSHOT_SHA256_BYTES));
      return;
    }
    const all = Buffer.concat([this.tail, piece]);
    const keep = Math.min(SNAPSHOT_SHA256_BYTES, all.length);
    this.sha.update(all.subarray(0, all.length - keep));
    this.tail = all.subarray(all.length - keep);
  }

  /** Throws SnapshotFileError (etcd's messages) unless the pieces made a whole, intact file;
   *  returns the length of payload + padding. */
  finish(): number {
    checkSnapshotFileSize(this.fileBytes);
    const actual = this.sha.digest();
    if (!actual.equals(this.tail)) {
      throw new SnapshotFileError(`snapshot file integrity check failed: expected sha256 ${this.tail.toString('hex')}, got ${actual.toString('hex')}`);
    }
    return this.fileBytes - SNAPSHOT_SHA256_BYTES;
  }
}

/** Progress callback: bytes of the file read so far (by this pass). */
export type OnBytes = (readBytes: number) => void;

async function* readRange(file: string, start: number, endExclusive: number, onBytes?: OnBytes): AsyncGenerator<Buffer> {
  if (endExclusive <= start) return;
  const stream = fs.createReadStream(file, { start, end: endExclusive - 1, highWaterMark: READ_CHUNK_BYTES });
  let read = 0;
  for await (const piece of stream) {
    read += (piece as Buffer).length;
    onBytes?.(read);
    yield piece as Buffer;
  }
}

/** Checks a file's size and SHA-256 (before anything is done with it); returns the length of
 *  payload + padding. */
export async function verifySnapshotFile(file: string, onBytes?: OnBytes): Promise<number> {
  checkSnapshotFileSize((await fs.promises.stat(file)).size);
  const v = new SnapshotFileVerifier();
  for await (const piece of readRange(file, 0, Infinity, onBytes)) v.push(piece);
  return v.finish();
}

/** Is the payload an etcd (bbolt) database: what `etcdctl snapshot save` fetches from etcd, and
 *  from quorumkv? (Otherwise: a backend stream of an earlier quorumkv version.) */
export async function isEtcdDbFile(file: string): Promise<boolean> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const first = Buffer.alloc(PAGE_BYTES);
    const { bytesRead } = await fh.read(first, 0, first.length, 0);
    return isBoltHeader(first.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** What readBackendStreamFile saw: the stream's header, its records, the store's current
 *  revision (0 if it has none: an empty store), and the CRC32-C of every payload byte. */
export interface BackendStreamFileStats {
  meta: SnapshotMeta | undefined;
  records: number;
  currentRevision: number;
  payloadCrc: number;
}

export function emptyBackendStreamFileStats(): BackendStreamFileStats {
  return { meta: undefined, records: 0, currentRevision: 0, payloadCrc: 0 };
}

/**
 * The records of a verified file whose payload is a backend snapshot stream, parsed (and the
 * stream verified) by its one parser; what follows the stream's trailer must be the padding, zeros
 * of exactly the right length. `stats` is filled in on the way.
 */
export async function* readBackendStreamFile(
  file: string,
  bodyBytes: number,
  stats: BackendStreamFileStats,
  onBytes?: OnBytes,
): AsyncGenerator<[Buffer, Buffer][]> {
  const parser = new SnapshotStreamParser();
  let trailing = 0;
  for await (const piece of readRange(file, 0, bodyBytes, onBytes)) {
    const { records, usedBytes } = parser.push(piece);
    stats.meta = parser.meta;
    stats.payloadCrc = crc32c(stats.payloadCrc, piece.subarray(0, usedBytes));
    const rest = piece.subarray(usedBytes);
    if (rest.some((b) => b !== 0)) throw new SnapshotFileError('snapshot file: unexpected data after the snapshot payload');
    trailing += rest.length;
    for (const [k, v] of records) if (v.length === 8 && k.equals(META_CURRENT_REV)) stats.currentRevision = Number(v.readBigUInt64BE(0));
    stats.records += records.length;
    if (records.length > 0) yield records;
  }
  parser.finish();
  const expected = paddingBytes(bodyBytes - trailing);
  if (trailing !== expected) throw new SnapshotFileError(`snapshot file: ${trailing} bytes of padding, expected ${expected}`);
}
