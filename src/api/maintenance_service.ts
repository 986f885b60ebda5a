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
import { SnapshotFileWriter } from '../storage/snapshot_file';
import { writeEtcdDb } from '../storage/etcddb/etcd_db';
import { LOOP_CLOCK } from '../util/slice_clock';
import { assert } from '../util/assert';
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
/** Snapshot streams served at once; each holds a LevelDB snapshot (and its files) while it lasts. */
const SNAPSHOT_STREAMS_MAX = 2;
/** Spool files of earlier versions, which built the whole file before sending it:
 *  `<data-dir>/member/snapshot-stream.<pid>.<seq>.tmp`; one left by a crash is removed at start. */
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
    if (!backend) return call.fail(unimplemented('etcdserverpb.Maintenance/Snapshot', 'unavailable on a member without a durable backend'));
    if (snapshotStreams >= SNAPSHOT_STREAMS_MAX) return call.fail(Errors.TooManyRequests);
    snapshotStreams++;
    const out = new SnapshotSender(call);
    streamSnapshot(server, out)
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

/** What a consumer of a snapshot file learns before its first chunk. */
export interface SnapshotFileInfo {
  /** The store's revision in the snapshot. */
  revision: number;
  /** The file's size: payload, padding and SHA-256. */
  fileBytes: number;
}

/**
 * The backend snapshot as etcd's snapshot file, delivered in chunks of `chunkBytes` (then the
 * SHA-256 on its own) as it is built: an etcd (bbolt) database, the file etcdctl's snapshot
 * status and restore read (storage/etcddb/etcd_db.ts), with the padding and the checksum
 * (storage/snapshot_file.ts). bbolt's meta pages come first in the file and name the root page
 * and the page count, known only once every page is placed: the records are walked twice in one
 * LevelDB snapshot, first to lay the file out (sizes only, nothing built), then to build and
 * deliver it in page order. So nothing the size of the state is held or written before the first
 * byte goes out, and the size is exact from the start (remaining_bytes counts down to 0 as
 * etcd's). `deliver` must be done with its chunk when its promise settles (the buffer is reused).
 * The LevelDB snapshot lives until the last chunk is delivered (as etcd's read transaction does).
 * `gone()` true stops the work; then false is returned.
 */
export async function writeSnapshotFile(
  backend: Backend,
  chunkBytes: number,
  gone: () => boolean,
  onInfo: (info: SnapshotFileInfo) => void,
  deliver: (chunk: Buffer) => Promise<void>,
): Promise<boolean> {
  const view = await backend.openSnapshotView();
  // The records as LevelDB reads them (not through the backend's stream encoding, whose
  // framing and checksum guard a transfer between processes, and cost a parse, a CRC pass and
  // copies of every byte here).
  async function* walk(): AsyncGenerator<[Buffer, Buffer][]> {
    for await (const batch of view.records()) {
      if (gone()) throw new SnapshotCancelled();
      yield batch;
    }
  }
  try {
    const plan = await writeEtcdDb(walk(), view.meta, undefined);
    const file = new SnapshotFileWriter(plan.bytes, chunkBytes, async (chunk) => {
      if (gone()) throw new SnapshotCancelled();
      await deliver(chunk);
    });
    onInfo({ revision: plan.revision, fileBytes: file.fileBytes });
    let position = 0;
    // Chunks often go out without waiting (the transport takes them): a turn now and then, also
    // while the branch pages are written after the last record.
    let sliceStart = LOOP_CLOCK.now();
    const written = await writeEtcdDb(
      walk(),
      view.meta,
      async (bytes, at) => {
        assert(at === position, 'snapshot save: a planned bbolt file is written in page order');
        position += bytes.length;
        await file.write(bytes);
        if (LOOP_CLOCK.now() - sliceStart >= SEND_SLICE_MS_MAX) {
          await LOOP_CLOCK.yieldToLoop();
          sliceStart = LOOP_CLOCK.now();
        }
      },
      LOOP_CLOCK,
      plan.layout,
    );
    assert(written.bytes === plan.bytes && written.revision === plan.revision, 'snapshot save: the second walk of one LevelDB snapshot converts as the first');
    await file.finish();
    return true;
  } catch (err) {
    if (err instanceof SnapshotCancelled) return false;
    throw err;
  } finally {
    await view.close();
  }
}

/** Serves one Snapshot stream (writeSnapshotFile's chunks), honouring gRPC flow control. */
async function streamSnapshot(server: Server, out: SnapshotSender): Promise<void> {
  let header: ResponseHeader | undefined;
  let fileBytes = 0;
  let sent = 0;
  const done = await writeSnapshotFile(
    server.durableBackend!,
    SNAPSHOT_CHUNK_BYTES,
    () => out.gone,
    (info) => {
      header = server.header(Math.max(1, info.revision)); // as Backend.load: an empty store is at 1
      fileBytes = info.fileBytes;
    },
    async (blob) => {
      sent += blob.length;
      // send() serializes the message at once (the blob is copied): the buffer may be reused.
      if (!(await out.send({ header: header!, remaining_bytes: fileBytes - sent, blob, version: STATUS_VERSION }))) throw new SnapshotCancelled();
    },
  );
  if (done) out.end();
}

/**
 * Saves the backend's snapshot file to `file` as `etcdctl snapshot save` does with the stream
 * (written in order to `file`.part, fsynced, renamed into place), without the network: the
 * benchmark of the save's phases (scripts/bench-snapshot-save.ts) and tests. Returns its size.
 */
export async function saveSnapshotToFile(backend: Backend, file: string): Promise<number> {
  const part = `${file}.part`;
  const fh = await fs.open(part, 'w', 0o600);
  let bytes = 0;
  let announced = -1;
  // As a client receives while it writes: each chunk is copied and its write left in flight while
  // the next is built (two buffers; a failed write is thrown at the next chunk or at the end).
  const buffers = [Buffer.allocUnsafeSlow(SNAPSHOT_CHUNK_BYTES), Buffer.allocUnsafeSlow(SNAPSHOT_CHUNK_BYTES)];
  const inFlight: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  let cur = 0;
  try {
    const done = await writeSnapshotFile(
      backend,
      SNAPSHOT_CHUNK_BYTES,
      () => false,
      (info) => (announced = info.fileBytes),
      async (chunk) => {
        await inFlight[cur]!;
        const copy = buffers[cur]!.subarray(0, chunk.copy(buffers[cur]!));
        const p = writeAll(fh, copy, bytes);
        p.catch(() => undefined); // awaited below
        inFlight[cur] = p;
        bytes += chunk.length;
        cur ^= 1;
      },
    );
    assert(done, 'a save nobody cancels completes');
    await Promise.all(inFlight);
    await fh.sync();
  } finally {
    await Promise.allSettled(inFlight);
    await fh.close();
  }
  assert(bytes === announced, 'snapshot file: the size announced is the size written');
  await fs.rename(part, file);
  return bytes;
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
