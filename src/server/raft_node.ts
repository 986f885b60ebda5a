// RaftNode (etcd's raftNode): the ReplicatedLog of a member — the Raft core (src/raft) driven by timers and the
// Ready loop, with every Ready's entries and hard state made durable in the WAL before anything
// that depends on them (acknowledgements, applying) happens.
//
// The Ready loop (one at a time, never overlapping):
//   1. messages go into the peers' sockets (they may precede this Ready's fsync: Raft holds back
//      the ones that depend on it until advance()), except a Ready's bare commit notices while
//      this member's clients wait: those follow the clients' answers, in the same turn;
//   2. entries + hard state: one durable WAL write, O_DSYNC (group commit: every proposal that
//      arrived while the previous fsync ran is in this batch), handed to the thread pool; while it
//      runs, committed entries already durable here are applied;
//   3. entries are appended to the in-memory Raft storage;
//   4. the rest of the committed entries go to the apply path; ReadIndex results are served;
//   5. advance().
// A WAL failure stops the loop for good: nothing after it is acknowledged, and waiting clients get
// an error. An I/O error (EIO, or anything but lack of space) then exits the process, as etcd's
// raftNode panics when it cannot save a Ready: the file's state is unknown (the kernel may have
// dropped the pages it failed to write), so the only safe way on is a restart that recovers the WAL
// from what is really on disk (truncating a torn tail), and a supervisor can only restart a member
// that exited. Out of space (ENOSPC, EDQUOT) the member stays up, refusing writes and serving
// reads, until an operator frees space and restarts it: what is on disk is intact.
import { assert } from '../util/assert';
import { EtcdError, GrpcCode } from '../util/errors';
import type { Logger } from '../util/log';
import { RawNode, MemoryStorage, EntryType, StateRole, decodeConfChange, MessageType } from '../raft';
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, Ready, Snapshot } from '../raft';
import type { LogEntry, RaftStatus, ReplicatedLog } from './replicated_log';
import { Errors } from '../util/errors';
import { isWalOutOfSpace, walErrnoCode } from '../storage/wal';
import { LAT_TRACE, latStamp } from '../util/lat_trace';

/** Exit status of a member whose WAL failed with an I/O error (sysexits' EX_IOERR). */
export const WAL_IO_ERROR_EXIT_CODE = 74;

/** What a snapshot leaves of the log behind it, for followers slightly behind: at most this many
 *  entries, and at most this many bytes of them (Raft's entry size). */
export interface SnapshotKeep {
  entries: number;
  bytes: number;
}

/** What RaftNode needs from the WAL (src/storage/wal). */
export interface WalLike {
  save(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void>;
  saveSnapshot(snap: { index: number; term: number }): Promise<void>;
  releaseTo(index: number): Promise<void>;
  close(): Promise<void>;
}

/** State recovered from disk at start. */
export interface RecoveredRaftState {
  hardState: HardState;
  snapshot: { index: number; term: number } | undefined;
  entries: Entry[];
  /** Applied index of the backend: entries up to here are already in the state machine. */
  appliedIndex: number;
  /** Term of the entry at appliedIndex (stored with it in the backend). */
  appliedTerm?: number;
}

export interface RaftNodeOptions {
  id: NodeId;
  confState: ConfState;
  wal: WalLike;
  recovered: RecoveredRaftState;
  log: Logger;
  /** Milliseconds per Raft tick (etcd's --heartbeat-interval). */
  tickMs: number;
  /** Election timeout in ticks (etcd's --election-timeout / --heartbeat-interval). */
  electionTicks: number;
  /** Sends messages to peers (none for a single member). */
  send?: (msgs: Message[]) => void;
  seed?: number;
  /** Called (after the failure is logged and reported) when the WAL failed with an I/O error;
   *  default: exit the process with WAL_IO_ERROR_EXIT_CODE. Tests in one process replace it. */
  onWalIoError?: (err: unknown) => void;
}

export class RaftNode implements ReplicatedLog {
  readonly node: RawNode;
  readonly storage: MemoryStorage;
  private readonly wal: WalLike;
  private readonly log: Logger;
  private commitHandler: ((entries: readonly LogEntry[]) => void) | undefined;
  private clientsWaiting: () => boolean = () => false;
  private leadershipHandlers: ((isLeader: boolean) => void)[] = [];
  private failureHandlers: ((err: EtcdError) => void)[] = [];
  private readonly ticker: NodeJS.Timeout;
  /** Proposals of this event-loop turn, handed to Raft together (one MsgProp, one batch). */
  private proposals: Uint8Array[] = [];
  /** Proposals made while there is no leader: kept until one is known. */
  private waitingForLeader: Uint8Array[] = [];
  private scheduled = false;
  private running = false;
  private closed = false;
  private failed: EtcdError | undefined;
  private leader = false;
  private currentTerm = 0;
  private lastIndex = 0;
  private readonly send: (msgs: Message[]) => void;
  private readonly onWalIoError: (err: unknown) => void;
  private appliedIndex = 0;
  /** Linearizable reads waiting for the next ReadIndex round (all share it). */
  private readsForNextRound: (() => void)[] = [];
  /** ReadIndex rounds in flight, by ctx; `index` is set once Raft answered. */
  private readRounds = new Map<string, { waiters: (() => void)[]; index: number; sentAtTick: number }>();
  /** ReadIndex rounds answered, waiting for the apply loop to reach their index. */
  private readsWaitingApply: { index: number; waiters: (() => void)[] }[] = [];
  private readSeq = 0;
  /** The commit index recovered at start, until the apply loop reaches it (then logged once). */
  private recoveredCommit: { index: number; fromIndex: number; sinceMs: number } | undefined;
  /** Commit notices held for the next check phase (sendLater). */
  private laterMsgs: Message[] = [];
  private pendingSnapshots: { index: number; keep: SnapshotKeep; confState: ConfState; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private ticks = 0;
  /** The tick at which each peer was last heard from (any message): isActive. */
  private readonly heardAtTick = new Map<NodeId, number>();
  private readonly electionTicks: number;
  /** The hard state last written to the WAL, and a newer commit-only one not written yet. */
  private walHardState: HardState;
  private unsavedHardState: HardState | undefined;
  /** Metrics hooks: every message received from a peer; the leader as each soft state reports it. */
  observer: { received?(m: Message): void; leader?(lead: NodeId): void } = {};

  constructor(opts: RaftNodeOptions) {
    this.wal = opts.wal;
    this.electionTicks = opts.electionTicks;
    this.log = opts.log;
    this.send = opts.send ?? (() => undefined);
    this.onWalIoError = opts.onWalIoError ?? (() => process.exit(WAL_IO_ERROR_EXIT_CODE));
    const rec = opts.recovered;
    this.storage = new MemoryStorage(opts.confState);
    if (rec.snapshot) {
      assert(rec.appliedIndex >= rec.snapshot.index, 'backend is behind the WAL snapshot marker');
      this.storage.applySnapshot({ data: new Uint8Array(0), metadata: { index: rec.snapshot.index, term: rec.snapshot.term, confState: opts.confState } });
    }
    let entries = rec.entries;
    if (rec.appliedIndex > (rec.snapshot?.index ?? 0) && rec.appliedIndex > (entries.length > 0 ? entries[entries.length - 1]!.index : 0)) {
      // The backend is ahead of the whole log: a snapshot from the leader was installed and the
      // member crashed before its WAL marker was written. The backend's state is the snapshot.
      assert(rec.appliedTerm !== undefined && rec.appliedTerm > 0, 'backend ahead of the WAL without an applied term');
      this.storage.applySnapshot({ data: new Uint8Array(0), metadata: { index: rec.appliedIndex, term: rec.appliedTerm, confState: opts.confState } });
      entries = [];
    }
    if (entries.length > 0) this.storage.append(entries);
    const last = this.storage.lastIndex();
    // Every WAL batch is fsynced, so the backend (written after the WAL) should never be ahead of
    // the saved commit index; if it is (a backend restored from elsewhere), everything it applied
    // was committed, so the commit index is at least that.
    const commit = Math.min(Math.max(rec.hardState.commit, rec.appliedIndex), last);
    assert(rec.appliedIndex <= last, `backend applied index ${rec.appliedIndex} is beyond the WAL's last index ${last}`);
    this.storage.setHardState({ ...rec.hardState, commit });
    this.currentTerm = rec.hardState.term;
    this.walHardState = rec.hardState;
    this.lastIndex = last;
    this.appliedIndex = rec.appliedIndex;
    this.recoveredCommit = { index: commit, fromIndex: rec.appliedIndex, sinceMs: performance.now() };
    this.logRecoveredApplied(); // nothing to replay
    this.node = new RawNode(
      { id: opts.id, electionTick: opts.electionTicks, heartbeatTick: 1, preVote: true, checkQuorum: true, applied: rec.appliedIndex, seed: opts.seed ?? Number(opts.id & 0xffffffffn) },
      this.storage,
    );
    this.ticker = setInterval(() => this.onTick(), opts.tickMs);
    // A lone voter need not wait an election timeout to lead.
    if (opts.confState.voters.length === 1 && opts.confState.voters[0] === opts.id) this.node.campaign();
    this.schedule();
  }

  get term(): number {
    return this.currentTerm;
  }

  isLeader(): boolean {
    return this.leader;
  }

  isLearner(): boolean {
    return this.node.isLearner();
  }

  /** The leader this member follows, 0 if none (cheap: asked on every require-leader request). */
  get leaderId(): NodeId {
    return this.node.lead;
  }

  status(): RaftStatus {
    const n = this.node;
    return { leader: n.lead, term: n.term, lastIndex: this.lastIndex, commit: n.committed, isLearner: n.isLearner() };
  }

  /** etcd's MoveLeader: only the leader may start it; resolves once `target` is the leader. */
  async transferLeadership(target: NodeId, timeoutMs: number): Promise<void> {
    if (!this.leader) throw Errors.NotLeader;
    if (target === this.node.id) return;
    if (!this.node.hasMember(target)) throw Errors.BadLeaderTransferee;
    this.node.transferLeader(target);
    this.schedule();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      if (this.node.lead === target) return;
    }
    throw Errors.Timeout;
  }

  onLeadershipChange(handler: (isLeader: boolean) => void): void {
    this.leadershipHandlers.push(handler);
  }

  /** Called once if the log fails for good (a WAL write or fsync error). */
  onFailure(handler: (err: EtcdError) => void): void {
    this.failureHandlers.push(handler);
  }

  onCommit(handler: (entries: readonly LogEntry[]) => void, waiting?: () => boolean): void {
    this.commitHandler = handler;
    this.clientsWaiting = waiting ?? (() => false);
  }

  propose(data: Uint8Array): void {
    assert(!this.closed, 'propose on a closed log');
    if (this.failed) return;
    if (LAT_TRACE) latStamp('prop');
    this.proposals.push(data);
    this.schedule();
  }

  /** Resolves when a read served now from the local store is linearizable: this member's leader
   *  confirmed, with a quorum round in its current term, a commit index that the local apply loop
   *  has since reached (Raft's ReadIndex). Reads arriving in the same event-loop turn share one
   *  round. */
  linearizableRead(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.readsForNextRound.push(resolve);
      this.schedule();
    });
  }

  reportUnreachable(id: NodeId): void {
    if (this.closed || this.failed) return;
    this.node.reportUnreachable(id);
    this.schedule();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.closed || this.failed) return;
    this.node.reportSnapshot(id, ok);
    this.schedule();
  }

  /** Highest index known committed (for deciding whether a received snapshot is stale). */
  get committedIndex(): number {
    return this.node.committed;
  }

  /** Proposes a membership change (one at a time: Raft drops a second one while one is pending). */
  proposeConfChange(cc: ConfChange): void {
    if (this.failed || this.closed) return;
    this.node.proposeConfChange(cc);
    this.schedule();
  }

  /** Applies a committed conf change to Raft's configuration (called by the apply path). */
  applyConfChange(cc: ConfChange): ConfState {
    return this.node.applyConfChange(cc);
  }

  /** Leader only: whether `id` was heard from within the last election timeout (the leader
   *  itself always is). Not Raft's recentActive alone: check-quorum clears that flag for every
   *  peer once per election timeout, and until each peer's next heartbeat response (a heartbeat
   *  interval later) every peer would look inactive (a MemberRemove refused "unhealthy cluster"
   *  in that window). */
  isActive(id: NodeId): boolean {
    if (id === this.node.id) return true;
    const pr = this.node.progressOf(id);
    if (pr === undefined) return false;
    const heard = this.heardAtTick.get(id);
    return pr.recentActive || (heard !== undefined && this.ticks - heard <= this.electionTicks);
  }

  /** The leader's view of how far `id` has replicated (match index), for learner promotion. */
  matchIndex(id: NodeId): number | undefined {
    return this.node.progressOf(id)?.match;
  }

  /** Installs a snapshot received from the leader (its state is already in place: the caller
   *  restored the backend and the store at `snap.metadata.index`). Returns false if it is stale. */
  installSnapshot(from: NodeId, term: number, snap: Snapshot): boolean {
    if (snap.metadata.index <= this.node.committed) return false;
    this.node.step({ type: MessageType.MsgSnap, from, to: this.node.id, term, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: snap });
    this.schedule();
    return true;
  }

  /** Feeds a message from a peer. */
  step(m: Message): void {
    if (this.closed || this.failed) return;
    if (LAT_TRACE) latStamp('stp', m.entries.length > 0 ? m.entries[m.entries.length - 1]!.index : m.index, m.type);
    this.observer.received?.(m);
    // Only members Raft tracks: a sender the membership does not know (the peer port admits them)
    // must not grow the map.
    if (this.node.progressOf(m.from) !== undefined) this.heardAtTick.set(m.from, this.ticks);
    this.node.step(m);
    this.schedule();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    while (this.running) await new Promise((r) => setImmediate(r));
    await this.wal.close();
  }

  /** Persists a snapshot marker at `index` (the backend must already hold that state durably),
   *  compacts the in-memory log keeping up to `keep.entries` entries and `keep.bytes` bytes of
   *  them for slow followers, and frees WAL segments. */
  snapshot(index: number, keep: SnapshotKeep, confState: ConfState): Promise<void> {
    // WAL calls must not overlap: the snapshot runs inside the Ready loop, between two Readys.
    return new Promise<void>((resolve, reject) => {
      this.pendingSnapshots.push({ index, keep, confState, resolve, reject });
      this.schedule();
    });
  }

  private async runPendingSnapshots(): Promise<void> {
    while (this.pendingSnapshots.length > 0 && !this.failed) {
      const s = this.pendingSnapshots.shift()!;
      try {
        await this.takeSnapshot(s.index, s.keep, s.confState);
        s.resolve();
      } catch (err) {
        s.reject(err);
      }
    }
  }

  private async takeSnapshot(index: number, keep: SnapshotKeep, confState: ConfState): Promise<void> {
    const term = this.storage.term(index);
    const prev = this.storage.snapshot();
    if (typeof term !== 'number' || (typeof prev === 'object' && index <= prev.metadata.index)) return;
    await this.wal.saveSnapshot({ index, term });
    // The snapshot's data stays empty: a follower that needs it gets the backend itself, taken
    // when it is sent (see Snapshotter.sendData in server/snapshot.ts).
    this.storage.createSnapshot(index, confState, new Uint8Array(0));
    const compactTo = this.storage.compactionPoint(index, keep.entries, keep.bytes);
    if (compactTo > this.storage.firstIndex()) {
      this.storage.compact(compactTo);
      await this.wal.releaseTo(compactTo);
    }
  }

  /** etcd's advanceTicks: `n` Raft ticks at once (the election timer's only: a fast-forward at
   *  start, member.ts). Safe whatever the timer's state: a follower that times out asks for
   *  pre-votes, which peers that hear from a leader refuse. */
  advanceTicks(n: number): void {
    assert(Number.isSafeInteger(n) && n >= 0, 'advanceTicks: a tick count');
    if (this.closed || this.failed) return;
    for (let i = 0; i < n; i++) this.node.tick();
    this.schedule();
  }

  private onTick(): void {
    if (this.closed || this.failed) return;
    this.ticks++;
    this.node.tick();
    this.retryReadRounds();
    this.schedule();
  }

  private startReadRound(): void {
    if (this.readsForNextRound.length === 0 || !this.hasLeader()) return;
    const ctx = Buffer.allocUnsafe(8);
    ctx.writeBigUInt64BE(BigInt(++this.readSeq));
    this.readRounds.set(ctx.toString('hex'), { waiters: this.readsForNextRound, index: -1, sentAtTick: this.ticks });
    this.readsForNextRound = [];
    this.node.readIndex(ctx);
  }

  /** Raft may drop a ReadIndex request (no leader yet, or a leader that has not committed in its
   *  term): rounds unanswered for a few ticks are asked again. */
  private retryReadRounds(): void {
    for (const [hex, round] of this.readRounds) {
      if (round.index < 0 && this.ticks - round.sentAtTick >= 5 && this.hasLeader()) {
        round.sentAtTick = this.ticks;
        this.node.readIndex(Buffer.from(hex, 'hex'));
      }
    }
  }

  private onReadStates(states: readonly { index: number; ctx: Uint8Array }[]): void {
    for (const rs of states) {
      const hex = Buffer.from(rs.ctx.buffer, rs.ctx.byteOffset, rs.ctx.byteLength).toString('hex');
      const round = this.readRounds.get(hex);
      if (!round) continue;
      this.readRounds.delete(hex);
      this.readsWaitingApply.push({ index: rs.index, waiters: round.waiters });
    }
    this.releaseReads();
  }

  private releaseReads(): void {
    if (this.readsWaitingApply.length === 0) return;
    const still: typeof this.readsWaitingApply = [];
    for (const r of this.readsWaitingApply) {
      if (r.index <= this.appliedIndex) for (const w of r.waiters) w();
      else still.push(r);
    }
    this.readsWaitingApply = still;
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.runReadyLoop();
    });
  }

  private flushProposals(): void {
    this.startReadRound();
    if (this.proposals.length === 0 && (this.waitingForLeader.length === 0 || !this.hasLeader())) return;
    const batch = this.hasLeader() ? this.waitingForLeader.concat(this.proposals) : this.proposals;
    this.proposals = [];
    if (!this.hasLeader()) {
      this.waitingForLeader.push(...batch);
      return;
    }
    this.waitingForLeader = [];
    if (batch.length === 0) return;
    const err = this.node.proposeBatch(batch);
    // Dropped (e.g. a leadership transfer in progress): keep them until a leader takes them.
    if (err) this.waitingForLeader.push(...batch);
  }

  private hasLeader(): boolean {
    return this.node.lead !== 0n;
  }

  private async runReadyLoop(): Promise<void> {
    if (LAT_TRACE) latStamp('loop', this.running ? 1 : 0);
    if (this.running || this.closed || this.failed) return;
    this.running = true;
    try {
      this.flushProposals();
      await this.runPendingSnapshots();
      while (this.node.hasReady() && !this.failed) {
        const rd = this.node.ready();
        await this.handleReady(rd);
        if (this.failed) break; // never advance past what could not be persisted
        this.node.advance(rd);
        this.flushProposals();
        await this.runPendingSnapshots();
      }
    } finally {
      this.running = false;
    }
    if (this.proposals.length > 0 || this.pendingSnapshots.length > 0 || this.readsForNextRound.length > 0 || (this.waitingForLeader.length > 0 && this.hasLeader())) this.schedule();
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (LAT_TRACE) traceReady(rd);
    // A Ready that only applies commits (no entries or snapshot of its own) and whose messages only
    // tell followers the commit index (empty MsgApps, heartbeats), on a member whose clients wait
    // for entries: those clients are answered first, the notices go out right after the answers
    // (sendLater). Sent first, a leader's two notices were written to the peers' sockets (each
    // write on loopback also runs the receiver's TCP work and wakes it, on 2 cores) before the
    // client's answer: 150-230 us between the commit and the answer (warm put-1,
    // docs/performance.md "One put, end to end"). Without local clients waiting (a follower's
    // proposal: its client waits for this very notice) they go first, as before.
    const noticesOnly = rd.entries.length === 0 && rd.snapshot === undefined && rd.committedEntries.length > 0 && rd.messages.length > 0 && rd.messages.every(isCommitNotice) && this.clientsWaiting();
    if (!noticesOnly && rd.messages.length > 0) this.sendNow(rd.messages);
    if (rd.softState) this.onSoftState(rd.softState.role === StateRole.Leader);
    if (rd.softState) this.observer.leader?.(rd.softState.lead);
    if (rd.hardState) this.currentTerm = rd.hardState.term;
    if (rd.snapshot) {
      // A snapshot from the leader: its state was installed before Raft accepted it; record the
      // marker so a restart starts the log after it.
      try {
        await this.wal.saveSnapshot({ index: rd.snapshot.metadata.index, term: rd.snapshot.metadata.term });
      } catch (err) {
        this.fail(err);
        return;
      }
      this.storage.applySnapshot(rd.snapshot);
      this.lastIndex = Math.max(this.lastIndex, rd.snapshot.metadata.index);
      this.appliedIndex = Math.max(this.appliedIndex, rd.snapshot.metadata.index);
    }
    // A hard state that only moves the commit index is not written on its own (etcd's MustSync
    // skips its fsync): the commit index need not be durable — a restarted member takes the
    // larger of the saved one and the backend's applied index, and learns the rest from the
    // leader. It goes to disk with the next batch that has entries or a new term or vote. Writing
    // it alone cost every member a second fsync per write, and held up the next Ready behind it.
    let hardState = rd.hardState;
    if (hardState !== undefined && rd.entries.length === 0 && hardState.term === this.walHardState.term && hardState.vote === this.walHardState.vote) {
      this.storage.setHardState(hardState);
      this.unsavedHardState = hardState;
      hardState = undefined;
    } else if (hardState === undefined && rd.entries.length > 0) {
      hardState = this.unsavedHardState;
    }
    let saving: Promise<void> | undefined;
    if (hardState !== undefined || rd.entries.length > 0) {
      if (LAT_TRACE) latStamp('w0', rd.entries.length > 0 ? rd.entries[rd.entries.length - 1]!.index : 0, rd.entries.length);
      // The write is on the thread pool when save() returns (unless the WAL rotates a segment).
      saving = this.wal.save(hardState, rd.entries);
    }
    // Committed entries that are already durable here are applied now, while this Ready's own
    // entries are being written (as etcd's apply loop runs beside its WAL write): a write then
    // waits for one fsync, not two. Applied only after the write was handed to the thread pool:
    // applied first, they held up this Ready's write (a follower's next entry, under one client;
    // a leader's whole next batch under many) by the time they took. Entries from this Ready
    // itself are applied only after it.
    let late = rd.committedEntries;
    if (!rd.snapshot && late.length > 0) {
      const durableLast = Math.min(this.lastIndex, rd.entries.length > 0 ? rd.entries[0]!.index - 1 : Infinity);
      let split = 0;
      while (split < late.length && late[split]!.index <= durableLast) split++;
      if (split > 0) {
        this.applyCommitted(split === late.length ? late : late.slice(0, split));
        late = late.slice(split);
      }
    }
    // After the apply: the answers' reactions are queued first (sendLater).
    if (noticesOnly) this.sendLater(rd.messages);
    if (saving !== undefined) {
      try {
        await saving;
        if (LAT_TRACE) latStamp('w1', rd.entries.length > 0 ? rd.entries[rd.entries.length - 1]!.index : 0, rd.entries.length);
        if (hardState !== undefined) {
          this.walHardState = hardState;
          this.unsavedHardState = undefined;
        }
      } catch (err) {
        // The WAL's state is unknown after a failed write or fsync: never acknowledge anything
        // again. (Any other exception in this loop is a bug and crashes the member.)
        this.fail(err);
        return;
      }
      if (rd.entries.length > 0) {
        this.storage.append(rd.entries);
        this.lastIndex = rd.entries[rd.entries.length - 1]!.index;
      }
      if (rd.hardState) this.storage.setHardState(rd.hardState);
    }
    if (late.length > 0) this.applyCommitted(late);
    if (rd.readStates.length > 0) this.onReadStates(rd.readStates);
  }

  /** Sends at once, after any notices still held by sendLater (messages to a peer keep their order). */
  private sendNow(msgs: Message[]): void {
    const held = this.laterMsgs;
    if (held.length > 0) {
      this.laterMsgs = [];
      this.send(held.concat(msgs));
    } else {
      this.send(msgs);
    }
  }

  /** Sends after the answers to the clients of the entries this Ready applies, in the same turn:
   *  an answer is written from its proposal's promise reaction (a microtask queued by the apply)
   *  into its connection's nextTick flush; these go in a nextTick queued by a microtask queued
   *  after the apply, so after that flush. (In a setImmediate they went a loop turn later:
   *  171 us p50 after the commit, on the follower-origin put's path.) */
  private sendLater(msgs: Message[]): void {
    const first = this.laterMsgs.length === 0;
    for (const m of msgs) this.laterMsgs.push(m);
    if (!first) return;
    queueMicrotask(() =>
      process.nextTick(() => {
        if (this.laterMsgs.length === 0 || this.closed || this.failed) return;
        const held = this.laterMsgs;
        this.laterMsgs = [];
        this.send(held);
      }),
    );
  }

  private applyCommitted(entries: Entry[]): void {
    const out: LogEntry[] = [];
    for (const e of entries) {
      if (e.type === EntryType.ConfChange) {
        // The apply path updates the membership and then calls applyConfChange() (below), in log
        // order, before this Ready is advanced.
        out.push({ index: e.index, term: e.term, data: new Uint8Array(0), confChange: decodeConfChange(e.data) });
      } else {
        out.push({ index: e.index, term: e.term, data: e.data });
      }
    }
    if (LAT_TRACE) latStamp('ap0', entries[entries.length - 1]!.index, entries.length);
    this.commitHandler?.(out);
    if (LAT_TRACE) latStamp('ap1', entries[entries.length - 1]!.index, entries.length);
    this.appliedIndex = entries[entries.length - 1]!.index;
    this.logRecoveredApplied();
    this.releaseReads();
  }

  /** Logs (once) when the entries committed before the restart are applied: the end of the WAL's
   *  replay on top of the backend (a start-up phase, timed since the process started). */
  private logRecoveredApplied(): void {
    const rc = this.recoveredCommit;
    if (rc === undefined || this.appliedIndex < rc.index) return;
    this.recoveredCommit = undefined;
    this.log.info('applied the entries recovered from the WAL', {
      entries: rc.index - rc.fromIndex,
      'applied-index': this.appliedIndex,
      'took-ms': Math.round(performance.now() - rc.sinceMs),
      'since-start-ms': Math.round(performance.now()),
    });
  }

  private onSoftState(isLeader: boolean): void {
    if (isLeader === this.leader) return;
    this.leader = isLeader;
    this.log.info(isLeader ? 'became leader' : 'lost leadership', { term: this.node.term });
    for (const h of this.leadershipHandlers) h(isLeader);
  }

  private fail(err: unknown): void {
    const cause = err instanceof Error ? err.message : String(err);
    this.failed = new EtcdError(
      GrpcCode.UNAVAILABLE,
      `quorumkv: write-ahead log failed (${cause}); this member no longer accepts writes: fix the disk and restart it`,
    );
    clearInterval(this.ticker);
    const fields = { error: cause, code: walErrnoCode(err), term: this.currentTerm, 'last-index': this.lastIndex, 'applied-index': this.appliedIndex };
    if (isWalOutOfSpace(err)) {
      this.log.error('WAL failed: out of space; refusing all further writes (free space, then restart the member)', fields);
      for (const h of this.failureHandlers) h(this.failed);
      return;
    }
    // stderr is synchronous for files and pipes on Linux: the line is out before the exit. (An
    // error without an errno code is a short write or a broken assertion: exiting is right too.)
    const what = fields.code !== undefined ? 'I/O error' : 'unexpected error';
    this.log.error(`WAL failed: ${what}; exiting with status ${WAL_IO_ERROR_EXIT_CODE} (a member that cannot persist must not keep running; a restart recovers the WAL)`, fields);
    for (const h of this.failureHandlers) h(this.failed);
    this.onWalIoError(err);
  }
}

/** A message that only carries the leader's commit index to a follower: an empty MsgApp or a
 *  heartbeat (which may also carry a ReadIndex round's context: a round waits a few more µs). */
function isCommitNotice(m: Message): boolean {
  return (m.type === MessageType.MsgApp && m.entries.length === 0) || m.type === MessageType.MsgHeartbeat;
}

/** The latency trace's stamps of one Ready (QKV_LAT_TRACE): its entries, commits and messages. */
function traceReady(rd: Ready): void {
  const e = rd.entries;
  const c = rd.committedEntries;
  latStamp('rdy', e.length > 0 ? e[e.length - 1]!.index : 0, c.length > 0 ? c[c.length - 1]!.index : 0);
  for (const m of rd.messages) latStamp('snd', m.entries.length > 0 ? m.entries[m.entries.length - 1]!.index : m.index, m.type);
}
