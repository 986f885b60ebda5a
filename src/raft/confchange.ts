// Membership change, one member at a time (etcd's ConfChange v1 "simple" changes).
//
// Safety rule: two configurations that differ by one voter always have overlapping majorities, so
// applying single-member changes one after another never lets two disjoint quorums exist — provided
// at most one change is in flight. The leader enforces that (raft.ts: pendingConfIndex) and, as etcd
// does, refuses a new change until the previous one is applied, and after an election until the
// new leader's first entry is applied (fixing the single-server-change bug Ongaro described in 2015).
// A change takes effect on each node when the application applies the committed entry.

import { assert } from '../util/assert';
import { Progress } from './progress';
import type { ProgressTracker } from './tracker';
import type { ConfChange, ConfState, Index, NodeId } from './types';
import { ConfChangeType } from './types';

/** Applies cc to the tracker. New members start probing at nextIndex. Returns an error string for invalid changes. */
export function applyConfChangeToTracker(trk: ProgressTracker, cc: ConfChange, nextIndex: Index): string | null {
  const id = cc.nodeId;
  if (id === 0n) return null; // etcd: a zero NodeID is a no-op change
  switch (cc.type) {
    case ConfChangeType.AddNode: {
      // Add a voter, or promote a learner.
      if (trk.voters.has(id)) return null;
      trk.learners.delete(id);
      trk.voters.add(id);
      ensureProgress(trk, id, nextIndex, false);
      break;
    }
    case ConfChangeType.AddLearnerNode: {
      if (trk.learners.has(id)) return null;
      // Demoting a voter straight to learner is a voter removal: allowed, one member at a time.
      trk.voters.delete(id);
      trk.learners.add(id);
      ensureProgress(trk, id, nextIndex, true);
      break;
    }
    case ConfChangeType.RemoveNode: {
      if (trk.voters.size === 1 && trk.voters.has(id)) return 'removing the last voter is not allowed';
      trk.voters.delete(id);
      trk.learners.delete(id);
      trk.progress.delete(id);
      trk.votes.delete(id);
      break;
    }
  }
  trk.checkInvariants();
  return null;
}

function ensureProgress(trk: ProgressTracker, id: NodeId, nextIndex: Index, isLearner: boolean): void {
  const pr = trk.progress.get(id);
  if (pr !== undefined) {
    pr.isLearner = isLearner;
    return;
  }
  const p = new Progress(nextIndex, trk.maxInflightMsgs, trk.maxInflightBytes, isLearner);
  // A new member counts as active so that check-quorum does not immediately depose the leader.
  p.recentActive = true;
  trk.progress.set(id, p);
}

/** Resets the tracker to a ConfState (on start or when a snapshot is restored). */
export function restoreTracker(trk: ProgressTracker, cs: ConfState, nextIndex: Index): void {
  trk.voters = new Set();
  trk.learners = new Set();
  trk.progress = new Map();
  trk.votes = new Map();
  for (const id of cs.voters) {
    assert(!cs.learners.includes(id), `conf state lists ${id} as both voter and learner`);
    trk.voters.add(id);
    ensureProgress(trk, id, nextIndex, false);
  }
  for (const id of cs.learners) {
    trk.learners.add(id);
    ensureProgress(trk, id, nextIndex, true);
  }
  trk.checkInvariants();
}
