// Step functions of followers and (pre-)candidates, and the follower side of replication
// (etcd stepFollower, stepCandidate, handleAppendEntries, handleHeartbeat, handleSnapshot).

import type { RaftError } from './errors';
import { ErrProposalDropped } from './errors';
import { VoteResult } from './quorum';
import type { RaftCore } from './raft_core';
import { bcastAppend } from './replicate';
import type { Message } from './types';
import { MessageType, newMessage, None, StateRole } from './types';

export function stepFollower(r: RaftCore, m: Message): RaftError | null {
  switch (m.type) {
    case MessageType.MsgProp:
      if (r.lead === None) return ErrProposalDropped;
      // Forward to the leader. Delivery is not guaranteed: the proposer retries on timeout.
      r.send({ ...m, to: r.lead, term: 0 });
      return null;
    case MessageType.MsgApp:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleAppendEntries(r, m);
      return null;
    case MessageType.MsgHeartbeat:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleHeartbeat(r, m);
      return null;
    case MessageType.MsgSnap:
      r.electionElapsed = 0;
      r.lead = m.from;
      handleSnapshot(r, m);
      return null;
    case MessageType.MsgTransferLeader:
      if (r.lead === None) return null;
      r.send({ ...m, to: r.lead, term: 0 });
      return null;
    case MessageType.MsgTimeoutNow:
      // The leader asks us to campaign now, skipping pre-vote and the voters' lease.
      r.hup('transfer');
      return null;
    case MessageType.MsgReadIndex:
      if (r.lead === None) return null; // dropped: the client retries
      r.send({ ...m, to: r.lead, term: 0 });
      return null;
    case MessageType.MsgReadIndexResp:
      if (m.entries.length !== 1) return null;
      r.readStates.push({ index: m.index, ctx: m.entries[0]!.data });
      return null;
  }
  return null;
}

export function stepCandidate(r: RaftCore, m: Message): RaftError | null {
  // Only count responses of the kind this campaign sent: a late MsgVoteResp must not count in a pre-vote.
  const myVoteRespType = r.state === StateRole.PreCandidate ? MessageType.MsgPreVoteResp : MessageType.MsgVoteResp;
  switch (m.type) {
    case MessageType.MsgProp:
      return ErrProposalDropped;
    case MessageType.MsgApp:
      r.becomeFollower(m.term, m.from); // a leader exists for our term
      handleAppendEntries(r, m);
      return null;
    case MessageType.MsgHeartbeat:
      r.becomeFollower(m.term, m.from);
      handleHeartbeat(r, m);
      return null;
    case MessageType.MsgSnap:
      r.becomeFollower(m.term, m.from);
      handleSnapshot(r, m);
      return null;
    case myVoteRespType: {
      const res = r.poll(m.from, !m.reject);
      if (res === VoteResult.Won) {
        if (r.state === StateRole.PreCandidate) {
          r.campaign('election');
        } else {
          r.becomeLeader();
          bcastAppend(r);
        }
      } else if (res === VoteResult.Lost) {
        // A pre-candidate keeps its term: term + 1 was never adopted.
        r.becomeFollower(r.term, None);
      }
      return null;
    }
  }
  return null;
}

function handleAppendEntries(r: RaftCore, m: Message): void {
  if (m.index < r.raftLog.committed) {
    // Everything up to our commit index already matches: tell the leader where we are.
    r.send(newMessage({ type: MessageType.MsgAppResp, to: m.from, index: r.raftLog.committed }));
    return;
  }
  const lastNew = r.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
  if (lastNew !== undefined) {
    r.send(newMessage({ type: MessageType.MsgAppResp, to: m.from, index: lastNew }));
    return;
  }
  // Reject with a hint: the largest index <= min(m.index, lastIndex) whose term is <= m.logTerm.
  // The leader can skip every entry above it (etcd's fast log rejection, thesis 5.3 optimisation).
  const hintIndex = Math.min(m.index, r.raftLog.lastIndex());
  const hint = r.raftLog.findConflictByTerm(hintIndex, m.logTerm);
  r.send(
    newMessage({
      type: MessageType.MsgAppResp,
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
    }),
  );
}

function handleHeartbeat(r: RaftCore, m: Message): void {
  r.raftLog.commitTo(m.commit);
  r.send(newMessage({ type: MessageType.MsgHeartbeatResp, to: m.from, ...(m.context !== undefined ? { context: m.context } : {}) }));
}

function handleSnapshot(r: RaftCore, m: Message): void {
  const s = m.snapshot;
  if (s === undefined) return;
  if (r.restore(s)) {
    r.send(newMessage({ type: MessageType.MsgAppResp, to: m.from, index: r.raftLog.lastIndex() }));
  } else {
    r.send(newMessage({ type: MessageType.MsgAppResp, to: m.from, index: r.raftLog.committed }));
  }
}
