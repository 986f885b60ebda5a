// One quorumkv member at run time (etcd's EtcdServer): owns the MVCC store and the apply path, turns
// mutating requests into log entries, and resolves each waiting client once its entry has been
// applied. Consensus underneath is the ReplicatedLog seam (replicated_log.ts), which RaftNode
// implements.
import Long from 'long';
import { EtcdError, Errors, GrpcCode } from '../util/errors';
import type { Logger } from '../util/log';
import { MvccStore, type HashKVResult } from '../mvcc';
import type { ResponseHeader } from '../proto/types';
import type { ConfChange } from '../raft';
import { ConfChangeType, ENTRY_OVERHEAD_BYTES } from '../raft';
import { Membership, memberFromJson, memberRecord, memberToJson, type Member, type MemberJson } from './membership';
import { Applier, type ApplyResult, type EventSink } from './applier';
import { encodeRequest, type InternalRequestBody, type InternalRequestHeader } from './codec';
import { AuthStore } from '../auth';
import { AlarmAction, AlarmStore, AlarmType, type AlarmRecord } from './alarms';
import { quotaCostBytes } from './quota';
import { NO_LEASES, type LeaseAttachments } from './kv_ops';
import type { Backend, LoadedState } from '../storage/backend/backend';
import { hashKVSliced } from './hash_kv';
import { CompactionRunner } from './compaction_runner';
import { LOOP_CLOCK } from '../util/slice_clock';
import type { LogEntry, RaftStatus, ReplicatedLog } from './replicated_log';

export type { LogEntry, RaftStatus, ReplicatedLog } from './replicated_log';

export interface ServerOptions {
  memberId: bigint;
  clusterId: bigint;
  maxRequestBytes: number;
  log: Logger;
  leases?: LeaseAttachments;
  onEvents?: EventSink;
  /** The state a restarted member recovered from its backend, and the index it reflects. */
  store?: MvccStore;
  appliedIndex?: number;
  /** Durable applied state: every applied batch is written to it with its applied index. */
  backend?: Backend;
  /** Called after each applied batch of entries (snapshot triggers, metrics). */
  onApplied?: (appliedIndex: number, term: number, bytes: number) => void;
  /** Metrics hooks: how long applying each entry took; a proposal that timed out. */
  onApplyDuration?: (data: Uint8Array, durationMs: number) => void;
  onProposalFailed?: () => void;
  /** Cluster membership as of the applied index (restart) or the bootstrap members. */
  membership?: Membership;
  /** How long a proposal may wait for its entry to apply before the client gets etcd's
   *  "request timed out" (the entry may still apply later, as with etcd). */
  requestTimeoutMs?: number;
  /** --quota-backend-bytes as a number of bytes (Infinity = no quota). Only a member with a
   *  durable backend checks it. */
  quotaBackendBytes?: number;
  /** Alarms active at the applied index (restart). */
  alarms?: readonly AlarmRecord[];
  /** The replicated auth store (users, roles, tokens); a disabled, empty one if not given. */
  auth?: AuthStore;
}

interface Waiter {
  resolve(r: ApplyResult): void;
  deadlineMs: number;
}

/** etcd's default: 5 s plus twice the election timeout. */
export const REQUEST_TIMEOUT_DEFAULT_MS = 7000;
/** Bytes the backend may hold queued for LevelDB before new proposals wait for it (Server.propose). */
export const BACKEND_QUEUED_BYTES_MAX = 64 * 1024 * 1024;

export class Server {
  readonly store: MvccStore;
  readonly auth: AuthStore;
  readonly membership: Membership;
  private membershipListeners: (() => void)[] = [];
  readonly memberId: bigint;
  readonly clusterId: bigint;
  readonly maxRequestBytes: number;
  /** The cluster's alarms, as of the applied index (replicated: see alarms.ts). */
  readonly alarms: AlarmStore;
  readonly quotaBackendBytes: number;
  /** The NOSPACE alarm this member is raising, shared by the requests refused meanwhile. */
  private raisingNoSpace: Promise<void> | undefined;
  private readonly applier: Applier;
  private readonly waiters = new Map<string, Waiter>();
  private readonly idPrefix: bigint;
  private nextId: bigint;
  private stopped = false;
  private failure: EtcdError | undefined;
  private readonly sweeper: NodeJS.Timeout;
  private readonly requestTimeoutMs: number;
  private backend: Backend | undefined;
  /** uint64 IDs as Long values, built once: as decimal strings every response re-parsed them. */
  private readonly memberIdPb: Long;
  private readonly clusterIdPb: Long;
  /** A spillStep() is scheduled (values over the heap budget, or the spill file's rewrite). */
  private spillScheduled = false;
  /** Frees, across event-loop turns, what applied compactions made unreachable in the store. */
  private readonly compactions = new CompactionRunner(() => this.store);
  /** Proposals waiting for the backend's write queue to drain (afterBackendDrains): each resumes
   *  its proposal, or was removed when its request timed out. One drain wait on the backend serves
   *  them all, so a backend that never drains holds only the requests still in their timeout. */
  private readonly waitingForBackend = new Set<() => void>();
  /** The one drain wait on the backend is registered (until it resolves). */
  private backendDrainAwaited = false;

  /** The member's logger (component loggers for the services above). */
  get logger(): Logger {
    return this.opts.log;
  }

  constructor(
    private readonly log: ReplicatedLog,
    private readonly opts: ServerOptions,
  ) {
    this.memberId = opts.memberId;
    this.clusterId = opts.clusterId;
    this.memberIdPb = Long.fromString(opts.memberId.toString(), true);
    this.clusterIdPb = Long.fromString(opts.clusterId.toString(), true);
    this.maxRequestBytes = opts.maxRequestBytes;
    this.store = opts.store ?? new MvccStore();
    this.backend = opts.backend;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_DEFAULT_MS;
    const onEvents = opts.onEvents;
    const sink: EventSink = (events, rev) => {
      this.backend?.stageEvents(events, rev);
      onEvents?.(events, rev);
    };
    this.membership = opts.membership ?? new Membership();
    this.auth = opts.auth ?? new AuthStore();
    this.quotaBackendBytes = opts.quotaBackendBytes ?? Infinity;
    this.alarms = new AlarmStore(opts.alarms ?? [], (a, active) => this.backend?.stageAlarm(a.memberId, a.type, active));
    this.applier = new Applier(this.store, opts.leases ?? NO_LEASES, sink, (rev) => this.onCompacted(rev), {
      setAttributes: (id, name, urls) => {
        this.membership.setAttributes(id, name, urls);
        this.persistMember(id);
      },
      setPeerURLs: (id, urls) => {
        this.membership.setPeerURLs(id, urls);
        this.persistMember(id);
      },
    }, this.alarms, this.auth);
    if (opts.appliedIndex) this.applier.startFrom(opts.appliedIndex);
    log.onFailure((err) => this.fail(err));
    this.sweeper = setInterval(() => this.expireWaiters(), 250);
    this.sweeper.unref();
    this.idPrefix = (opts.memberId & 0xffffn) << 48n;
    this.nextId = BigInt(Date.now() & 0xffffffffff) << 8n;
    log.onCommit((entries) => this.applyCommitted(entries), () => this.waiters.size > 0);
    this.scheduleSpill();
  }

  /** Runs the store's spill work in bounded steps, one per event-loop turn, until none is left. */
  private scheduleSpill(): void {
    if (this.spillScheduled || !this.store.spillPending) return;
    this.spillScheduled = true;
    setImmediate(() => {
      this.spillScheduled = false;
      if (this.stopped) return;
      if (this.store.spillStep()) this.scheduleSpill();
    });
  }

  /** Resolves once the compactions applied so far are physically done: the store has freed the
   *  versions they made unreachable and the backend has deleted their records. etcd's Compact
   *  with physical=true waits for this (its physc). */
  async compactionsSettled(): Promise<void> {
    // The backend's deletion starts one turn after the apply (onCompacted).
    await new Promise<void>((resolve) => setImmediate(resolve));
    await this.compactions.idle();
    await this.backend?.compactionSettled();
  }

  /** Proposals of this member waiting for their entry to apply (etcd_server_proposals_pending). */
  get pendingProposals(): number {
    return this.waiters.size;
  }

  get appliedIndex(): number {
    return this.applier.appliedIndex;
  }

  isLeader(): boolean {
    return this.log.isLeader();
  }

  /** Raft's view of this member (leader, term, last index, commit). */
  raftStatus(): RaftStatus {
    return this.log.status();
  }

  /** Hands leadership to `target` (etcd's MoveLeader). */
  transferLeadership(target: bigint, timeoutMs = this.requestTimeoutMs): Promise<void> {
    return this.log.transferLeadership(target, timeoutMs);
  }

  /** The durable backend (undefined for in-memory test members). */
  get durableBackend(): Backend | undefined {
    return this.backend;
  }

  onLeadershipChange(handler: (isLeader: boolean) => void): void {
    this.log.onLeadershipChange(handler);
  }

  /** The Raft term this member is in (what response headers carry). */
  get raftTerm(): number {
    return this.log.term;
  }

  /** The response header for a reply at the current revision. */
  header(revision = this.store.currentRevision): ResponseHeader {
    return { cluster_id: this.clusterIdPb, member_id: this.memberIdPb, revision, raft_term: this.log.term };
  }

  /** Waits until a read of the local store is linearizable (ReadIndex), or fails with etcd's
   *  timeout after the request timeout. */
  linearizableRead(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.stopped) return Promise.reject(Errors.Stopped);
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(Errors.Timeout), this.requestTimeoutMs);
      this.log.linearizableRead().then(
        () => (clearTimeout(t), resolve()),
        (err: unknown) => (clearTimeout(t), reject(err instanceof Error ? err : new Error(String(err)))),
      );
    });
  }

  /** Proposes a mutating request and resolves with its applied result (or rejects with an
   *  EtcdError). A request larger than --max-request-bytes never reaches the log. */
  /** Learners only replicate: etcd refuses client writes and linearizable reads on them. */
  get isLearner(): boolean {
    // Asked on every client write: no status object per request.
    return this.log.isLearner();
  }

  propose(body: InternalRequestBody, header?: InternalRequestHeader): Promise<ApplyResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.stopped) return Promise.reject(Errors.Stopped);
    // Applied writes queue for the backend (LevelDB) in memory; while it lags that far (a write
    // stall under a burst of large values), new proposals wait for it, as etcd's applies wait for
    // its backend's batch lock, instead of the queue growing without bound.
    if (this.backend !== undefined && this.backend.queuedBytes >= BACKEND_QUEUED_BYTES_MAX) return this.afterBackendDrains(() => this.propose(body, header));
    const cost = quotaCostBytes(body);
    if (cost > 0 && this.overQuota(cost)) return this.raiseNoSpace().then(() => Promise.reject(Errors.NoSpace));
    const id = this.nextProposalId();
    // `header` names the client for apply-time auth checks; server-originated entries have none.
    const data = encodeRequest(header ? { id, header, ...body } : { id, ...body });
    if (data.length > this.maxRequestBytes) return Promise.reject(Errors.RequestTooLarge);
    return this.waitApplied(id, () => this.log.propose(data));
  }

  /** Runs `then` once the backend's write queue is below BACKEND_QUEUED_BYTES_MAX, or fails with
   *  etcd's request timeout if it does not drain within it. */
  private afterBackendDrains<T>(then: () => Promise<T>): Promise<T> {
    if (!this.backendDrainAwaited) {
      // The first proposal of an episode: log once, and wait for the drain on behalf of all.
      this.backendDrainAwaited = true;
      const backend = this.backend!;
      this.opts.log.warn('backend writes lag: proposals wait for the backend to catch up', { 'queued-bytes': backend.queuedBytes, 'limit-bytes': BACKEND_QUEUED_BYTES_MAX });
      void backend.whenQueuedBelow(BACKEND_QUEUED_BYTES_MAX).then(() => {
        this.backendDrainAwaited = false;
        const resumes = [...this.waitingForBackend];
        this.waitingForBackend.clear();
        for (const resume of resumes) resume();
      });
    }
    return new Promise<T>((resolve, reject) => {
      const resume = (): void => {
        clearTimeout(t);
        then().then(resolve, reject);
      };
      const t = setTimeout(() => {
        // The request is answered: it must not be proposed later.
        this.waitingForBackend.delete(resume);
        reject(Errors.Timeout);
      }, this.requestTimeoutMs);
      this.waitingForBackend.add(resume);
    });
  }

  /** A fresh proposal id, as etcd's idutil: the member's low 16 bits, then a time-seeded counter,
   *  so that ids from different members (and from this member before a restart) never collide. */
  private nextProposalId(): string {
    return (this.idPrefix | (this.nextId++ & 0xffffffffffffn)).toString();
  }

  /** Registers a waiter for proposal `id`, then proposes; resolves with its applied result. */
  private waitApplied(id: string, propose: () => void): Promise<ApplyResult> {
    return new Promise<ApplyResult>((resolve, reject) => {
      this.waiters.set(id, { resolve: (r) => (r.error ? reject(r.error) : resolve(r)), deadlineMs: Date.now() + this.requestTimeoutMs });
      propose();
    });
  }

  // ---- quota -----------------------------------------------------------------------------------

  /** etcd's quota check ("Available" is size + cost < quota): would a request costing `costBytes`
   *  take the backend to the quota? */
  private overQuota(costBytes: number): boolean {
    if (!this.backend) return false;
    return this.backend.allocatedBytes + costBytes >= this.quotaBackendBytes;
  }

  /** Raises this member's NOSPACE alarm through the log (so every member caps writes) and
   *  resolves once it is applied, or failed: the refused client gets NoSpace either way, and by
   *  then `alarm list` shows the alarm. */
  private raiseNoSpace(): Promise<void> {
    if (this.alarms.get(this.memberId, AlarmType.NOSPACE).length > 0) return Promise.resolve();
    if (!this.raisingNoSpace) {
      this.opts.log.warn('backend quota exceeded: raising the NOSPACE alarm', {
        'quota-size-bytes': this.quotaBackendBytes,
        'current-size-bytes': this.backend?.allocatedBytes,
      });
      this.raisingNoSpace = this.propose({ alarm: { action: AlarmAction.ACTIVATE, memberID: this.memberId.toString(), alarm: AlarmType.NOSPACE } })
        .then(
          () => undefined,
          () => undefined,
        )
        .finally(() => (this.raisingNoSpace = undefined));
    }
    return this.raisingNoSpace;
  }

  private applyCommitted(entries: readonly LogEntry[]): void {
    if (entries.length === 0) return;
    let bytes = 0; // Raft's size of these entries (the snapshot trigger's byte count)
    for (const e of entries) {
      bytes += e.data.length + ENTRY_OVERHEAD_BYTES;
      if (e.confChange) {
        this.applyMemberChange(e.confChange);
        this.applier.skip(e.index);
        continue;
      }
      if (e.data.length === 0) {
        this.applier.skip(e.index);
        continue;
      }
      const applyStartMs = performance.now();
      const result = this.applier.apply(e.index, e.data);
      this.opts.onApplyDuration?.(e.data, performance.now() - applyStartMs);
      const w = this.waiters.get(result.id);
      if (w) {
        this.waiters.delete(result.id);
        w.resolve(result);
      }
    }
    const last = entries[entries.length - 1]!;
    if (this.backend) {
      // Not awaited: the WAL already holds these entries durably; the backend only has to catch up
      // before WAL segments are released (a synced commit, see snapshot handling).
      this.backend.commit(last.index, last.term).catch((err) => this.fail(new EtcdError(GrpcCode.UNAVAILABLE, `quorumkv: backend write failed (${err instanceof Error ? err.message : String(err)}); this member no longer accepts writes`)));
    }
    this.opts.onApplied?.(last.index, last.term, bytes);
    this.scheduleSpill();
  }

  // ---- membership ------------------------------------------------------------------------------

  /** Replaces the whole applied state with a snapshot's (received from the leader, already
   *  written to `backend`): store, applied index, membership. The caller then hands the snapshot
   *  to Raft. */
  async installState(backend: Backend, loaded: LoadedState, membership: Membership): Promise<void> {
    this.backend = backend;
    this.store.replaceWith(loaded.store);
    this.auth.restore(loaded.auth);
    this.applier.resetTo(loaded.appliedIndex);
    this.alarms.replaceWith(loaded.alarms);
    this.membership.members.clear();
    this.membership.removed.clear();
    for (const m of membership.members.values()) this.membership.add(m);
    for (const id of membership.removed) this.membership.removed.add(id);
    for (const fn of this.membershipListeners) fn();
    this.scheduleSpill();
  }

  /** HashKV at `rev` (0: now), computed in slices between event-loop turns (hash_kv.ts). */
  hashKV(rev: number): Promise<HashKVResult> {
    return hashKVSliced(() => this.store, rev, this.opts.log, LOOP_CLOCK, () => this.compactions.hold());
  }

  onMembershipChange(fn: () => void): void {
    this.membershipListeners.push(fn);
  }

  private persistMember(id: bigint): void {
    const m = this.membership.get(id);
    this.backend?.stageMember(id, m ? memberRecord(m) : undefined);
    for (const fn of this.membershipListeners) fn();
  }

  /** Proposes a Raft membership change carrying the member's record, and resolves once it is
   *  applied. */
  proposeMemberChange(type: ConfChangeType, member: Member): Promise<ApplyResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.stopped) return Promise.reject(Errors.Stopped);
    const id = this.nextProposalId();
    const context = Buffer.from(JSON.stringify({ reqId: id, member: memberToJson(member) }));
    return this.waitApplied(id, () => this.log.proposeConfChange({ type, nodeId: member.id, context }));
  }

  /** Applies a committed membership change: the member list (and its durable copy) first, then
   *  Raft's configuration, then the waiting client. */
  private applyMemberChange(cc: ConfChange): void {
    let reqId: string | undefined;
    let member: Member | undefined;
    if (cc.context && cc.context.length > 0) {
      try {
        const ctx = JSON.parse(Buffer.from(cc.context).toString('utf8')) as { reqId?: string; member?: MemberJson };
        reqId = ctx.reqId;
        if (ctx.member) member = memberFromJson(ctx.member);
      } catch {
        this.opts.log.warn('conf change with an unreadable context', { node: cc.nodeId.toString(16) });
      }
    }
    switch (cc.type) {
      case ConfChangeType.AddNode:
        if (this.membership.get(cc.nodeId)) this.membership.promote(cc.nodeId);
        else if (member) this.membership.add({ ...member, isLearner: false });
        break;
      case ConfChangeType.AddLearnerNode:
        if (member && !this.membership.get(cc.nodeId)) this.membership.add({ ...member, isLearner: true });
        break;
      case ConfChangeType.RemoveNode:
        this.membership.remove(cc.nodeId);
        break;
    }
    // The proposer's answer first: a membership listener may stop this member (when it removed
    // itself), and the request that removed it must still be answered.
    if (reqId) {
      const w = this.waiters.get(reqId);
      if (w) {
        this.waiters.delete(reqId);
        w.resolve({ id: reqId, response: {}, revision: this.store.currentRevision });
      }
    }
    this.log.applyConfChange(cc);
    this.persistMember(cc.nodeId);
  }

  private onCompacted(rev: number): void {
    this.compactions.kick();
    if (!this.backend) return;
    this.backend.stageCompaction(rev);
    const backend = this.backend;
    // Physical deletion of compacted versions runs in bounded steps after this batch is written.
    // A failure here is a failed backend write: the backend refuses later commits (and the member
    // reports itself failed); the log line says which compaction it was.
    setImmediate(() =>
      void backend.compactPhysical(this.store, rev).catch((err: unknown) =>
        this.opts.log.error('physical compaction failed', { revision: rev, error: String(err) }),
      ),
    );
  }

  private expireWaiters(): void {
    const now = Date.now();
    for (const [id, w] of this.waiters) {
      if (w.deadlineMs > now) break; // insertion order is age order
      this.waiters.delete(id);
      this.opts.onProposalFailed?.();
      w.resolve({ id, error: Errors.Timeout, revision: 0 });
    }
  }

  /** The log or backend failed: fail everyone waiting, refuse every further write. */
  private fail(err: EtcdError): void {
    if (this.failure) return;
    this.failure = err;
    this.opts.log.error('member failed: no further writes are accepted', { error: err.message });
    for (const [id, w] of this.waiters) w.resolve({ id, error: err, revision: 0 });
    this.waiters.clear();
  }

  /** This member learned it was removed from the cluster: it stops serving (clients retry
   *  another member on the Unavailable answer) while it shuts down. */
  markRemoved(): void {
    this.stopped = true;
    for (const [id, w] of this.waiters) w.resolve({ id, error: Errors.Stopped, revision: 0 });
    this.waiters.clear();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Whether the member can still accept writes (for health reporting). */
  get healthy(): boolean {
    return this.failure === undefined && !this.stopped;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweeper);
    this.compactions.stop();
    for (const [id, w] of this.waiters) w.resolve({ id, error: Errors.Stopped, revision: 0 });
    this.waiters.clear();
    // The Ready loop finishes the write in progress and the WAL closes (every record it holds was
    // written with O_DSYNC). Then the backend commits its last group and closes, while the spill
    // files (scratch, recreated at start) are removed on this thread meanwhile.
    await this.log.close();
    const backendClosed = this.backend?.close();
    this.store.closeSpill();
    await backendClosed;
  }
}

export { EtcdError };
