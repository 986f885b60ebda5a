// The leader's side of replication, shared by the step functions and raft.ts (etcd raft.go
// sendAppend, maybeSendSnapshot, bcastAppend, bcastHeartbeat, sendTimeoutNow, maybeCommit).
//
// Everything here runs on the leader: what to send each follower given its Progress (flow control
// lives in progress.ts and inflights.ts), and when the commit index moves. It sees the Raft only
// through RaftCore, so both roles and raft.ts can import it without an import cycle.

import { assert } from '../util/assert';
import { RaftLog } from './log';
import { ProgressState } from './progress';
import type { Progress } from './progress';
import type { RaftCore } from './raft_core';
import type { NodeId } from './types';
import { MessageType, newMessage, StateRole } from './types';

/**
 * Advances commit from the quorum's match indexes. Only entries of the current term count
 * (section 5.4.2, figure 8): committing one commits everything before it.
 */
export function maybeCommit(r: RaftCore): boolean {
  const mci = r.trk.committed();
  return r.raftLog.maybeCommit(mci, r.term, r.cfg.bugs.commitPreviousTermByCounting === true);
}

/** Asks `to` to campaign at once (leadership transfer; `to` must have our whole log). */
export function sendTimeoutNow(r: RaftCore, to: NodeId): void {
  r.send(newMessage({ type: MessageType.MsgTimeoutNow, to }));
}

/** Sends MsgApp (with commit) to every peer, even if there are no new entries. */
export function bcastAppend(r: RaftCore): void {
  for (const id of r.trk.ids()) if (id !== r.id) maybeSendAppend(r, id, true);
}

/**
 * Sends a heartbeat to every peer. It carries ctx (or the newest pending ReadIndex ctx), so that
 * the responses confirm leadership for pending reads.
 */
export function bcastHeartbeat(r: RaftCore, ctx?: Uint8Array): void {
  const c = ctx ?? r.readOnly.lastPendingRequestCtx();
  for (const [id, pr] of r.trk.progress) {
    if (id === r.id) continue;
    // Never tell a follower to commit past what it is known to have.
    const commit = Math.min(pr.match, r.raftLog.committed);
    r.send(newMessage({ type: MessageType.MsgHeartbeat, to: id, commit, ...(c !== undefined ? { context: c } : {}) }));
  }
}

/**
 * Sends one MsgApp to `to` if flow control allows, or a snapshot if the entries it needs are
 * compacted. With sendIfEmpty, sends even without new entries (to carry commit / probe).
 * Returns whether a message was sent.
 */
export function maybeSendAppend(r: RaftCore, to: NodeId, sendIfEmpty: boolean): boolean {
  assert(r.state === StateRole.Leader, 'only a leader sends appends');
  if (to === r.id) return false;
  const pr = r.trk.progress.get(to);
  if (pr === undefined || pr.isPaused()) return false;
  const prevIndex = pr.next - 1;
  const prevTerm = r.raftLog.term(prevIndex);
  if (prevTerm === undefined) return maybeSendSnapshot(r, to, pr);
  let ents = r.raftLog.entries(pr.next, r.cfg.maxSizePerMsg);
  if (ents === undefined) return maybeSendSnapshot(r, to, pr);
  if (pr.state === ProgressState.Replicate && pr.inflights.full()) ents = [];
  if (ents.length === 0 && !sendIfEmpty) return false;
  const bytes = RaftLog.sizeOf(ents);
  r.send(
    newMessage({
      type: MessageType.MsgApp,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: r.raftLog.committed,
    }),
  );
  const last = ents.length > 0 ? ents[ents.length - 1]!.index : prevIndex;
  pr.sentEntries(ents.length, last, bytes);
  return true;
}

function maybeSendSnapshot(r: RaftCore, to: NodeId, pr: Progress): boolean {
  // Only send a (large) snapshot to a peer we heard from recently.
  if (!pr.recentActive) return false;
  const snap = r.raftLog.snapshot();
  if (snap === undefined || snap.metadata.index === 0) return false;
  pr.becomeSnapshot(snap.metadata.index);
  r.send(newMessage({ type: MessageType.MsgSnap, to, snapshot: snap }));
  return true;
}
