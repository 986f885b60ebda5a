// Backend snapshots: a consistent view of the whole LevelDB backend (a LevelDB snapshot, so writes
// go on while it streams), serialized as a stream of chunks. The same stream is what a leader sends
// to a follower behind the compaction point, what Maintenance.Snapshot hands to `etcdctl snapshot
// save`, and what `quorumkv snapshot restore` reads back.
//
// Format (all integers big-endian):
//   header  "QKVSNAP1" | applied index u64 | applied term u64
//   records (repeated) u32 key length | key | u32 value length | value
//   trailer u32 0xffffffff | record count u64 | CRC32-C of every record byte u32
// Chunks are produced a few thousand records at a time, so neither side holds the whole database in
// memory and the event loop is never blocked for long.
import { levelDb, type LevelDb } from '../leveldb';
import { assert } from '../../util/assert';
import { crc32c } from '../../util/crc32c';
import { commitStateMetaRecords, isCommitRecordKey, isCommitStateMetaKey, readCommitState, type CommitState } from './commit_record';

export const SNAPSHOT_MAGIC = Buffer.from('QKVSNAP1');
const HEADER_BYTES = 24;
const TRAILER_MARK = 0xffffffff;
const TRAILER_BYTES = 16;
/** Records per chunk (and per LevelDB read). */
const RECORDS_PER_CHUNK_MAX = 2048;
/** Key+value bytes per LevelDB read, so per chunk (plus one record): classic-level's default
 *  (16 KiB) would cut a stream of 4 KiB values into chunks of 4 records, one thread-pool round
 *  trip and one network message each. */
export const SNAPSHOT_READ_BYTES_MAX = 1024 * 1024;
/** Largest key or value a snapshot record may carry (a guard against corrupt length fields). */
const RECORD_PART_BYTES_MAX = 256 * 1024 * 1024;

export class SnapshotFormatError extends Error {
  override name = 'SnapshotFormatError';
}

export interface SnapshotMeta {
  appliedIndex: number;
  appliedTerm: number;
}

type Db = LevelDb;

/** The stream's header for `meta`. */
export function snapshotHeader(meta: SnapshotMeta): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  SNAPSHOT_MAGIC.copy(header, 0);
  header.writeBigUInt64BE(BigInt(meta.appliedIndex), 8);
  header.writeBigUInt64BE(BigInt(meta.appliedTerm), 16);
  return header;
}

/** Encodes records as stream bytes, counting them and their CRC into `sum` (for the trailer). */
export function encodeSnapshotRecords(records: readonly (readonly [Buffer, Buffer])[], sum: { count: bigint; crc: number }): Buffer {
  let size = 0;
  for (const [k, v] of records) size += 8 + k.length + v.length;
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  for (const [k, v] of records) {
    off = out.writeUInt32BE(k.length, off);
    off += k.copy(out, off);
    off = out.writeUInt32BE(v.length, off);
    off += v.copy(out, off);
  }
  assert(off === size, 'snapshot chunk size');
  sum.crc = crc32c(sum.crc, out);
  sum.count += BigInt(records.length);
  return out;
}

/** The stream's trailer: record count and CRC of every record byte. */
export function snapshotTrailer(sum: { count: bigint; crc: number }): Buffer {
  const trailer = Buffer.alloc(TRAILER_BYTES);
  trailer.writeUInt32BE(TRAILER_MARK, 0);
  trailer.writeBigUInt64BE(sum.count, 4);
  trailer.writeUInt32BE(sum.crc >>> 0, 12);
  return trailer;
}

/** A consistent view of `db` as batches of records in key order (what the stream carries), with
 *  `meta` read inside the same LevelDB snapshot. The view carries the newest commit's state as
 *  meta records (at the end), never commit records (commit_record.ts): a stream reads the same
 *  whichever way the sender's backend kept that state. `close` releases the snapshot (idempotent):
 *  the generator does at its end; a caller that stops early or never starts reading must. */
export async function openSnapshotRecords(db: Db): Promise<{ meta: SnapshotMeta; records: AsyncGenerator<[Buffer, Buffer][]>; close: () => Promise<void> }> {
  const snapshot = db.snapshot();
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await snapshot.close();
  };
  let state: CommitState;
  try {
    state = await readCommitState(db, snapshot);
  } catch (err) {
    await close();
    throw err;
  }
  const meta = { appliedIndex: state.appliedIndex, appliedTerm: state.appliedTerm };
  async function* records(): AsyncGenerator<[Buffer, Buffer][]> {
    try {
      const it = db.iterator({ snapshot, highWaterMarkBytes: SNAPSHOT_READ_BYTES_MAX });
      try {
        // The next read runs on LevelDB's thread while the consumer works on this batch: one
        // batch ahead, so at most two reads' worth of records are held. A read that fails while
        // nobody awaits it is caught here and rethrown when the loop gets to it.
        const read = () => {
          const p = it.nextv(RECORDS_PER_CHUNK_MAX);
          p.catch(() => undefined);
          return p;
        };
        let next = read();
        for (;;) {
          const batch = await next;
          if (batch.length === 0) break;
          next = read();
          const kept = batch.filter(([k]) => !isCommitRecordKey(k) && !isCommitStateMetaKey(k));
          if (kept.length > 0) yield kept;
        }
      } finally {
        await it.close(); // after a read still in flight (abstract-level waits for it)
      }
      yield commitStateMetaRecords(state);
    } finally {
      await close();
    }
  }
  return { meta, records: records(), close };
}

/** Streams a consistent view of `db`. `meta` is read inside the same LevelDB snapshot. */
export async function openSnapshotStream(db: Db): Promise<{ meta: SnapshotMeta; chunks: AsyncGenerator<Buffer>; close: () => Promise<void> }> {
  const view = await openSnapshotRecords(db);
  const meta = view.meta;
  async function* chunks(): AsyncGenerator<Buffer> {
    try {
      yield snapshotHeader(meta);
      const sum = { count: 0n, crc: 0 };
      for await (const batch of view.records) yield encodeSnapshotRecords(batch, sum);
      yield snapshotTrailer(sum);
    } finally {
      await view.records.return(undefined);
      await view.close();
    }
  }
  return { meta, chunks: chunks(), close: view.close };
}

/**
 * The one parser of the stream: fed pieces of any size, it returns the records each piece
 * completes and verifies the header, the record count and the CRC when the trailer arrives. The
 * records are views into the parser's own copy of the input (one copy per piece, never the
 * caller's buffer, which may be reused): a copy per key and per value cost a Buffer allocation
 * each (an ArrayBuffer of its own for a 4 KiB value), about a seventh of a receiver's main-thread
 * time in an install's profile. A record kept alive keeps the piece it came from alive; the
 * consumers keep either all of a piece's records for a while (an install's loader, its newest
 * values) or none of them. It tells how many bytes of a piece belong to the stream, so
 * that a caller can decide what may follow the trailer (nothing on the wire; zero padding in a
 * snapshot file, ../snapshot_file.ts).
 */
export class SnapshotStreamParser {
  /** The header's fields, once it has been read. */
  meta: SnapshotMeta | undefined;
  /** Records parsed so far. */
  records = 0;
  private pending: Buffer = Buffer.alloc(0);
  private crc = 0;
  private trailerSeen = false;

  /** The trailer has been read and verified: the stream is complete. */
  get done(): boolean {
    return this.trailerSeen;
  }

  push(piece: Buffer | Uint8Array): { records: [Buffer, Buffer][]; usedBytes: number } {
    if (this.trailerSeen) return { records: [], usedBytes: 0 };
    // Always a new buffer of the parser's own (the records are views into it).
    let pending = this.pending.length === 0 ? Buffer.from(piece) : Buffer.concat([this.pending, piece]);
    if (this.meta === undefined) {
      if (pending.length < HEADER_BYTES) {
        this.pending = pending;
        return { records: [], usedBytes: piece.length };
      }
      if (!pending.subarray(0, 8).equals(SNAPSHOT_MAGIC)) throw new SnapshotFormatError('snapshot: not a quorumkv snapshot (bad magic)');
      this.meta = { appliedIndex: Number(pending.readBigUInt64BE(8)), appliedTerm: Number(pending.readBigUInt64BE(16)) };
      pending = pending.subarray(HEADER_BYTES);
    }
    const records: [Buffer, Buffer][] = [];
    let off = 0;
    let trailer: Buffer | undefined;
    for (;;) {
      if (pending.length - off < 4) break;
      const klen = pending.readUInt32BE(off);
      if (klen === TRAILER_MARK) {
        if (pending.length - off < TRAILER_BYTES) break;
        trailer = pending.subarray(off, off + TRAILER_BYTES);
        break;
      }
      if (klen > RECORD_PART_BYTES_MAX) throw new SnapshotFormatError(`snapshot: record key length ${klen} is corrupt`);
      if (pending.length - off < 8 + klen) break;
      const vlen = pending.readUInt32BE(off + 4 + klen);
      if (vlen > RECORD_PART_BYTES_MAX) throw new SnapshotFormatError(`snapshot: record value length ${vlen} is corrupt`);
      if (pending.length - off < 8 + klen + vlen) break;
      records.push([pending.subarray(off + 4, off + 4 + klen), pending.subarray(off + 8 + klen, off + 8 + klen + vlen)]);
      off += 8 + klen + vlen;
    }
    this.crc = crc32c(this.crc, pending.subarray(0, off));
    this.records += records.length;
    if (trailer === undefined) {
      this.pending = pending.subarray(off);
      return { records, usedBytes: piece.length };
    }
    this.pending = Buffer.alloc(0);
    this.trailerSeen = true;
    const count = trailer.readBigUInt64BE(4);
    if (count !== BigInt(this.records)) throw new SnapshotFormatError(`snapshot: record count mismatch (trailer says ${count}, read ${this.records})`);
    if (trailer.readUInt32BE(12) !== this.crc >>> 0) throw new SnapshotFormatError('snapshot: checksum mismatch');
    // Bytes after the trailer are all in this piece (earlier pieces were consumed whole).
    return { records, usedBytes: piece.length - (pending.length - off - TRAILER_BYTES) };
  }

  /** Throws unless the stream ended with its trailer. */
  finish(): void {
    if (this.meta === undefined) throw new SnapshotFormatError('snapshot: truncated before its header');
    if (!this.trailerSeen) throw new SnapshotFormatError('snapshot: truncated (no trailer)');
  }
}

/** A batch of parsed records is handed on once it holds this many key+value bytes (or the stream
 *  ended). A leader's stream comes in 1 MiB chunks, each the records of one LevelDB read (a bit
 *  over 1 MiB: the read stops after the record that crosses its mark) cut at 1 MiB, so every
 *  other piece was a few KiB: half of an install's LevelDB writes (885 batches for 888 chunks of
 *  465 MB) carried a few records each, a thread-pool round trip and a log write apiece. Below a
 *  piece's size, so that a whole piece still goes on at once. */
export const RECORD_BATCH_BYTES_MIN = 512 * 1024;

/** Parses a snapshot stream into records, in batches of at least RECORD_BATCH_BYTES_MIN (but the
 *  last); verifies the header, count and checksum. */
export async function* readSnapshotStream(
  input: AsyncIterable<Buffer | Uint8Array>,
  onMeta: (meta: SnapshotMeta) => void,
): AsyncGenerator<[Buffer, Buffer][]> {
  const parser = new SnapshotStreamParser();
  let batch: [Buffer, Buffer][] = [];
  let batchBytes = 0;
  for await (const piece of input) {
    if (parser.done && piece.length > 0) throw new SnapshotFormatError('snapshot: data after the trailer');
    const hadMeta = parser.meta !== undefined;
    const { records, usedBytes } = parser.push(piece);
    if (!hadMeta && parser.meta !== undefined) onMeta(parser.meta);
    if (usedBytes !== piece.length) throw new SnapshotFormatError('snapshot: data after the trailer');
    for (const r of records) {
      batch.push(r);
      batchBytes += r[0].length + r[1].length;
    }
    if (batchBytes >= RECORD_BATCH_BYTES_MIN) {
      yield batch;
      batch = [];
      batchBytes = 0;
    }
  }
  parser.finish();
  if (batch.length > 0) yield batch;
}

/** Block size of the tables of a database written from a snapshot stream (LevelDB's default is
 *  4 KiB). The LevelDB bundled with classic-level (1.20) appends a table through a stdio FILE with
 *  a 4 KiB buffer, so a 4 KiB block of one 4 KiB value went out as two write(2) calls (~2 per
 *  record: 75,000 of them for a 166 MB stream, under strace) and a block trailer, an index entry
 *  and a compression attempt each. With 64 KiB blocks an install's threads other than the main
 *  one (LevelDB's writes and table builds) used 0.97-1.0 s of CPU instead of 1.24-1.28 s for the
 *  same stream (scripts/bench-install.ts, alternating builds). Reads of these tables are whole
 *  passes (a load, a snapshot, compaction) and a few meta records; the member's later tables
 *  get LevelDB's default again (the option belongs to the open database, not to its files). */
const RESTORE_BLOCK_BYTES = 64 * 1024;

/** Where a restore's time went (for its log line): waiting for each batch of records (the
 *  input: network, file, and the parse) and for LevelDB's write of the one before (the two
 *  overlap, so they may add up to more than the restore took). `loadMs`, part of both: the
 *  main thread in `onRecords` (loading the records into a store) while a write was running. */
export interface RestoreTimings {
  inputMs: number;
  writeMs: number;
  loadMs: number;
  batches: number;
}

/**
 * Writes record batches into a fresh LevelDB at `dir` (which must not hold a database). Each
 * batch's write (on the thread pool) overlaps the read and parse of the next one; at most one
 * write is outstanding, so batches reach LevelDB in order and memory holds two batches.
 * `onRecords` sees each batch, in order, while its write runs (e.g. to load the records).
 */
export async function writeRecordsInto(
  dir: string,
  records: AsyncIterable<[Buffer, Buffer][]>,
  timings?: RestoreTimings,
  onRecords?: (batch: [Buffer, Buffer][]) => void,
): Promise<void> {
  const db = levelDb(dir, { errorIfExists: true, blockSize: RESTORE_BLOCK_BYTES });
  await db.open();
  try {
    const it = records[Symbol.asyncIterator]();
    const t = performance.now();
    let next = await it.next();
    if (timings !== undefined) timings.inputMs += performance.now() - t;
    while (next.done !== true) {
      const batch = next.value;
      const t0 = performance.now();
      let inputMs = 0;
      let writeMs = 0;
      // A chained batch: the array form clones and checks an object per record first, and its
      // native half reads each object's properties; both on the main thread (Backend.writeBatch).
      const chained = db.batch();
      for (const [key, value] of batch) chained.put(key, value);
      const written = chained.write().finally(() => (writeMs = performance.now() - t0));
      const loadStarted = performance.now();
      onRecords?.(batch);
      const loadMs = performance.now() - loadStarted;
      const read = it.next().finally(() => (inputMs = performance.now() - t0));
      // Both settle before going on (no write left running if the input failed, and the reverse).
      const [w, r] = await Promise.allSettled([written, read]);
      if (w.status === 'rejected' && r.status === 'rejected') throw new AggregateError([w.reason, r.reason], 'snapshot restore: the write and the input both failed');
      if (w.status === 'rejected') throw w.reason;
      if (r.status === 'rejected') throw r.reason;
      next = r.value;
      if (timings !== undefined) {
        timings.inputMs += inputMs;
        timings.writeMs += writeMs;
        timings.loadMs += loadMs;
        timings.batches++;
      }
    }
  } finally {
    await db.close();
  }
}

/** Writes a snapshot stream into a fresh LevelDB at `dir` (which must not hold a database). */
export async function restoreSnapshotInto(
  dir: string,
  input: AsyncIterable<Buffer | Uint8Array>,
  timings?: RestoreTimings,
  onRecords?: (batch: [Buffer, Buffer][]) => void,
): Promise<SnapshotMeta> {
  let meta: SnapshotMeta | undefined;
  await writeRecordsInto(dir, readSnapshotStream(input, (m) => (meta = m)), timings, onRecords);
  assert(meta !== undefined, 'snapshot meta read');
  return meta;
}
