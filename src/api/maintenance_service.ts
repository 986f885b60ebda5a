// etcdserverpb.Maintenance: member status, hashes for consistency checks, alarms, defragmentation,
// leadership transfer, and the backend snapshot stream that `etcdctl snapshot save` stores.
//
// The snapshot stream is etcd's snapshot file (layout in storage/snapshot_file.ts: payload, zero
// padding to 512 bytes, SHA-256): the payload is an etcd (bbolt) database made from the backend
// snapshot (storage/etcddb/etcd_db.ts), so that `etcdctl snapshot status|restore` read it as
// they read etcd's.
import fs from 'node:fs/promises';
import path from 'node:path';
import { EtcdError, Errors, GrpcCode, unimplemented } from '../util/errors';
import type { Server } from '../server/server';
import { AlarmAction } from '../server/alarms';
import { toNumber } from '../server/kv_ops';
import type {
  AlarmRequest,
  AlarmResponse,
  HashKVRequest,
  HashKVResponse,
  HashResponse,
  HeaderResponse,
  MoveLeaderRequest,
  ResponseHeader,
  SnapshotResponse,
  StatusResponse,
} from '../proto/types';
import { crc32c } from '../mvcc';
import { snapshotFileBytes, snapshotFileChunks } from '../storage/snapshot_file';
import { writeEtcdDb, type EtcdDbWritten } from '../storage/etcddb/etcd_db';
import { bufferedSink } from '../storage/etcddb/bolt';
import { LOOP_CLOCK } from '../util/slice_clock';
import type { Backend } from '../storage/backend/backend';
import { internalStatus, replyError } from './errors';
import type { ServerStreamCall, ServerStreamHandler, StreamListener, UnaryHandler } from './call';
import { authorizeAlarm, authorizeMaintenance } from './auth_service';

/** The server version Status reports: etcd 3.4's API, so that version-gated clients go ahead. */
export const STATUS_VERSION = '3.4.0';

/** Blob bytes per SnapshotResponse. etcd sends 32 KiB; clients only concatenate blobs (and accept
 *  messages of any size up to their receive limit, ≥ 4 MiB everywhere), so fewer, larger ones. */
const SNAPSHOT_CHUNK_BYTES = 256 * 1024;
/** Sending work (hashing, framing) between two event-loop turns. */
const SEND_SLICE_MS_MAX = 10;
/** Snapshot streams served at once; each holds a spool file the size of the backend. */
const SNAPSHOT_STREAMS_MAX = 2;
/** Spool files: `<data-dir>/member/snapshot-stream.<pid>.<seq>.tmp`, removed when the stream ends. */
const SPOOL_PREFIX = 'snapshot-stream.';
const SPOOL_SUFFIX = '.tmp';

// --- alarms ---------------------------------------------------------------------------------------

// The alarm list itself is replicated state (server/alarms.ts); re-exported for older imports.
export { AlarmType } from '../server/alarms';

// --- the service ----------------------------------------------------------------------------------

export function maintenanceService(server: Server) {
  const alarms = server.alarms;
  const backend = server.durableBackend;
  const spoolDir = backend ? path.dirname(backend.dir) : undefined;
  if (spoolDir) {
    removeStaleSpoolFiles(spoolDir).catch((err: unknown) =>
      server.logger.warn('could not remove stale snapshot spool files', { dir: spoolDir, error: String(err) }),
    );
  }
  let snapshotStreams = 0;

  const Status: UnaryHandler<object, StatusResponse> = (call) => {
    dbSizes(server).then(
      ({ dbSize, dbSizeInUse }) => {
        const raft = server.raftStatus();
        const errors = alarms.describe();
        if (raft.leader === 0n) errors.push(Errors.NoLeader.message);
        if (!server.healthy) errors.push('quorumkv: member failed (see its log); it no longer accepts writes');
        call.respond({
          header: server.header(),
          version: STATUS_VERSION,
          dbSize,
          dbSizeInUse,
          dbSizeQuota: Number.isFinite(server.quotaBackendBytes) ? server.quotaBackendBytes : 0,
          leader: raft.leader.toString(),
          // etcd reports the committed index here (and the applied index separately).
          raftIndex: raft.commit,
          raftTerm: raft.term,
          raftAppliedIndex: server.appliedIndex,
          errors,
          isLearner: raft.isLearner,
        });
      },
      (err) => replyError(call, err),
    );
  };

  const HashKV: UnaryHandler<HashKVRequest, HashKVResponse> = (call) => {
    const denied = authorizeMaintenance(server, call); // root only, as etcd 3.4
    if (denied) return replyError(call, denied);
    // In slices across event-loop turns (server/hash_kv.ts): at GB scale one pass takes seconds.
    server.hashKV(toNumber(call.request.revision)).then(
      (h) => {
        // etcd's store starts with compactMainRev = -1 and reports it until the first compaction.
        const compactRevision = h.compactRevision === 0 ? -1 : h.compactRevision;
        call.respond({ header: server.header(), hash: h.hash, compact_revision: compactRevision, hash_revision: h.hashRevision });
      },
      (err) => replyError(call, err),
    );
  };

  // etcd's Hash covers the whole backend ("for testing ONLY"). Ours: CRC32-C over the KV hash of
  // everything retained, the current revision and the compaction point, so members with the same
  // MVCC state agree (leases and the applied index are not included). The revisions are those the
  // sliced hash was computed at (writes meanwhile do not mix in).
  const Hash: UnaryHandler<object, HashResponse> = (call) => {
    const denied = authorizeMaintenance(server, call); // root only, as etcd 3.4
    if (denied) return replyError(call, denied);
    server.hashKV(0).then(
      (h) => {
        const b = Buffer.alloc(20);
        b.writeUInt32BE(h.hash >>> 0, 0);
        b.writeBigInt64BE(BigInt(h.hashRevision), 4);
        b.writeBigInt64BE(BigInt(h.compactRevision), 12);
        call.respond({ header: server.header(), hash: crc32c(0, b) >>> 0 });
      },
      (err) => replyError(call, err),
    );
  };

  // ACTIVATE and DEACTIVATE go through the log, so every member lists the same alarms; GET reads
  // the replicated list after a ReadIndex (etcd sends GET through the log as well).
  const Alarm: UnaryHandler<AlarmRequest, AlarmResponse> = (call) => {
    const denied = authorizeAlarm(server, call);
    if (denied) return replyError(call, denied);
    const r = call.request;
    if (r.action === AlarmAction.GET) {
      server.linearizableRead().then(
        () => call.respond({ alarms: alarms.get(BigInt(r.memberID || '0'), r.alarm) }), // no header, as etcd 3.4
        (err) => replyError(call, err),
      );
      return;
    }
    if (r.action !== AlarmAction.ACTIVATE && r.action !== AlarmAction.DEACTIVATE) {
      return replyError(call, new EtcdError(GrpcCode.INVALID_ARGUMENT, `quorumkv: unknown alarm action ${r.action}`));
    }
    server.propose({ alarm: { action: r.action, memberID: String(r.memberID || '0'), alarm: r.alarm } }).then(
      // The applied alarm change answers with the alarm list (server/applier.ts).
      (res) => call.respond({ ...(res.response as Omit<AlarmResponse, 'header'>) }), // no header, as etcd 3.4
      (err) => replyError(call, err),
    );
  };

  const Defragment: UnaryHandler<object, HeaderResponse> = (call) => {
    const denied = authorizeMaintenance(server, call); // root only, as etcd 3.4
    if (denied) return replyError(call, denied);
    (backend ? backend.defragment() : Promise.resolve()).then(
      () => call.respond({ header: server.header() }),
      (err) => replyError(call, err),
    );
  };

  const MoveLeader: UnaryHandler<MoveLeaderRequest, HeaderResponse> = (call) => {
    const target = BigInt(call.request.targetID || '0');
    server.transferLeadership(target).then(
      () => call.respond({ header: server.header() }),
      (err) => replyError(call, err),
    );
  };

  const Snapshot: ServerStreamHandler<object, SnapshotResponse> = (call) => {
    const denied = authorizeMaintenance(server, call); // root only, as etcd 3.4
    if (denied) return call.fail(denied);
    if (!backend || !spoolDir) return call.fail(unimplemented('etcdserverpb.Maintenance/Snapshot', 'unavailable on a member without a durable backend'));
    if (snapshotStreams >= SNAPSHOT_STREAMS_MAX) return call.fail(Errors.TooManyRequests);
    snapshotStreams++;
    const out = new SnapshotSender(call);
    streamSnapshot(server, out, spoolDir)
      .catch((err) => {
        if (!call.cancelled) call.fail(err instanceof EtcdError ? err : internalStatus('quorumkv: snapshot failed', err));
      })
      .finally(() => snapshotStreams--);
    return out;
  };

  return { Status, HashKV, Hash, Alarm, Defragment, MoveLeader, Snapshot };
}

/** etcd's dbSize is bolt's file size, the number its quota is checked against; ours is the
 *  backend's allocatedBytes (the quota's measure, see storage/backend/backend.ts), and dbSizeInUse
 *  its live bytes. The LevelDB files themselves are usually smaller (Snappy compression). */
async function dbSizes(server: Server): Promise<{ dbSize: number; dbSizeInUse: number }> {
  const backend = server.durableBackend;
  if (!backend) return { dbSize: server.store.sizeBytes, dbSizeInUse: server.store.sizeBytes };
  return { dbSize: backend.allocatedBytes, dbSizeInUse: Math.min(backend.liveBytes, backend.allocatedBytes) };
}

async function removeStaleSpoolFiles(dir: string): Promise<void> {
  // The data dir is locked by this process: a spool file from an earlier process is garbage.
  for (const f of await fs.readdir(dir)) {
    if (f.startsWith(SPOOL_PREFIX) && f.endsWith(SPOOL_SUFFIX) && !f.startsWith(`${SPOOL_PREFIX}${process.pid}.`)) {
      await fs.rm(path.join(dir, f), { force: true });
    }
  }
}

let spoolSeq = 0;

/** A backend snapshot as etcd's snapshot file, in pieces: `fileBytes` in all (payload, padding and
 *  SHA-256), `revision` the store's. `close` (idempotent; also run when `chunks` ends) releases
 *  the spool file: the caller calls it whether or not it read the chunks. */
export interface SnapshotFileStream {
  revision: number;
  fileBytes: number;
  chunks: AsyncGenerator<Buffer>;
  close: () => Promise<void>;
}

/**
 * The backend snapshot as etcd's snapshot file. The backend snapshot is first spooled to a file
 * next to the backend: that gives the exact size (remaining_bytes counts down to 0 as etcd's
 * does), lets the LevelDB snapshot and iterator go as soon as the copy is made instead of living
 * as long as the slowest client, and checks the framing before a byte is sent. Then the file goes
 * out in chunks of `chunkBytes` with the padding and the SHA-256 (storage/snapshot_file.ts).
 * `gone()` true stops the conversion (undefined is returned). (Building the file as it is sent,
 * with a first layout-only walk of the records for bbolt's meta pages, was measured and not
 * kept: docs/performance.md, "Snapshot save at scale".)
 */
export async function openSnapshotFileStream(backend: Backend, spoolDir: string, chunkBytes: number, gone: () => boolean): Promise<SnapshotFileStream | undefined> {
  const spool = path.join(spoolDir, `${SPOOL_PREFIX}${process.pid}.${spoolSeq++}${SPOOL_SUFFIX}`);
  const fh = await fs.open(spool, 'wx+', 0o600);
  let released: Promise<void> | undefined;
  const release = () =>
    (released ??= (async () => {
      await fh.close();
      await fs.rm(spool, { force: true });
    })());
  let written: EtcdDbWritten;
  try {
    // The spool file is an etcd (bbolt) database built from the backend snapshot's records: the
    // file etcdctl's snapshot status and restore read (storage/backend/etcd_db.ts).
    // The records as LevelDB reads them (not through the backend's stream encoding, whose
    // framing and checksum guard a transfer between processes, and cost a parse, a CRC pass and
    // copies of every byte here).
    const snap = await backend.openSnapshotRecords();
    try {
      const sink = bufferedSink(async (bytes, position) => {
        if (gone()) throw new SnapshotCancelled();
        await writeAll(fh, bytes, position);
      });
      written = await writeEtcdDb(snap.records, snap.meta, sink);
      await sink.flush();
    } finally {
      await snap.records.return(undefined);
      await snap.close();
    }
  } catch (err) {
    await release();
    if (err instanceof SnapshotCancelled) return undefined;
    throw err;
  }
  async function* chunks(): AsyncGenerator<Buffer> {
    try {
      yield* snapshotFileChunks(readSpool(fh, written.bytes), chunkBytes);
    } finally {
      await release();
    }
  }
  return { revision: written.revision, fileBytes: snapshotFileBytes(written.bytes), chunks: chunks(), close: release };
}

/** Serves one Snapshot stream (openSnapshotFileStream's chunks), honouring gRPC flow control. */
async function streamSnapshot(server: Server, out: SnapshotSender, spoolDir: string): Promise<void> {
  const file = await openSnapshotFileStream(server.durableBackend!, spoolDir, SNAPSHOT_CHUNK_BYTES, () => out.gone);
  if (!file) return;
  try {
    if (out.gone) return;
    const header: ResponseHeader = server.header(Math.max(1, file.revision)); // as Backend.load: an empty store is at 1
    let sent = 0;
    // The spool is read ahead and a write the transport takes resolves at once: without a turn
    // now and then, the loop would hash and frame chunk after chunk in microtasks.
    let sliceStart = LOOP_CLOCK.now();
    for await (const blob of file.chunks) {
      if (LOOP_CLOCK.now() - sliceStart >= SEND_SLICE_MS_MAX) {
        await LOOP_CLOCK.yieldToLoop();
        sliceStart = LOOP_CLOCK.now();
      }
      sent += blob.length;
      if (!(await out.send({ header, remaining_bytes: file.fileBytes - sent, blob, version: STATUS_VERSION }))) return;
    }
    out.end();
  } finally {
    await file.chunks.return(undefined);
    await file.close();
  }
}

/** The sending side of one Snapshot call, and its listener: a write that finds the transport's
 *  buffer full waits for drain(); closed() (the call is over: the client went away) stops the
 *  stream. */
class SnapshotSender implements StreamListener {
  gone = false;
  private waiting: ((ok: boolean) => void) | undefined;

  constructor(private readonly call: ServerStreamCall<object, SnapshotResponse>) {}

  /** Writes one response; resolves once another may follow (true), or false if the client went
   *  away. */
  send(msg: SnapshotResponse): Promise<boolean> {
    if (this.gone) return Promise.resolve(false);
    if (this.call.write(msg)) return Promise.resolve(true);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  end(): void {
    if (!this.gone) this.call.end();
  }

  drain(): void {
    this.wake(true);
  }

  closed(): void {
    this.gone = true;
    this.wake(false);
  }

  private wake(ok: boolean): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.(ok);
  }
}

class SnapshotCancelled extends Error {}

async function writeAll(fh: fs.FileHandle, buf: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) off += (await fh.write(buf, off, buf.length - off, position + off)).bytesWritten;
}

/** Bytes per read of the spool file (cut into SNAPSHOT_CHUNK_BYTES messages without a copy). */
const SPOOL_READ_BYTES = 4 * SNAPSHOT_CHUNK_BYTES;

/** The spool file's first `bytes` bytes, in pieces of SPOOL_READ_BYTES: the next piece is read
 *  while the consumer sends this one (two pieces held at most). A read that fails while nobody
 *  awaits it is caught here and rethrown when the loop gets to it. */
async function* readSpool(fh: fs.FileHandle, bytes: number): AsyncGenerator<Buffer> {
  const read = (position: number): Promise<Buffer> => {
    const piece = Buffer.allocUnsafe(Math.min(SPOOL_READ_BYTES, bytes - position));
    const p = readAll(fh, piece, position).then(() => piece);
    p.catch(() => undefined);
    return p;
  };
  let next = bytes > 0 ? read(0) : undefined;
  for (let position = 0; next !== undefined; ) {
    const piece = await next;
    position += piece.length;
    next = position < bytes ? read(position) : undefined;
    yield piece;
  }
}

async function readAll(fh: fs.FileHandle, into: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < into.length) {
    const { bytesRead } = await fh.read(into, off, into.length - off, position + off);
    if (bytesRead === 0) throw new Error('snapshot spool file shorter than written');
    off += bytesRead;
  }
}
