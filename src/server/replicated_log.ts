// The seam between a member's server (server.ts) and consensus (raft_node.ts): what the server
// asks of the replicated log, and what the log hands back.
import type { EtcdError } from '../util/errors';
import type { ConfChange, ConfState } from '../raft';

export interface LogEntry {
  readonly index: number;
  readonly term: number;
  readonly data: Uint8Array;
  /** Set for Raft membership changes (data is then empty). */
  readonly confChange?: ConfChange;
}

/** Raft's view, as Maintenance.Status reports it. */
export interface RaftStatus {
  /** The leader this member knows of (0n = none). */
  leader: bigint;
  term: number;
  /** Index of the last entry in this member's log. */
  lastIndex: number;
  commit: number;
  isLearner: boolean;
}

/** What the server needs from consensus (RaftNode, raft_node.ts): order proposals into a log and
 *  hand back the committed entries, in index order, exactly once each. */
export interface ReplicatedLog {
  readonly term: number;
  /** Current Raft status of this member. */
  status(): RaftStatus;
  /** Whether this member is a learner (cheap; asked on every client write). */
  isLearner(): boolean;
  /** Asks Raft to hand leadership to `target` (leader only); resolves once `target` leads, or
   *  rejects with etcd's error after a timeout. */
  transferLeadership(target: bigint, timeoutMs: number): Promise<void>;
  /** True while this member is the leader: the one member allowed to decide lease expiry. */
  isLeader(): boolean;
  /** Called whenever this member gains or loses leadership. */
  onLeadershipChange(handler: (isLeader: boolean) => void): void;
  propose(data: Uint8Array): void;
  /** Resolves when reading the local store is linearizable (ReadIndex). */
  linearizableRead(): Promise<void>;
  /** `handler` applies committed entries; `waiting` says whether clients of this member wait for
   *  entries not applied yet (their answers then go out before the followers' commit notices). */
  onCommit(handler: (entries: readonly LogEntry[]) => void, waiting?: () => boolean): void;
  /** Raft membership changes: propose one; apply one once committed (Raft's configuration). */
  proposeConfChange(cc: ConfChange): void;
  applyConfChange(cc: ConfChange): ConfState;
  /** Called once if the log fails for good (e.g. a WAL write error). */
  onFailure(handler: (err: EtcdError) => void): void;
  close(): void | Promise<void>;
}
