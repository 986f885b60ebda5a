// The leader's step function (etcd stepLeader): proposals, ReadIndex, and the responses that
// drive replication. What to send whom is in replicate.ts.

import { assert } from '../util/assert';
import type { RaftError } from './errors';
import { ErrProposalDropped } from './errors';
import { ProgressState } from './progress';
import type { Progress } from './progress';
import { isQuorum } from './quorum';
import type { RaftCore } from './raft_core';
import { requestCtx } from './read_only';
import { bcastAppend, bcastHeartbeat, maybeCommit, maybeSendAppend, sendTimeoutNow } from './replicate';
import type { Index, Message } from './types';
import { ConfChangeType, decodeConfChange, EntryType, MessageType, newMessage, None } from './types';

export function stepLeader(r: RaftCore, m: Message): RaftError | null {
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

function handleProposal(r: RaftCore, m: Message): RaftError | null {
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

function handleReadIndex(r: RaftCore, m: Message): void {
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

function sendMsgReadIndexResponse(r: RaftCore, m: Message): void {
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

function releasePendingReadIndexMessages(r: RaftCore): void {
  if (r.pendingReadIndexMessages.length === 0 || !r.committedEntryInCurrentTerm()) return;
  const msgs = r.pendingReadIndexMessages;
  r.pendingReadIndexMessages = [];
  for (const m of msgs) sendMsgReadIndexResponse(r, m);
}

function responseToReadIndexReq(r: RaftCore, req: Message, readIndex: Index): void {
  if (req.from === None || req.from === r.id) {
    r.readStates.push({ index: readIndex, ctx: requestCtx(req) });
    return;
  }
  r.send(newMessage({ type: MessageType.MsgReadIndexResp, to: req.from, index: readIndex, entries: req.entries }));
}

function handleAppendResponse(r: RaftCore, m: Message, pr: Progress): void {
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
  if (maybeCommit(r)) {
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

function handleHeartbeatResponse(r: RaftCore, m: Message, pr: Progress): void {
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

function handleTransferLeader(r: RaftCore, m: Message, pr: Progress): void {
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
