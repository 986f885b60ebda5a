// Raft: the consensus state machine (etcd raft.go). Pure and deterministic: time enters only as
// tick(), randomness only through the seeded RNG, I/O only through the messages and log entries the
// RawNode hands to the application in a Ready.
//
// Step() handles terms first (the same for every role), then votes, then dispatches to the role's
// step function (step_leader.ts, step_follower.ts). become*() switch roles. The step functions and
// the leader's replication (replicate.ts) see this class only as a RaftCore (raft_core.ts), so
// they never import this file.

import { assert } from '../util/assert';
import { Rng } from '../util/rng';
import type { Config, ResolvedConfig } from './config';
import { resolveConfig } from './config';
import { applyConfChangeToTracker, restoreTracker } from './confchange';
import type { RaftError } from './errors';
import { RaftLog } from './log';
import type { CampaignType, RaftCore, StepFn } from './raft_core';
import { ReadOnly } from './read_only';
import { bcastAppend, maybeCommit, maybeSendAppend, sendTimeoutNow } from './replicate';
import type { Storage } from './storage';
import { stepCandidate, stepFollower } from './step_follower';
import { stepLeader } from './step_leader';
import { ProgressTracker } from './tracker';
import { VoteResult } from './quorum';
import type { ConfChange, ConfState, Entry, HardState, Index, Message, NodeId, ReadState, Snapshot, SoftState, Term } from './types';
import { EntryType, MessageType, newMessage, None, payloadSize, StateRole } from './types';

/** Context of a MsgVote sent because of MsgTimeoutNow: it bypasses the voters' leader lease. */
export const CAMPAIGN_TRANSFER = new Uint8Array(Buffer.from('CampaignTransfer'));

export class Raft implements RaftCore {
  readonly id: NodeId;
  readonly cfg: ResolvedConfig;
  /** Persistent: the latest term this node has seen. Never decreases. */
  term: Term = 0;
  /** Persistent: whom this node voted for in `term` (None if nobody). */
  vote: NodeId = None;
  readonly raftLog: RaftLog;
  readonly trk: ProgressTracker;
  state: StateRole = StateRole.Follower;
  /** The leader of `term` as far as this node knows. */
  lead: NodeId = None;
  /** Leader only: the member leadership is being transferred to (None if no transfer). */
  leadTransferee: NodeId = None;
  /**
   * Leader only: index of the latest conf change proposed. A new conf change is refused while
   * pendingConfIndex > applied: at most one membership change in flight.
   */
  pendingConfIndex: Index = 0;
  /** Leader only: payload bytes of entries appended but not yet committed and applied. */
  uncommittedSize = 0;
  readOnly = new ReadOnly();
  /** Leader only: ReadIndex requests waiting for the first commit of this term. */
  pendingReadIndexMessages: Message[] = [];
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  /** Messages that can be sent right away. */
  msgs: Message[] = [];
  /**
   * Responses that promise something about local durable state (MsgAppResp, MsgVoteResp,
   * MsgPreVoteResp, including ones addressed to self): released only after the state they depend
   * on has been persisted, i.e. after the next advance().
   */
  msgsAfterAppend: Message[] = [];
  readStates: ReadState[] = [];
  private readonly rng: Rng;
  private stepFn: StepFn = stepFollower;

  constructor(config: Config, storage: Storage) {
    this.cfg = resolveConfig(config);
    this.id = this.cfg.id;
    this.rng = new Rng(this.cfg.seed);
    this.raftLog = new RaftLog(storage, this.cfg.maxCommittedSizePerReady);
    this.trk = new ProgressTracker(this.cfg.maxInflightMsgs, this.cfg.maxInflightBytes);
    const { hardState, confState } = storage.initialState();
    restoreTracker(this.trk, confState, this.raftLog.lastIndex() + 1);
    this.loadState(hardState);
    if (this.cfg.applied > 0) this.raftLog.appliedTo(this.cfg.applied);
    this.becomeFollower(this.term, None);
  }

  // ---- state reported to the application ----

  hardState(): HardState {
    // Test hook: a node that "forgets" to persist its vote can vote twice in a term after a crash.
    const vote = this.cfg.bugs.forgetToPersistVote === true ? None : this.vote;
    return { term: this.term, vote, commit: this.raftLog.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.state };
  }

  private loadState(hs: HardState): void {
    if (hs.term === 0 && hs.vote === None && hs.commit === 0) return;
    const c = this.raftLog;
    assert(
      hs.commit >= c.committed && hs.commit <= c.lastIndex(),
      `${this.id} state.commit ${hs.commit} is out of range [${c.committed}, ${c.lastIndex()}]`,
    );
    c.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  // ---- sending ----

  /** Queues a message. Terms are attached here (except forwarded proposals and reads, which are local-ish). */
  send(m: Message): void {
    m.from = this.id;
    const t = m.type;
    if (t === MessageType.MsgVote || t === MessageType.MsgVoteResp || t === MessageType.MsgPreVote || t === MessageType.MsgPreVoteResp) {
      // Vote messages carry the term they are for (a pre-vote asks for term+1 without adopting it).
      assert(m.term !== 0, `term should be set when sending ${MessageType[t]}`);
    } else {
      assert(m.term === 0, `term should not be set when sending ${MessageType[t]} (was ${m.term})`);
      if (t !== MessageType.MsgProp && t !== MessageType.MsgReadIndex) m.term = this.term;
    }
    if (t === MessageType.MsgAppResp || t === MessageType.MsgVoteResp || t === MessageType.MsgPreVoteResp) {
      this.msgsAfterAppend.push(m);
    } else {
      assert(m.to !== this.id, `message should not be self-addressed when sending ${MessageType[t]}`);
      this.msgs.push(m);
    }
  }

  // ---- time ----

  tick(): void {
    if (this.state === StateRole.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step(newMessage({ type: MessageType.MsgHup, from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTick) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) this.step(newMessage({ type: MessageType.MsgCheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.state === StateRole.Leader && this.leadTransferee !== None) {
        this.abortLeaderTransfer();
        const self = this.trk.progress.get(this.id);
        if (self === undefined || self.isLearner) this.handOverAfterRemoval(); // try again
      }
    }
    if (this.state !== StateRole.Leader) return;
    if (this.heartbeatElapsed >= this.cfg.heartbeatTick) {
      this.heartbeatElapsed = 0;
      this.step(newMessage({ type: MessageType.MsgBeat, from: this.id }));
    }
  }

  pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.cfg.electionTick + this.rng.int(this.cfg.electionTick);
  }

  // ---- role changes ----

  private reset(term: Term): void {
    if (this.term !== term) {
      assert(term > this.term, `term must not decrease: ${this.term} -> ${term}`);
      this.term = term;
      this.vote = None;
    }
    this.lead = None;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const last = this.raftLog.lastIndex();
    for (const [id, pr] of this.trk.progress) {
      pr.match = id === this.id ? last : 0;
      pr.next = last + 1;
      pr.becomeProbe();
      pr.next = last + 1;
      pr.recentActive = false;
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.pendingReadIndexMessages = [];
    // Pending reads were registered at an old term's commit index: a later term's heartbeat acks
    // must never confirm them (found by the simulation: a stale read through a re-elected node).
    this.readOnly = new ReadOnly();
  }

  becomeFollower(term: Term, lead: NodeId): void {
    this.stepFn = stepFollower;
    this.reset(term);
    this.lead = lead;
    this.state = StateRole.Follower;
  }

  becomeCandidate(): void {
    assert(this.state !== StateRole.Leader, 'invalid transition [leader -> candidate]');
    this.stepFn = stepCandidate;
    this.reset(this.term + 1);
    this.vote = this.id;
    this.state = StateRole.Candidate;
  }

  becomePreCandidate(): void {
    assert(this.state !== StateRole.Leader, 'invalid transition [leader -> pre-candidate]');
    // A pre-candidate changes neither term nor vote: a partitioned node cannot inflate terms.
    this.stepFn = stepCandidate;
    this.trk.resetVotes();
    this.lead = None;
    this.state = StateRole.PreCandidate;
  }

  becomeLeader(): void {
    assert(this.state !== StateRole.Follower, 'invalid transition [follower -> leader]');
    this.stepFn = stepLeader;
    this.reset(this.term);
    this.lead = this.id;
    this.state = StateRole.Leader;
    const self = this.trk.progress.get(this.id);
    assert(self !== undefined, 'leader must be a member');
    // All of a new leader's log is durable: its votes were only requested after its HardState and
    // entries were persisted (RawNode holds messages across a term change), so it matches itself.
    self.becomeReplicate();
    self.recentActive = true;
    // Refuse conf changes until this term's first entry is applied (single-server-change bug fix).
    this.pendingConfIndex = this.raftLog.lastIndex();
    const ok = this.appendEntry([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }]);
    assert(ok, 'empty entry was dropped');
    // The empty entry does not count towards the uncommitted size limit.
    this.uncommittedSize = 0;
  }

  promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && this.raftLog.unstable.snapshot === undefined;
  }

  // ---- elections ----

  hup(t: CampaignType): void {
    if (this.state === StateRole.Leader) return;
    if (!this.promotable()) return;
    // A conf change that is committed but not applied could change who may vote: wait for it.
    if (this.hasUnappliedConfChanges()) return;
    this.campaign(t);
  }

  private hasUnappliedConfChanges(): boolean {
    const lo = this.raftLog.applied + 1;
    const hi = this.raftLog.committed + 1;
    if (lo >= hi) return false;
    const ents = this.raftLog.slice(lo, hi, Number.MAX_SAFE_INTEGER);
    if (ents === undefined) return false;
    return ents.some((e) => e.type === EntryType.ConfChange);
  }

  campaign(t: CampaignType): void {
    if (!this.promotable()) return;
    let term: Term;
    let voteMsg: MessageType;
    if (t === 'prevote') {
      this.becomePreCandidate();
      voteMsg = MessageType.MsgPreVote;
      term = this.term + 1; // the term we would campaign in
    } else {
      this.becomeCandidate();
      voteMsg = MessageType.MsgVote;
      term = this.term;
    }
    const respType = voteMsg === MessageType.MsgVote ? MessageType.MsgVoteResp : MessageType.MsgPreVoteResp;
    for (const id of this.trk.ids()) {
      if (!this.trk.voters.has(id)) continue;
      if (id === this.id) {
        // Our own vote counts only once it is durable: deliver it to ourselves after persistence.
        this.send(newMessage({ type: respType, to: id, term }));
        continue;
      }
      this.send(
        newMessage({
          type: voteMsg,
          to: id,
          term,
          index: this.raftLog.lastIndex(),
          logTerm: this.raftLog.lastTerm(),
          ...(t === 'transfer' ? { context: CAMPAIGN_TRANSFER } : {}),
        }),
      );
    }
  }

  poll(id: NodeId, granted: boolean): VoteResult {
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes().result;
  }

  // ---- the single entry point ----

  step(m: Message): RaftError | null {
    if (m.term === 0) {
      // local message (or a forwarded proposal / read)
    } else if (m.term > this.term) {
      if (m.type === MessageType.MsgVote || m.type === MessageType.MsgPreVote) {
        const force = m.context !== undefined && Buffer.from(m.context).equals(CAMPAIGN_TRANSFER);
        const inLease = this.cfg.checkQuorum && this.lead !== None && this.electionElapsed < this.cfg.electionTick;
        // In lease: we heard from a live leader recently; ignore the (pre)vote so that a node
        // rejoining from a partition cannot depose it.
        if (!force && inLease) return null;
      }
      if (m.type === MessageType.MsgPreVote) {
        // Never change our term in response to a pre-vote.
      } else if (m.type === MessageType.MsgPreVoteResp && !m.reject) {
        // The term in a granted pre-vote response is the future term; we bump when we win.
      } else if (m.type === MessageType.MsgApp || m.type === MessageType.MsgHeartbeat || m.type === MessageType.MsgSnap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, None);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === MessageType.MsgHeartbeat || m.type === MessageType.MsgApp)) {
        // A stale leader, maybe back from a partition. Tell it our term so it steps down; with
        // pre-vote or check-quorum, otherwise nothing would ever bump its term.
        this.send(newMessage({ type: MessageType.MsgAppResp, to: m.from }));
      } else if (m.type === MessageType.MsgPreVote) {
        this.send(newMessage({ type: MessageType.MsgPreVoteResp, to: m.from, term: this.term, reject: true }));
      }
      return null; // ignore other stale messages
    }

    switch (m.type) {
      case MessageType.MsgHup:
        this.hup(this.cfg.preVote ? 'prevote' : 'election');
        return null;
      case MessageType.MsgVote:
      case MessageType.MsgPreVote:
        this.handleVoteRequest(m);
        return null;
      default:
        return this.stepFn(this, m);
    }
  }

  private handleVoteRequest(m: Message): void {
    const canVote =
      this.vote === m.from ||
      // We have not voted and we do not think there is a leader in this term.
      (this.vote === None && this.lead === None) ||
      // A pre-vote for a future term.
      (m.type === MessageType.MsgPreVote && m.term > this.term);
    const upToDate = this.cfg.bugs.voteForShorterLog === true || this.raftLog.isUpToDate(m.index, m.logTerm);
    const respType = m.type === MessageType.MsgVote ? MessageType.MsgVoteResp : MessageType.MsgPreVoteResp;
    if (canVote && upToDate) {
      // The response carries the request's term: for a pre-vote the candidate's future term.
      this.send(newMessage({ type: respType, to: m.from, term: m.term }));
      if (m.type === MessageType.MsgVote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(newMessage({ type: respType, to: m.from, term: this.term, reject: true }));
    }
  }

  // ---- leader helpers used by step functions ----

  /** Appends entries to the leader's log. Returns false if dropped by the uncommitted size limit. */
  appendEntry(es: Entry[]): boolean {
    assert(this.state === StateRole.Leader, 'only a leader appends proposals');
    let li = this.raftLog.lastIndex();
    const ents: Entry[] = es.map((e, i) => ({ term: this.term, index: li + 1 + i, type: e.type, data: e.data }));
    if (!this.increaseUncommittedSize(ents)) return false;
    li = this.raftLog.append(ents);
    // The leader acknowledges its own entries once they are durable, like any follower.
    this.send(newMessage({ type: MessageType.MsgAppResp, to: this.id, index: li }));
    return true;
  }

  committedEntryInCurrentTerm(): boolean {
    return this.raftLog.term(this.raftLog.committed) === this.term;
  }

  private increaseUncommittedSize(ents: Entry[]): boolean {
    let s = 0;
    for (const e of ents) s += payloadSize(e);
    const max = this.cfg.maxUncommittedEntriesSize;
    if (max > 0 && this.uncommittedSize > 0 && s > 0 && this.uncommittedSize + s > max) return false;
    this.uncommittedSize += s;
    return true;
  }

  reduceUncommittedSize(ents: Entry[]): void {
    if (this.uncommittedSize === 0) return;
    let s = 0;
    for (const e of ents) s += payloadSize(e);
    this.uncommittedSize = s > this.uncommittedSize ? 0 : this.uncommittedSize - s;
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = None;
  }

  // ---- snapshots and membership ----

  /** Follower: installs a snapshot if it is newer than our commit and we are in its configuration. */
  restore(s: Snapshot): boolean {
    const md = s.metadata;
    if (md.index <= this.raftLog.committed) return false;
    if (this.state !== StateRole.Follower) {
      // Defense in depth: only followers receive snapshots (MsgSnap makes us one).
      this.becomeFollower(this.term + 1, None);
      return false;
    }
    const cs = md.confState;
    if (!cs.voters.includes(this.id) && !cs.learners.includes(this.id)) return false;
    if (this.raftLog.matchTerm(md.index, md.term)) {
      // We already have the entry: fast-forward commit instead of discarding the log.
      this.raftLog.commitTo(md.index);
      return false;
    }
    this.raftLog.restore(s);
    restoreTracker(this.trk, cs, this.raftLog.lastIndex() + 1);
    const self = this.trk.progress.get(this.id);
    assert(self !== undefined, 'restored snapshot must include self');
    self.maybeUpdate(self.next - 1);
    return true;
  }

  /** Applies a committed conf change (called by the application when it applies the entry). */
  applyConfChange(cc: ConfChange): ConfState {
    // A new member starts probing at our last entry (etcd: Next = lastIndex), not past it: then
    // the probe below has an entry to carry and goes out now. With lastIndex + 1 it had nothing
    // to send, and a new member waited for the next heartbeat or proposal to be contacted.
    const err = applyConfChangeToTracker(this.trk, cc, Math.max(this.raftLog.lastIndex(), 1));
    assert(err === null, `invalid conf change reached apply: ${err}`);
    const cs = this.trk.confState();
    if (this.state !== StateRole.Leader) return cs;
    const self = this.trk.progress.get(this.id);
    if (self === undefined || self.isLearner) {
      // The leader removed or demoted itself. Stepping down at once can deadlock: the remaining
      // voters may not know the change is committed (so they still need our vote) while our log is
      // longer than theirs (so we refuse it). Instead keep leading (proposals are dropped) until
      // the most caught-up voter has everything, then hand over with MsgTimeoutNow.
      bcastAppend(this);
      this.handOverAfterRemoval();
      return cs;
    }
    if (maybeCommit(this)) {
      // The quorum changed and more is committed: tell everyone.
      bcastAppend(this);
    } else {
      // Probe new members at once; send pending entries to anyone who can take them.
      for (const id of this.trk.ids()) if (id !== this.id) maybeSendAppend(this, id, false);
    }
    if (this.leadTransferee !== None && !this.trk.voters.has(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  /** Leader no longer a voter: transfer leadership to the voter with the highest match. */
  handOverAfterRemoval(): void {
    let best: NodeId = None;
    let bestMatch = -1;
    for (const id of this.trk.ids()) {
      const pr = this.trk.progress.get(id)!;
      if (id === this.id || pr.isLearner) continue;
      if (pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    if (best === None) {
      this.becomeFollower(this.term, None);
      return;
    }
    this.electionElapsed = 0;
    this.leadTransferee = best;
    if (bestMatch === this.raftLog.lastIndex()) sendTimeoutNow(this, best);
    else maybeSendAppend(this, best, true);
  }

}
