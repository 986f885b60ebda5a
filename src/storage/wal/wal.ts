// Wal: the write-ahead log of one member. See format.ts for the file format and recovery.ts for how
// a log is read back.
//
// Contract (the Ready loop in src/server/raft_node.ts):
//  - save() persists one Ready's entries and hard state with one write to a file opened O_DSYNC
//    (the write returns once the data is on disk: write + fdatasync in one system call, group
//    commit), through libuv's thread pool so the event loop keeps running. The caller awaits each
//    call; calls never overlap (asserted), so a batch is written only after the previous one is on
//    disk, and only the last batch can ever be torn.
//  - After any write, fdatasync or rotation error the Wal refuses everything (WalFailedError): the
//    file's state is unknown, and retrying an fsync after an error may report success for pages the
//    kernel already dropped. A restart recovers the log, truncating a torn tail.
//  - Segments are preallocated with ftruncate (Node has no fallocate): that reserves the size but
//    the file may be sparse, so the first writes still allocate blocks. The unwritten tail reads as
//    zeros, which is how recovery finds the end of the log.
//  - There is no file lock here: one process per data directory is src/storage/lock.ts's job.

import fs from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Entry, HardState } from '../../raft/types';
import { emptyHardState } from '../../raft/types';
import { assert } from '../../util/assert';
import { syncDir } from '../../util/fsync_dir';
import type { SnapshotMarker } from './encoder';
import { SNAPSHOT_BATCH_BYTES, encodeSaveBatch, encodeSnapshotBatch, encodeStartBatch, saveBatchBytes } from './encoder';
import { WalError, WalFailedError } from './errors';
import { BATCH_ENTRIES_MAX, METADATA_BYTES_MAX, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_SUFFIX, TMP_SUFFIX, segmentName } from './format';
import { recover } from './recovery';
import { walWriteError } from '../../util/failpoints';
import type { SegmentInfo, WalFaults, WalOptions, WalState, WalStats } from './types';

interface ResolvedOptions {
  segmentBytes: number;
  fsync: boolean;
  faults: WalFaults;
}

function resolveOptions(opts: WalOptions | undefined): ResolvedOptions {
  const segmentBytes = opts?.segmentBytes ?? SEGMENT_BYTES_DEFAULT;
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes < SEGMENT_BYTES_MIN || segmentBytes > SEGMENT_BYTES_MAX) {
    throw new WalError(`wal: segmentBytes ${segmentBytes} is outside [${SEGMENT_BYTES_MIN}, ${SEGMENT_BYTES_MAX}]`);
  }
  return { segmentBytes, fsync: opts?.fsync ?? true, faults: opts?.faults ?? {} };
}

/** The writer's view of the log, handed over by create() or open(). */
interface WalInit {
  fh: FileHandle;
  segments: SegmentInfo[];
  offset: number;
  startBatchEnd: number;
  nextBatchSeq: number;
  lastIndex: number;
  snapshot: SnapshotMarker | undefined;
  hardState: HardState;
  metadata: Uint8Array;
}

export class Wal {
  readonly stats: WalStats = { batches: 0, bytes: 0, fsyncs: 0, lastFsyncMs: 0 };
  /** Metrics hook: the duration of every durable write (the write and its data sync, one O_DSYNC call) (etcd_disk_wal_fsync_duration_seconds). */
  onFsync?: (durationMs: number) => void;
  private fh: FileHandle;
  /** Live segments, oldest first; the last one is being appended to. */
  private readonly segments: SegmentInfo[];
  /** Where the next batch goes in the current segment. */
  private offset: number;
  /** A segment is never rotated away while it holds only its start batch. */
  private startBatchEnd: number;
  private nextBatchSeq: number;
  /** max(index of the last entry saved, snapshot index): the rule ReplayLog.lastIndex follows too. */
  private lastIndex: number;
  private snapshot: SnapshotMarker | undefined;
  private hardState: HardState;
  private readonly metadata: Uint8Array;
  /** The operation in flight; calls must not overlap. */
  private busy: string | undefined = undefined;
  private failure: unknown = undefined;
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly opts: ResolvedOptions,
    init: WalInit,
  ) {
    this.fh = init.fh;
    this.segments = init.segments;
    this.offset = init.offset;
    this.startBatchEnd = init.startBatchEnd;
    this.nextBatchSeq = init.nextBatchSeq;
    this.lastIndex = init.lastIndex;
    this.snapshot = init.snapshot;
    this.hardState = init.hardState;
    this.metadata = init.metadata;
    assert(this.segments.length > 0 && this.offset >= this.startBatchEnd && this.startBatchEnd > 0, 'wal: writer state');
  }

  /** True if `dir` holds a WAL (any segment file). */
  static async exists(dir: string): Promise<boolean> {
    try {
      return (await fs.readdir(dir)).some((f) => f.endsWith(SEGMENT_SUFFIX));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Creates a new WAL in `dir` (which must not hold one). The first segment is written and synced
   * in `<dir>.tmp`, then the directory is renamed into place: a crash leaves either no WAL or a
   * complete one, never a WAL without its metadata.
   */
  static async create(dir: string, metadata: Uint8Array, opts?: WalOptions): Promise<Wal> {
    const o = resolveOptions(opts);
    assert(metadata.byteLength <= METADATA_BYTES_MAX, `metadata of ${metadata.byteLength} bytes exceeds METADATA_BYTES_MAX`);
    if (await Wal.exists(dir)) throw new WalError(`wal: ${dir} already holds a WAL`);
    const parent = path.dirname(dir);
    const tmpDir = dir + TMP_SUFFIX;
    await fs.mkdir(parent, { recursive: true });
    await fs.rm(tmpDir, { recursive: true, force: true });
    await fs.mkdir(tmpDir);
    const file = segmentName(0, 1);
    const hardState = emptyHardState();
    const buf = encodeStartBatch(0, metadata, hardState, undefined);
    const fh = await fs.open(path.join(tmpDir, file), 'w+');
    try {
      await fh.truncate(o.segmentBytes);
      await writeAll(fh, buf, 0);
      if (o.fsync) await fh.sync();
    } finally {
      await fh.close();
    }
    if (o.fsync) await syncDir(tmpDir);
    await removeEmptyDir(dir);
    await fs.rename(tmpDir, dir);
    if (o.fsync) await syncDir(parent);
    const init: WalInit = {
      fh: await fs.open(path.join(dir, file), appendFlags(o.fsync)),
      segments: [{ seq: 0, firstIndex: 1, file }],
      offset: buf.length,
      startBatchEnd: buf.length,
      nextBatchSeq: 1,
      lastIndex: 0,
      snapshot: undefined,
      hardState,
      metadata: Buffer.from(metadata),
    };
    return new Wal(dir, o, init);
  }

  /**
   * Recovers the log in `dir` and opens it for appending. A torn tail is cut off (zeroed) and
   * reported in state.tornTail; corruption before the tail throws WalCorruptionError.
   */
  static async open(dir: string, opts?: WalOptions): Promise<{ wal: Wal; state: WalState }> {
    const o = resolveOptions(opts);
    const rec = await recover(dir, opts?.recoveryWindowBytes);
    assert(rec.state.metadata !== undefined, 'every segment starts with metadata');
    const last = rec.segments[rec.segments.length - 1]!;
    const fh = await fs.open(path.join(dir, last.file), appendFlags(o.fsync));
    try {
      if (rec.state.tornTail !== undefined || rec.tailFileBytes < o.segmentBytes) {
        // Cut at the end of the valid data and extend again: the dropped bytes read as zeros, so
        // the next recovery cannot mistake them for data, and the next batch starts on a clean end.
        await fh.truncate(rec.tailOffset);
        await fh.truncate(Math.max(rec.tailFileBytes, o.segmentBytes));
        if (o.fsync) await fh.sync();
      }
      for (const tmp of rec.tmpFiles) await fs.unlink(path.join(dir, tmp));
      if (o.fsync && rec.tmpFiles.length > 0) await syncDir(dir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    const init: WalInit = {
      fh,
      segments: rec.segments,
      offset: rec.tailOffset,
      startBatchEnd: rec.tailStartBatchEnd,
      nextBatchSeq: rec.lastBatchSeq + 1,
      lastIndex: rec.lastIndex,
      snapshot: rec.state.snapshot,
      hardState: rec.state.hardState,
      metadata: rec.state.metadata,
    };
    return { wal: new Wal(dir, o, init), state: rec.state };
  }

  /** The current segment and the offset the next batch goes to (for logs and tests). */
  get tail(): { file: string; offset: number } {
    return { file: this.segments[this.segments.length - 1]!.file, offset: this.offset };
  }

  /** Persists one Ready: its entries and hard state, with one durable (O_DSYNC) write. */
  async save(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void> {
    this.enter('save');
    try {
      if (hardState === undefined && entries.length === 0) return;
      this.checkEntries(entries);
      const bytes = saveBatchBytes(hardState, entries);
      // Without a rotation the write is handed to the thread pool before save() returns: the Ready
      // loop applies earlier commits while it runs (raft_node.ts handleReady).
      if (this.needsRoom(bytes)) await this.rotate();
      const buf = encodeSaveBatch(this.nextBatchSeq, hardState, entries);
      assert(buf.length === bytes, 'batch size as computed');
      await this.append(buf);
      if (hardState !== undefined) this.hardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
      if (entries.length > 0) this.lastIndex = entries[entries.length - 1]!.index;
    } finally {
      this.busy = undefined;
    }
  }

  /** Persists a snapshot marker: state up to (index, term) lives in the backend/snapshot. */
  async saveSnapshot(snap: SnapshotMarker): Promise<void> {
    this.enter('saveSnapshot');
    try {
      const prev = this.snapshot?.index ?? 0;
      assert(Number.isSafeInteger(snap.index) && snap.index >= 1 && snap.term >= 1, `snapshot marker ${snap.index}/${snap.term}`);
      assert(snap.index >= prev, `snapshot marker ${snap.index} is behind the previous one at ${prev}`);
      if (this.needsRoom(SNAPSHOT_BATCH_BYTES)) await this.rotate();
      await this.append(encodeSnapshotBatch(this.nextBatchSeq, snap));
      this.snapshot = { index: snap.index, term: snap.term };
      this.lastIndex = Math.max(this.lastIndex, snap.index);
    } finally {
      this.busy = undefined;
    }
  }

  /**
   * Deletes the segments that only hold entries below `index` (never the current one). Call it
   * after a snapshot marker at or beyond `index` was saved: recovery then starts at the first
   * remaining segment, whose start batch carries metadata, hard state and snapshot marker.
   */
  async releaseTo(index: number): Promise<void> {
    this.enter('releaseTo');
    try {
      const snapIndex = this.snapshot?.index ?? 0;
      assert(index <= snapIndex, `releaseTo(${index}) beyond the snapshot marker ${snapIndex}: recovery would miss entries`);
      // The log's entries before segment k were all <= firstIndex(k) - 1, so every segment before
      // the newest k with firstIndex(k) <= index holds only entries below index.
      let keep = 0;
      for (let k = this.segments.length - 1; k > 0; k--) {
        if (this.segments[k]!.firstIndex <= index) {
          keep = k;
          break;
        }
      }
      if (keep === 0) return;
      // Oldest first, so that a crash in between leaves a contiguous run of segments.
      while (keep > 0) {
        await fs.unlink(path.join(this.dir, this.segments[0]!.file));
        this.segments.shift();
        keep--;
      }
      if (this.opts.fsync) await syncDir(this.dir);
    } finally {
      this.busy = undefined;
    }
  }

  async close(): Promise<void> {
    assert(this.busy === undefined, `close while ${this.busy} is in flight`);
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  private enter(op: string): void {
    assert(!this.closed, `wal: ${op} after close`);
    assert(this.busy === undefined, `wal: ${op} while ${this.busy} is in flight: calls must not overlap`);
    if (this.failure !== undefined) throw new WalFailedError(this.failure);
    this.busy = op;
  }

  /** Paired with ReplayLog.appendEntry: what it would reject must never be written. */
  private checkEntries(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    assert(entries.length <= BATCH_ENTRIES_MAX, `${entries.length} entries in one batch exceed BATCH_ENTRIES_MAX`);
    const first = entries[0]!;
    const snapIndex = this.snapshot?.index ?? 0;
    assert(first.index >= 1 && first.index <= this.lastIndex + 1, `entry ${first.index} leaves a gap after index ${this.lastIndex}`);
    assert(first.index > snapIndex, `entry ${first.index} is at or below the snapshot marker ${snapIndex}`);
    assert(first.term >= 1, `entry ${first.index} has term 0`);
    for (let i = 1; i < entries.length; i++) {
      const e = entries[i]!;
      const prev = entries[i - 1]!;
      assert(e.index === prev.index + 1, `entries not contiguous: ${prev.index} then ${e.index}`);
      assert(e.term >= prev.term, `entry terms go backwards: ${prev.index}/${prev.term} then ${e.index}/${e.term}`);
    }
  }

  /** Whether `bytes` need a new segment: they do not fit the current one, which holds more than its start batch. */
  private needsRoom(bytes: number): boolean {
    return !(this.offset + bytes <= this.opts.segmentBytes || this.offset === this.startBatchEnd);
  }

  /** One write that is durable when it returns (O_DSYNC); any error fails the Wal for good. */
  private async append(buf: Buffer): Promise<void> {
    try {
      this.opts.faults.beforeWrite?.();
      // One system call on the thread pool does the write and the data sync (the segment is open
      // O_DSYNC): nothing of it runs on the event loop. A synchronous write() here measured 56 µs
      // median and 1.6 ms at p99 on the loop (strace -T of a leader under load; the slow ones
      // are likely ext4 waiting on its journal, not traced further), ahead of the peer messages
      // of the same Ready.
      const t0 = performance.now();
      await writeAll(this.fh, buf, this.offset);
      if (this.opts.fsync) {
        this.opts.faults.beforeSync?.();
        this.stats.lastFsyncMs = performance.now() - t0;
        this.stats.fsyncs++;
        this.onFsync?.(this.stats.lastFsyncMs);
      }
    } catch (err) {
      this.failure = err;
      throw new WalFailedError(err);
    }
    this.offset += buf.length;
    this.nextBatchSeq++;
    this.stats.batches++;
    this.stats.bytes += buf.length;
  }

  /**
   * Starts segment seq+1. It is preallocated and gets its start batch under a temporary name, is
   * synced, and only then renamed into the sequence: a named segment always has a valid start batch.
   */
  private async rotate(): Promise<void> {
    const seq = this.segments[this.segments.length - 1]!.seq + 1;
    const info: SegmentInfo = { seq, firstIndex: this.lastIndex + 1, file: segmentName(seq, this.lastIndex + 1) };
    const tmp = path.join(this.dir, info.file + TMP_SUFFIX);
    const buf = encodeStartBatch(this.nextBatchSeq, this.metadata, this.hardState, this.snapshot);
    let fh: FileHandle | undefined;
    try {
      fh = await fs.open(tmp, fsc.O_CREAT | fsc.O_TRUNC | appendFlags(this.opts.fsync));
      await fh.truncate(this.opts.segmentBytes);
      this.opts.faults.beforeWrite?.();
      await writeAll(fh, buf, 0);
      if (this.opts.fsync) await fh.sync();
      await fs.rename(tmp, path.join(this.dir, info.file));
      if (this.opts.fsync) await syncDir(this.dir);
      await this.fh.close(); // fully synced by the batches written to it
    } catch (err) {
      // The segment write failed; closing the half-written file may fail too (same disk). The
      // first error is the one reported: attach the second to it rather than lose it.
      await fh?.close().catch((closeErr: unknown) => {
        if (err instanceof Error) (err as Error & { closeError?: unknown }).closeError = closeErr;
      });
      this.failure = err;
      throw new WalFailedError(err);
    }
    this.fh = fh;
    this.segments.push(info);
    this.offset = buf.length;
    this.startBatchEnd = buf.length;
    this.nextBatchSeq++;
    this.stats.batches++;
    this.stats.bytes += buf.length;
    if (this.opts.fsync) this.stats.fsyncs += 2;
  }
}

/** How a segment that batches are appended to is opened: read-write, and with fsync on, O_DSYNC
 *  (every write returns only once its data, and the metadata needed to read it back, is on disk:
 *  the same guarantee as write + fdatasync). */
function appendFlags(fsync: boolean): number {
  return fsc.O_RDWR | (fsync ? fsc.O_DSYNC : 0);
}

async function writeAll(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const injected = walWriteError();
    if (injected !== undefined) {
      // Failpoint (tests): the device fails this write after taking half of it, as a dying disk
      // may. From the throw on, the error takes the path a real one takes.
      const half = (buf.length - done) >>> 1;
      if (half > 0) await fh.write(buf, done, half, position + done);
      throw injected;
    }
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    if (bytesWritten <= 0) throw new WalError(`wal: write returned ${bytesWritten} at offset ${position + done}`);
    done += bytesWritten;
  }
}

/** rename() replaces an empty directory but not a non-empty one: say so clearly. */
async function removeEmptyDir(dir: string): Promise<void> {
  try {
    await fs.rmdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new WalError(`wal: ${dir} exists and holds other files; refusing to create a WAL there`);
    throw err;
  }
}

