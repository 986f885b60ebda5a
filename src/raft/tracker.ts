// ProgressTracker: the current configuration (voters, learners), each member's Progress, and the
// votes of the ongoing election (etcd tracker/tracker.go).
//
// Invariant: voters and learners are disjoint, and every member has a Progress.

import { assert } from '../util/assert';
import { Progress } from './progress';
import { committedIndex, isQuorum, voteResult, VoteResult } from './quorum';
import type { ConfState, Index, NodeId } from './types';

export class ProgressTracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();

  constructor(
    readonly maxInflightMsgs: number,
    readonly maxInflightBytes: number,
  ) {}

  confState(): ConfState {
    return { voters: sortIds([...this.voters]), learners: sortIds([...this.learners]) };
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  /** Largest index replicated on a majority of voters. */
  committed(): Index {
    return committedIndex(this.voters, (id) => this.progress.get(id)?.match);
  }

  /** Whether a quorum of voters was recently active (check-quorum). */
  quorumActive(): boolean {
    return isQuorum(this.voters, (id) => this.progress.get(id)?.recentActive === true);
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  /** Records a vote; a voter's first answer counts, later duplicates are ignored. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: voteResult(this.voters, this.votes) };
  }

  isMember(id: NodeId): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  ids(): NodeId[] {
    return sortIds([...this.progress.keys()]);
  }

  checkInvariants(): void {
    for (const id of this.voters) {
      assert(!this.learners.has(id), `${id} is both voter and learner`);
      assert(this.progress.get(id)?.isLearner === false, `voter ${id} has no voter progress`);
    }
    for (const id of this.learners) assert(this.progress.get(id)?.isLearner === true, `learner ${id} has no learner progress`);
    assert(this.progress.size === this.voters.size + this.learners.size, 'progress map has extra members');
  }
}

export function sortIds(ids: NodeId[]): NodeId[] {
  return ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
