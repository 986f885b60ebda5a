// One quorumkv member at run time: owns the MVCC store and the apply path, turns mutating requests
// into log entries, and resolves each waiting client once its entry has been applied.
//
// The log underneath is an interface (ReplicatedLog). Today it is SingleNodeLog: entries are
// "committed" as soon as the event loop turns, in memory only. Raft with the WAL (the durability
// and cluster issues) implements the same interface, and nothing above this file changes.
import { assert } from '../util/assert';
import { EtcdError, Errors } from '../util/errors';
import type { Logger } from '../util/log';
import { MvccStore } from '../mvcc';
import type { ResponseHeader } from '../proto/types';
import { Applier, type ApplyResult, type EventSink } from './applier';
import { encodeRequest, type InternalRequestBody } from './codec';
import { NO_LEASES, type LeaseAttachments } from './kv_ops';

export interface LogEntry {
  readonly index: number;
  readonly term: number;
  readonly data: Uint8Array;
}

/** What the server needs from consensus: order proposals into a log and hand back the committed
 *  entries, in index order, exactly once each. */
export interface ReplicatedLog {
  readonly term: number;
  /** True while this member is the leader: the one member allowed to decide lease expiry. */
  isLeader(): boolean;
  /** Called whenever this member gains or loses leadership. */
  onLeadershipChange(handler: (isLeader: boolean) => void): void;
  propose(data: Uint8Array): void;
  onCommit(handler: (entries: readonly LogEntry[]) => void): void;
  close(): void;
}

/** The stand-in log of a single in-memory member: commits every proposal at the next turn of the
 *  event loop, batching all proposals of one turn (the shape Raft's Ready loop will have). */
export class SingleNodeLog implements ReplicatedLog {
  readonly term = 1;
  private lastIndex = 0;

  isLeader(): boolean {
    return !this.closed;
  }

  onLeadershipChange(_handler: (isLeader: boolean) => void): void {
    // A single member is the leader from its first moment to its last; nothing ever changes.
  }

  private pending: Uint8Array[] = [];
  private scheduled = false;
  private handler: ((entries: readonly LogEntry[]) => void) | undefined;
  private closed = false;

  propose(data: Uint8Array): void {
    assert(!this.closed, 'propose on a closed log');
    this.pending.push(data);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  onCommit(handler: (entries: readonly LogEntry[]) => void): void {
    this.handler = handler;
  }

  close(): void {
    this.closed = true;
  }

  private flush(): void {
    this.scheduled = false;
    if (this.closed) return;
    const batch = this.pending;
    this.pending = [];
    const entries = batch.map((data) => ({ index: ++this.lastIndex, term: this.term, data }));
    this.handler?.(entries);
  }
}

export interface ServerOptions {
  memberId: bigint;
  clusterId: bigint;
  maxRequestBytes: number;
  log: Logger;
  leases?: LeaseAttachments;
  onEvents?: EventSink;
}

interface Waiter {
  resolve(r: ApplyResult): void;
}

export class Server {
  readonly store = new MvccStore();
  readonly memberId: bigint;
  readonly clusterId: bigint;
  readonly maxRequestBytes: number;
  private readonly applier: Applier;
  private readonly waiters = new Map<string, Waiter>();
  private readonly idPrefix: bigint;
  private nextId: bigint;
  private stopped = false;
  private readonly memberIdPb: string;
  private readonly clusterIdPb: string;

  constructor(
    private readonly log: ReplicatedLog,
    private readonly opts: ServerOptions,
  ) {
    this.memberId = opts.memberId;
    this.clusterId = opts.clusterId;
    this.memberIdPb = opts.memberId.toString();
    this.clusterIdPb = opts.clusterId.toString();
    this.maxRequestBytes = opts.maxRequestBytes;
    this.applier = new Applier(this.store, opts.leases ?? NO_LEASES, opts.onEvents);
    // Proposal ids as etcd's idutil: the member's low 16 bits, then a time-based counter, so that
    // ids from different members (and from this member before a restart) never collide.
    this.idPrefix = (opts.memberId & 0xffffn) << 48n;
    this.nextId = BigInt(Date.now() & 0xffffffffff) << 8n;
    log.onCommit((entries) => this.applyCommitted(entries));
  }

  get appliedIndex(): number {
    return this.applier.appliedIndex;
  }

  isLeader(): boolean {
    return this.log.isLeader();
  }

  onLeadershipChange(handler: (isLeader: boolean) => void): void {
    this.log.onLeadershipChange(handler);
  }

  /** The response header for a reply at the current revision. */
  header(revision = this.store.currentRevision): ResponseHeader {
    return { cluster_id: this.clusterIdPb, member_id: this.memberIdPb, revision, raft_term: this.log.term };
  }

  /** Proposes a mutating request and resolves with its applied result (or rejects with an
   *  EtcdError). A request larger than --max-request-bytes never reaches the log. */
  propose(body: InternalRequestBody): Promise<ApplyResult> {
    if (this.stopped) return Promise.reject(Errors.Stopped);
    const id = (this.idPrefix | (this.nextId++ & 0xffffffffffffn)).toString();
    const data = encodeRequest({ id, ...body });
    if (data.length > this.maxRequestBytes) return Promise.reject(Errors.RequestTooLarge);
    return new Promise<ApplyResult>((resolve, reject) => {
      this.waiters.set(id, {
        resolve: (r) => (r.error ? reject(r.error) : resolve(r)),
      });
      this.log.propose(data);
    });
  }

  private applyCommitted(entries: readonly LogEntry[]): void {
    for (const e of entries) {
      const result = this.applier.apply(e.index, e.data);
      const w = this.waiters.get(result.id);
      if (w) {
        this.waiters.delete(result.id);
        w.resolve(result);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.log.close();
    for (const w of this.waiters.values()) w.resolve({ id: '', error: Errors.Stopped, revision: 0 });
    this.waiters.clear();
  }
}

export { EtcdError };
