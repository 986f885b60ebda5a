// Raft snapshots of one member, all three halves of them:
//
//   take     every --snapshot-count applied entries: commit the backend durably at that index,
//            then let Raft record a snapshot marker there and release the WAL segments before it
//            (minus SNAPSHOT_CATCH_UP_ENTRIES for followers slightly behind). The snapshot's data
//            stays empty: the backend is the snapshot.
//   send     a follower behind the leader's compaction point gets the backend as it is when sent
//            (a consistent LevelDB view), with the metadata rewritten to the index and term that
//            view is at (etcd's "merged snapshot").
//   install  a snapshot from the leader is restored into member/backend.incoming as its chunks arrive,
//            its versions loaded into a new store as they are written (values spilled to a second
//            spill directory, so the old store stays readable until the swap), verified (record
//            count and CRC in the stream's trailer), swapped in for member/backend, handed to the
//            server (Server.installState), and only then to Raft; finishInterruptedSnapshotInstall
//            completes a swap a crash cut short.
//
// Both directions stream: the sender reads a LevelDB snapshot in chunks as the transport asks for
// them (its window and rate limit bound what is in memory and on the wire), and the receiver
// writes each chunk's records as one LevelDB batch before it asks for the next. Neither side holds
// more than a few chunks, whatever the size of the state. A second snapshot arriving while one
// installs waits for it and is then judged against the new state (usually: nothing left to do).
import fs from 'node:fs';
import path from 'node:path';
import { syncDirSync } from '../util/fsync_dir';
import { removeInBackground, removeLeftovers } from '../util/remove_later';
import type { Logger } from '../util/log';
import type { Message } from '../raft';
import type { SnapshotSource } from '../transport';
import { Backend, KvRecordLoader, type LoadedState } from '../storage/backend/backend';
import { restoreSnapshotInto, type RestoreTimings } from '../storage/backend/snapshot';
import { SpillFile } from '../storage/spill_file';
import { membershipFromRecords } from './membership';
import type { RaftNode, SnapshotKeep } from './raft_node';
import type { Server } from './server';

/** Entries kept in the log behind a snapshot, for followers that are slightly behind (etcd's
 *  snapshot catch-up entries). */
export const SNAPSHOT_CATCH_UP_ENTRIES = 5000;
/** ... and at most this many bytes of them. */
export const SNAPSHOT_CATCH_UP_BYTES = 32 * 1024 * 1024;
/** A snapshot is also taken once the entries applied since the last one hold this many bytes,
 *  whatever --snapshot-count says. The Raft log between two snapshots lives in memory (as in etcd),
 *  so with large entries (Txns of many 4 KiB puts, 1 MiB values) a count alone let it grow to
 *  gigabytes: 3,000 Txns of 64 × 4 KiB took one member to 1.27 GB of RSS. */
export const SNAPSHOT_BYTES = 64 * 1024 * 1024;

/** member/backend is replaced by renaming these over it (see installData). */
const BACKEND_DIR = 'backend';
const INCOMING_DIR = 'backend.incoming';
const OLD_DIR = 'backend.old';
/** The spill directories a store's values go to (storage/spill_file.ts): the member starts with
 *  the first; an install builds its new store on the other, and the two alternate. */
const SPILL_DIRS = ['spill', 'spill.1'] as const;
/** Snapshots that may wait, one after another, for the install in progress. */
const INSTALL_WAITS_MAX = 4;

export interface SnapshotterOptions {
  server: () => Server;
  raftNode: () => RaftNode;
  /** <data-dir>/member: holds backend/ and, during an install, backend.incoming/ and backend.old/. */
  memberDir: string;
  log: Logger;
  /** --snapshot-count: applied entries between two snapshots. */
  snapshotCount: number;
  /** Applied entry bytes between two snapshots (SNAPSHOT_BYTES unless a test sets it). */
  snapshotBytes?: number;
  /** What a snapshot keeps of the log behind it (SNAPSHOT_CATCH_UP_ENTRIES and _BYTES unless a
   *  test sets it). */
  catchUp?: SnapshotKeep;
  /** The index the backend was at when the member started: entries before it are in the backend. */
  appliedIndex: number;
  /** Called after a snapshot from the leader replaced the applied state (leases, watchers). */
  onStateInstalled: (loaded: LoadedState) => void;
  /** --hot-value-bytes (undefined: values stay in the heap): an installed store spills too. */
  hotValueBytes?: number;
}

export class Snapshotter {
  /** The last snapshot taken or installed; the next is due snapshotCount entries after it. */
  private lastSnapshotIndex: number;
  /** Bytes of the entries applied since the last snapshot was started (or installed). */
  private appliedBytes = 0;
  private readonly snapshotBytes: number;
  private readonly catchUp: SnapshotKeep;
  private taking = false;
  /** The install in progress, if any (settles when it ended, either way). */
  private installing: Promise<void> | undefined;
  /** Index into SPILL_DIRS of the current store's spill. */
  private spillDir = 0;

  constructor(private readonly o: SnapshotterOptions) {
    this.lastSnapshotIndex = o.appliedIndex;
    this.snapshotBytes = o.snapshotBytes ?? SNAPSHOT_BYTES;
    this.catchUp = o.catchUp ?? { entries: SNAPSHOT_CATCH_UP_ENTRIES, bytes: SNAPSHOT_CATCH_UP_BYTES };
  }

  // ---- take -------------------------------------------------------------------------------------

  /** The apply loop applied entries up to `index` (term `term`), `bytes` of them (Raft's entry
   *  size): take a snapshot if one is due, by count or by bytes. */
  onApplied(index: number, term: number, bytes: number): void {
    this.appliedBytes += bytes;
    if (this.taking) return;
    if (index - this.lastSnapshotIndex < this.o.snapshotCount && this.appliedBytes < this.snapshotBytes) return;
    const server = this.o.server();
    const backend = server.durableBackend;
    if (!backend) return; // nothing durable to release WAL segments into
    this.taking = true;
    this.appliedBytes = 0;
    // The backend must hold the state at `index` durably before the WAL may forget the entries.
    backend
      .commit(index, term, true)
      .then(() => this.o.raftNode().snapshot(index, this.catchUp, server.membership.confState()))
      .then(() => {
        this.lastSnapshotIndex = index;
        this.o.log.info('snapshot taken; older WAL segments released', { index, term });
      })
      .catch((err) => this.o.log.error('snapshot failed', { index, term, error: String(err) }))
      .finally(() => (this.taking = false));
  }

  // ---- send -------------------------------------------------------------------------------------

  /** The data of an outgoing MsgSnap (the transport's getSnapshotData): the backend as it is now,
   *  streamed from a LevelDB snapshot as the transport reads it (its size is known only at the
   *  end); `m.snapshot`'s metadata is set to the index and term of that view. */
  async sendData(m: Message): Promise<SnapshotSource> {
    const server = this.o.server();
    const backend = server.durableBackend;
    if (!backend) throw new Error('no backend to snapshot');
    const { meta, chunks, close } = await backend.openSnapshot();
    m.snapshot = {
      data: new Uint8Array(0),
      metadata: { index: meta.appliedIndex, term: meta.appliedTerm, confState: server.membership.confState() },
    };
    this.o.log.info('streaming snapshot to a follower', { to: m.to.toString(16), index: meta.appliedIndex, term: meta.appliedTerm });
    return { chunks, close };
  }

  // ---- install ----------------------------------------------------------------------------------

  /** A snapshot from the leader (the transport's onSnapshot): write it as a new backend as it
   *  arrives, swap it in, load it, then let Raft take it. A snapshot no newer than what is
   *  committed is ignored; one arriving during an install waits for it (coalesced: it is then
   *  usually stale), instead of failing and being sent again from its first byte. */
  async install(m: Message, data: AsyncIterable<Buffer>): Promise<void> {
    const raft = this.o.raftNode();
    const index = m.snapshot?.metadata.index ?? 0;
    for (let waits = 0; this.installing !== undefined; waits++) {
      if (waits === INSTALL_WAITS_MAX) throw new Error('a snapshot install is already in progress');
      this.o.log.info('snapshot waits for the install in progress', { from: m.from.toString(16), index });
      await this.installing.catch(() => undefined);
    }
    if (index <= raft.committedIndex) {
      this.o.log.info('ignored snapshot: not newer than the committed index', { from: m.from.toString(16), index, committed: raft.committedIndex });
      return;
    }
    const run = this.installNow(m, data);
    this.installing = run;
    try {
      await run;
    } finally {
      this.installing = undefined;
    }
  }

  private async installNow(m: Message, data: AsyncIterable<Buffer>): Promise<void> {
    const raft = this.o.raftNode();
    const startedMs = Date.now();
    const installed = await this.installData(data, raft.committedIndex);
    if (installed === undefined) return;
    const { backend, loaded } = installed;
    const membership = membershipFromRecords(loaded.members, loaded.removed);
    await this.o.server().installState(backend, loaded, membership);
    this.lastSnapshotIndex = loaded.appliedIndex;
    this.appliedBytes = 0;
    this.o.onStateInstalled(loaded);
    const accepted = raft.installSnapshot(m.from, m.term, {
      data: new Uint8Array(0),
      metadata: { index: loaded.appliedIndex, term: loaded.appliedTerm, confState: membership.confState() },
    });
    this.o.log.info('installed snapshot from the leader', {
      from: m.from.toString(16),
      index: loaded.appliedIndex,
      term: loaded.appliedTerm,
      accepted,
      keys: loaded.store.keyCount,
      took_ms: Date.now() - startedMs,
    });
  }

  /**
   * Restores the stream into backend.incoming and loads its versions into a new store as they are
   * written (the member's own backend and store stay open and current meanwhile: the apply loop may
   * still commit to them), then closes the old backend (LevelDB locks its directory) and swaps the
   * new one in by two renames. Returns the new backend, loaded, or undefined if the stream turned
   * out to be no newer than `committedIndex`. A crash before the renames leaves the old backend
   * (backend.incoming is removed at start); a crash between them is completed at the next start
   * (finishInterruptedSnapshotInstall); the WAL learns of the new state only after both.
   */
  private async installData(data: AsyncIterable<Buffer>, committedIndex: number): Promise<{ backend: Backend; loaded: LoadedState } | undefined> {
    const dir = this.o.memberDir;
    const incoming = path.join(dir, INCOMING_DIR);
    void removeInBackground(incoming, this.o.log);
    const startedMs = Date.now();
    // The new store's values go to the other spill directory while it loads: the current store
    // (still serving reads until installState) keeps its own.
    const nextSpillDir = 1 - this.spillDir;
    const spill =
      this.o.hotValueBytes === undefined
        ? undefined
        : { spill: SpillFile.open(path.join(dir, SPILL_DIRS[nextSpillDir]), this.o.log), hotValueBytes: this.o.hotValueBytes };
    // Loading as the records go by saves a second pass over the new database (a few seconds per
    // 100 MB here) and costs the receiver no wait: it waits for the stream most of the time.
    const loader = new KvRecordLoader(spill);
    // The stream's checksum is verified at its end, after its records were loaded: a load that
    // fails on them (an assertion of the store) is judged then. A corrupt stream is a stream error;
    // a verified one that breaks the store's invariants is the failure it is, rethrown as is.
    let loadError: Error | undefined;
    const load = (batch: [Buffer, Buffer][]): void => {
      if (loadError !== undefined) return;
      try {
        loader.add(batch);
      } catch (err) {
        loadError = err instanceof Error ? err : new Error(String(err));
      }
    };
    let meta;
    const timings: RestoreTimings = { inputMs: 0, writeMs: 0, loadMs: 0, batches: 0 };
    try {
      meta = await restoreSnapshotInto(incoming, data, timings, load);
    } catch (err) {
      // A broken or malformed stream: the current backend was never touched; drop the partial copy.
      if (loadError !== undefined) this.o.log.warn('the snapshot stream was broken; loading its records had failed before', { error: loadError.message });
      spill?.spill.close();
      void removeInBackground(incoming, this.o.log);
      throw err;
    }
    if (loadError !== undefined) {
      spill?.spill.close();
      void removeInBackground(incoming, this.o.log);
      throw loadError;
    }
    this.o.log.info('snapshot data written to a new backend and its versions loaded', {
      index: meta.appliedIndex,
      took_ms: Date.now() - startedMs,
      // Time waiting for the stream (the sender, the network, the parse, the load) vs in LevelDB's writes.
      input_ms: Math.round(timings.inputMs),
      write_ms: Math.round(timings.writeMs),
      // Of both: the main thread loading the versions into the new store (KvRecordLoader).
      load_ms: Math.round(timings.loadMs),
      batches: timings.batches,
    });
    if (meta.appliedIndex <= committedIndex) {
      spill?.spill.close();
      void removeInBackground(incoming, this.o.log);
      return undefined;
    }
    const restored = await Backend.open(incoming);
    let loaded: LoadedState;
    const loadStartedMs = Date.now();
    try {
      loaded = await restored.loadImported(loader);
    } catch (err) {
      spill?.spill.close();
      await restored.close().catch((e: unknown) => this.o.log.warn('closing a backend that failed to load', { error: String(e) }));
      void removeInBackground(incoming, this.o.log);
      throw err;
    }
    this.o.log.info('snapshot loaded into a new store; swapping it in', { index: meta.appliedIndex, took_ms: Date.now() - loadStartedMs });
    await this.o.server().durableBackend?.close();
    const backendDir = path.join(dir, BACKEND_DIR);
    const oldDir = path.join(dir, OLD_DIR);
    const backend = await restored.reopenAt(backendDir, () => {
      // The new backend's own entries (its tables, MANIFEST, CURRENT) are durable before it is
      // named `backend`, and the renames are durable before this returns: the WAL's snapshot
      // marker written after it must never survive a power loss that the swap did not (a
      // restart would find the old backend behind a WAL that starts after the snapshot).
      syncDirSync(incoming);
      void removeInBackground(oldDir, this.o.log);
      fs.renameSync(backendDir, oldDir);
      fs.renameSync(incoming, backendDir);
      syncDirSync(dir);
      // The replaced backend (as large as the state) goes in the background: rmSync of 3.2 GB of
      // tables stalled the loop ~2 s at the end of a 1.6 GB install.
      void removeInBackground(oldDir, this.o.log);
    });
    this.spillDir = nextSpillDir;
    return { backend, loaded };
  }
}

/** A snapshot install replaces member/backend by renaming member/backend.incoming over it; if a
 *  crash hit between the two renames, finish the job (the WAL's snapshot marker points at the new
 *  state only after both renames, see Snapshotter.installData). Anything else an install left
 *  behind is removed: a backend.incoming next to a backend is a snapshot cut short while it was
 *  received or loaded (never verified as a whole, so never used), a backend.old is the state the
 *  swap replaced. Called before the backend opens. */
export function finishInterruptedSnapshotInstall(memberDir: string, log: Logger): void {
  const backendDir = path.join(memberDir, BACKEND_DIR);
  const incoming = path.join(memberDir, INCOMING_DIR);
  const old = path.join(memberDir, OLD_DIR);
  // What removals in the background had not finished when the process ended (listed before the
  // removals below rename anything).
  void removeLeftovers(memberDir, log);
  if (!fs.existsSync(backendDir) && fs.existsSync(incoming)) {
    log.warn('completing a snapshot install that a crash interrupted between its two renames', { dir: memberDir });
    fs.renameSync(incoming, backendDir);
    syncDirSync(memberDir);
  }
  if (fs.existsSync(incoming)) {
    log.warn('removing a snapshot that a crash cut short while it was received or loaded; the member starts from its own backend', { dir: incoming });
    void removeInBackground(incoming, log);
  }
  if (fs.existsSync(old)) {
    log.info('removing the backend a completed snapshot install replaced', { dir: old });
    void removeInBackground(old, log);
  }
  // The spill is a cache recreated at every start (in SPILL_DIRS[0]); an install's is left over.
  void removeInBackground(path.join(memberDir, SPILL_DIRS[1]), log);
}
