// RaftCore: what replication (replicate.ts) and the role step functions (step_leader.ts,
// step_follower.ts) may see of a Raft and do to it. The Raft class (raft.ts) implements it and
// passes itself to the step functions, so no module imports raft.ts except rawnode.ts, and the
// imports of src/raft form a DAG (test/raft/imports.test.ts checks it):
//
//   rawnode → raft → {step_follower, step_leader} → replicate → raft_core → {log, tracker, read_only, ...}
//   (raft.ts also imports replicate.ts and raft_core.ts directly; nothing imports upwards)
//
// term, vote and role are readonly here: a step function changes them only through
// becomeFollower/becomeLeader/campaign, which keep their invariants (terms never decrease, a
// vote is cast once per term, a role change resets the per-role state).

import type { ResolvedConfig } from './config';
import type { RaftError } from './errors';
import type { RaftLog } from './log';
import type { VoteResult } from './quorum';
import type { ReadOnly } from './read_only';
import type { ProgressTracker } from './tracker';
import type { Entry, Index, Message, NodeId, ReadState, Snapshot, StateRole, Term } from './types';

/** Why a node campaigns: a pre-vote round, a real election, or a leadership transfer (MsgTimeoutNow). */
export type CampaignType = 'prevote' | 'election' | 'transfer';

/** A role's step function: handles every message that Raft.step() did not handle for all roles. */
export type StepFn = (r: RaftCore, m: Message) => RaftError | null;

export interface RaftCore {
  readonly id: NodeId;
  readonly cfg: ResolvedConfig;
  /** The latest term this node has seen. Never decreases. */
  readonly term: Term;
  readonly state: StateRole;
  readonly raftLog: RaftLog;
  readonly trk: ProgressTracker;
  /** The leader of `term` as far as this node knows (None if unknown). */
  lead: NodeId;
  /** Leader only: the member leadership is being transferred to (None if no transfer). */
  leadTransferee: NodeId;
  /** Leader only: index of the latest conf change proposed (one change in flight at a time). */
  pendingConfIndex: Index;
  electionElapsed: number;
  /** Leader only: ReadIndex requests waiting for a heartbeat quorum. */
  readonly readOnly: ReadOnly;
  /** Leader only: ReadIndex requests waiting for the first commit of this term. */
  pendingReadIndexMessages: Message[];
  /** ReadIndex results for the application (handed out in the next Ready). */
  readonly readStates: ReadState[];

  /** Queues a message; attaches from and term (see Raft.send). */
  send(m: Message): void;
  becomeFollower(term: Term, lead: NodeId): void;
  becomeLeader(): void;
  /** Campaigns now if promotable (no checks for unapplied conf changes). */
  campaign(t: CampaignType): void;
  /** Campaigns if promotable and no committed conf change is waiting to be applied. */
  hup(t: CampaignType): void;
  /** Records a vote and returns the election's outcome so far. */
  poll(id: NodeId, granted: boolean): VoteResult;
  /** Leader: appends entries in the current term. Returns false if dropped by the uncommitted size limit. */
  appendEntry(es: Entry[]): boolean;
  committedEntryInCurrentTerm(): boolean;
  abortLeaderTransfer(): void;
  /** Follower: installs a snapshot if it is newer than commit and includes us. Returns whether it did. */
  restore(s: Snapshot): boolean;
}
