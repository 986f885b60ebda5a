// Majority quorum maths over a set of voters (etcd quorum/majority.go). Learners never count.

import type { Index, NodeId } from './types';

export enum VoteResult {
  Pending = 'Pending',
  Lost = 'Lost',
  Won = 'Won',
}

/** Number of voters that make a majority. */
export function quorumSize(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

/**
 * The largest index acknowledged by a majority of voters: sort the voters' match indexes in
 * decreasing order and take the quorum-th. An empty voter set commits everything (Infinity) so that
 * a joint/empty configuration never blocks; raft never runs with an empty set in practice.
 */
export function committedIndex(voters: ReadonlySet<NodeId>, matchOf: (id: NodeId) => Index | undefined): Index {
  const n = voters.size;
  if (n === 0) return Number.MAX_SAFE_INTEGER;
  const srt: Index[] = [];
  for (const id of voters) srt.push(matchOf(id) ?? 0);
  srt.sort((a, b) => b - a);
  return srt[quorumSize(n) - 1] as Index;
}

/** Outcome of an election given the votes received so far (true = granted). */
export function voteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return VoteResult.Won;
  let granted = 0;
  let rejected = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
    else rejected++;
  }
  const q = quorumSize(voters.size);
  if (granted >= q) return VoteResult.Won;
  if (granted + missing >= q) return VoteResult.Pending;
  void rejected;
  return VoteResult.Lost;
}

/** Whether the given set of acknowledging nodes includes a majority of voters. */
export function isQuorum(voters: ReadonlySet<NodeId>, acked: ReadonlySet<NodeId> | ((id: NodeId) => boolean)): boolean {
  let n = 0;
  const has = typeof acked === 'function' ? acked : (id: NodeId) => acked.has(id);
  for (const id of voters) if (has(id)) n++;
  return n >= quorumSize(voters.size);
}
