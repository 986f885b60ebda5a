// The leader's step function and replication (etcd stepLeader, sendAppend, bcastHeartbeat).

import { assert } from '../util/assert';
import type { RaftError } from './errors';
import { ErrProposalDropped } from './errors';
import { RaftLog } from './log';
import { ProgressState } from './progress';
import type { Progress } from './progress';
import { isQuorum } from './quorum';
import type { Raft } from './raft';
import { requestCtx } from './read_only';
import type { Index, Message, NodeId } from './types';
import { ConfChangeType, decodeConfChange, EntryType, MessageType, newMessage, None, StateRole } from './types';

export function stepLeader(r: Raft, m: Message): RaftError | null {
  switch (m.type) {
    case MessageType.MsgBeat:
      bcastHeartbeat(r);
      return null;
    case MessageType.MsgCheckQuorum:
      if (!r.trk.quorumActive()) {
        // We could not hear from a quorum within an election timeout: another leader may exist.
        r.becomeFollower(r.term, None);
      }
      for (const [id, pr] of r.trk.progress) if (id !== r.id) pr.recentActive = false;
      return null;
    case MessageType.MsgProp:
      return handleProposal(r, m);
    case MessageType.MsgReadIndex:
      handleReadIndex(r, m);
      return null;
  }

  // Everything else is from a peer, which must be in the configuration.
  const pr = r.trk.progress.get(m.from);
  if (pr === undefined) return null;
  switch (m.type) {
    case MessageType.MsgAppResp:
      handleAppendResponse(r, m, pr);
      break;
    case MessageType.MsgHeartbeatResp:
      handleHeartbeatResponse(r, m, pr);
      break;
    case MessageType.MsgSnapStatus:
      if (pr.state !== ProgressState.Snapshot) break;
      if (m.reject) pr.pendingSnapshot = 0; // failed: probe from match instead
      pr.becomeProbe();
      // Wait for a heartbeat response (or MsgAppResp) before probing again.
      pr.msgAppFlowPaused = true;
      break;
    case MessageType.MsgUnreachable:
      // Optimistic replication likely lost messages: fall back to probing.
      if (pr.state === ProgressState.Replicate) pr.becomeProbe();
      break;
    case MessageType.MsgTransferLeader:
      handleTransferLeader(r, m, pr);
      break;
  }
  return null;
}

function handleProposal(r: Raft, m: Message): RaftError | null {
  assert(m.entries.length > 0, `${r.id} stepped empty MsgProp`);
  const self = r.trk.progress.get(r.id);
  // A leader removed from the configuration, or handing over leadership, takes no proposals.
  if (self === undefined || self.isLearner) return ErrProposalDropped;
  if (r.leadTransferee !== None) return ErrProposalDropped;
  const ents = m.entries.slice();
  for (let i = 0; i < ents.length; i++) {
    const e = ents[i]!;
    if (e.type !== EntryType.ConfChange) continue;
    const cc = decodeConfChange(e.data);
    let refused = '';
    if (r.pendingConfIndex > r.raftLog.applied) {
      refused = 'possible unapplied conf change';
    } else if (cc.type === ConfChangeType.RemoveNode && r.trk.voters.size === 1 && r.trk.voters.has(cc.nodeId)) {
      refused = 'removing the last voter';
    }
    if (refused !== '') {
      // Keep the entry's slot (the proposer tracks indexes) but make it a no-op (etcd does the same).
      ents[i] = { term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) };
    } else {
      r.pendingConfIndex = r.raftLog.lastIndex() + i + 1;
    }
  }
  if (!r.appendEntry(ents)) return ErrProposalDropped;
  bcastAppend(r);
  return null;
}

function handleReadIndex(r: Raft, m: Message): void {
  // A leader that removed itself (and is handing over) no longer speaks for any quorum: with the
  // configuration {X} it could otherwise mistake X's quorum for its own. Dropped; the client retries.
  if (!r.trk.voters.has(r.id)) return;
  // Until this term's first entry is committed, our commit index may lag what the previous
  // leader committed: a read at it could be stale. Queue until then (raft thesis 6.4).
  // This holds for a single voter too: a config that shrank to one voter (the old leader removed
  // itself) has a new leader whose commit index can lag the old leader's (found by the simulation,
  // seed 2921 'chaos'); etcd answers singleton reads before this check.
  if (!r.committedEntryInCurrentTerm()) {
    r.pendingReadIndexMessages.push(m);
    return;
  }
  if (r.trk.isSingleton()) {
    // A single voter is trivially a quorum.
    responseToReadIndexReq(r, m, r.raftLog.committed);
    return;
  }
  sendMsgReadIndexResponse(r, m);
}

export function sendMsgReadIndexResponse(r: Raft, m: Message): void {
  if (r.cfg.readOnlyOption === 'lease-based' || r.cfg.bugs.readIndexWithoutQuorum === true) {
    // Lease: trust check-quorum's lease instead of a round trip (clock-dependent, opt-in only).
    responseToReadIndexReq(r, m, r.raftLog.committed);
    return;
  }
  const ctx = requestCtx(m);
  if (!r.readOnly.addRequest(r.raftLog.committed, m)) return; // queue full: dropped, the client retries
  r.readOnly.recvAck(r.id, ctx);
  bcastHeartbeat(r, ctx);
}

export function releasePendingReadIndexMessages(r: Raft): void {
  if (r.pendingReadIndexMessages.length === 0 || !r.committedEntryInCurrentTerm()) return;
  const msgs = r.pendingReadIndexMessages;
  r.pendingReadIndexMessages = [];
  for (const m of msgs) sendMsgReadIndexResponse(r, m);
}

function responseToReadIndexReq(r: Raft, req: Message, readIndex: Index): void {
  if (req.from === None || req.from === r.id) {
    r.readStates.push({ index: readIndex, ctx: requestCtx(req) });
    return;
  }
  r.send(newMessage({ type: MessageType.MsgReadIndexResp, to: req.from, index: readIndex, entries: req.entries }));
}

function handleAppendResponse(r: Raft, m: Message, pr: Progress): void {
  pr.recentActive = true;
  if (m.reject) {
    // Fast backtracking: the follower told us where its log may match (rejectHint) and the term
    // there (logTerm). Skip every index of ours whose term is above that term in one step.
    let nextProbeIdx = m.rejectHint;
    if (m.logTerm > 0) nextProbeIdx = r.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index;
    if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
      if (pr.state === ProgressState.Replicate) pr.becomeProbe();
      maybeSendAppend(r, m.from, true);
    }
    return;
  }
  const oldPaused = pr.isPaused();
  if (!(pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === ProgressState.Probe))) return;
  if (pr.state === ProgressState.Probe) {
    pr.becomeReplicate();
  } else if (pr.state === ProgressState.Snapshot && pr.match + 1 >= r.raftLog.firstIndex()) {
    // The follower caught up past our compaction point (via the snapshot): replicate from match.
    pr.becomeProbe();
    pr.becomeReplicate();
  } else if (pr.state === ProgressState.Replicate) {
    pr.inflights.freeLE(m.index);
  }
  if (r.maybeCommit()) {
    releasePendingReadIndexMessages(r);
    bcastAppend(r);
  } else if (oldPaused && m.from !== r.id) {
    maybeSendAppend(r, m.from, true);
  }
  if (m.from === r.id) return;
  // Fill the window: send as much as flow control allows.
  while (maybeSendAppend(r, m.from, false)) {
    /* keep sending */
  }
  if (m.from === r.leadTransferee && pr.match === r.raftLog.lastIndex()) sendTimeoutNow(r, m.from);
}

function handleHeartbeatResponse(r: Raft, m: Message, pr: Progress): void {
  pr.recentActive = true;
  pr.msgAppFlowPaused = false;
  // The follower is alive but the window is still full: some MsgApps were probably lost. Free one
  // slot so the next MsgApp goes out; a gap makes the follower reject it and we fall back to probing.
  if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
  if (pr.match < r.raftLog.lastIndex() || pr.state === ProgressState.Probe) maybeSendAppend(r, m.from, true);
  if (r.cfg.readOnlyOption !== 'safe' || m.context === undefined || m.context.byteLength === 0) return;
  const acks = r.readOnly.recvAck(m.from, m.context);
  if (acks === undefined || !isQuorum(r.trk.voters, acks)) return;
  for (const rs of r.readOnly.advance(m.context)) responseToReadIndexReq(r, rs.req, rs.index);
}

function handleTransferLeader(r: Raft, m: Message, pr: Progress): void {
  if (pr.isLearner) return; // a learner cannot lead
  const transferee = m.from;
  if (r.leadTransferee !== None) {
    if (r.leadTransferee === transferee) return; // already in progress
    r.abortLeaderTransfer();
  }
  if (transferee === r.id) return; // already leader
  // The transfer must finish within one election timeout (tickHeartbeat aborts it otherwise).
  r.electionElapsed = 0;
  r.leadTransferee = transferee;
  if (pr.match === r.raftLog.lastIndex()) sendTimeoutNow(r, transferee);
  else maybeSendAppend(r, transferee, true);
}

export function sendTimeoutNow(r: Raft, to: NodeId): void {
  r.send(newMessage({ type: MessageType.MsgTimeoutNow, to }));
}

/** Sends MsgApp (with commit) to every peer, even if there are no new entries. */
export function bcastAppend(r: Raft): void {
  for (const id of r.trk.ids()) if (id !== r.id) maybeSendAppend(r, id, true);
}

function bcastHeartbeat(r: Raft, ctx?: Uint8Array): void {
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
export function maybeSendAppend(r: Raft, to: NodeId, sendIfEmpty: boolean): boolean {
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

function maybeSendSnapshot(r: Raft, to: NodeId, pr: Progress): boolean {
  // Only send a (large) snapshot to a peer we heard from recently.
  if (!pr.recentActive) return false;
  const snap = r.raftLog.snapshot();
  if (snap === undefined || snap.metadata.index === 0) return false;
  pr.becomeSnapshot(snap.metadata.index);
  r.send(newMessage({ type: MessageType.MsgSnap, to, snapshot: snap }));
  return true;
}
