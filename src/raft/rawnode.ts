// RawNode: the synchronous API the server's event loop drives (etcd rawnode.go, without goroutines).
//
// THE READY CONTRACT. Inputs: tick(), step(), propose(), proposeConfChange(), readIndex(),
// transferLeader(), campaign(). Output: when hasReady(), call ready(), then in this order:
//   1. Send rd.messages. They may go out BEFORE this Ready is persisted: they never depend on it.
//      (A leader's MsgApps race its own fsync — thesis 10.2.1 — because the leader counts itself
//      towards commit only once its entries are durable.)
//   2. Persist rd.snapshot (if any), rd.entries (replacing any stored entries at or after the first
//      one's index) and rd.hardState (if any) — durably, if rd.mustSync.
//   3. Apply rd.snapshot and then rd.committedEntries to the state machine; for every ConfChange
//      entry call applyConfChange(). Serve rd.readStates once applied >= their index.
//   4. Call advance(rd). Only one Ready may be outstanding.
// Why this is safe: every message that promises something about local durable state (MsgAppResp,
// MsgVoteResp, MsgPreVoteResp, and the node's own vote and log acknowledgements) is held back and
// released in a Ready *after* advance() — i.e. after the state it depends on was persisted. If a
// Ready changes the term or vote, all its messages are held back too, so no peer ever sees a term
// (or a MsgVote) this node could forget in a crash.

import { assert } from '../util/assert';
import type { Config } from './config';
import type { RaftError } from './errors';
import { ErrStepLocalMsg, ErrStepPeerNotFound } from './errors';
import type { Progress } from './progress';
import { Raft } from './raft';
import type { Storage } from './storage';
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, ReadState, Snapshot, SoftState } from './types';
import { encodeConfChange, EntryType, hardStateEqual, isLocalMsg, isResponseMsg, MessageType, newMessage, StateRole } from './types';

export interface Ready {
  /** Set when leader or role changed. Informational; never persisted. */
  softState?: SoftState;
  /** Set when term, vote or commit changed: persist it. */
  hardState?: HardState;
  /** ReadIndex results: serve each read once applied >= index. */
  readStates: ReadState[];
  /** Entries to append to stable storage (after any snapshot). */
  entries: Entry[];
  /** A snapshot to install (persist, then load into the state machine). */
  snapshot?: Snapshot;
  /** Committed entries to apply, in order. May include entries of `entries`: persist first. */
  committedEntries: Entry[];
  /** Messages to send now. */
  messages: Message[];
  /** Whether the hard state and entries must be fsynced before advance() (vs. written lazily). */
  mustSync: boolean;
}

export interface Status {
  id: NodeId;
  hardState: HardState;
  softState: SoftState;
  applied: number;
  leadTransferee: NodeId;
  /** Leader only. */
  progress?: Map<NodeId, Progress>;
}

export class RawNode {
  readonly raft: Raft;
  private prevSoftSt: SoftState;
  /** The last HardState handed out in a Ready (i.e. what the application has or is persisting). */
  private prevHardSt: HardState;
  private outstanding: Ready | undefined = undefined;
  /** Messages handed out with the outstanding Ready's state, released after its advance(). */
  private held: Message[] = [];
  /** Messages released by the last advance(), to go out in the next Ready. */
  private released: Message[] = [];

  constructor(config: Config, storage: Storage) {
    this.raft = new Raft(config, storage);
    this.prevSoftSt = this.raft.softState();
    this.prevHardSt = this.raft.hardState();
  }

  tick(): void {
    this.raft.tick();
  }

  /** Campaigns now (pre-vote first if enabled). */
  campaign(): void {
    this.raft.step(newMessage({ type: MessageType.MsgHup, from: this.raft.id }));
  }

  /** Proposes data to be appended. Forwarded to the leader from a follower; may be dropped silently. */
  propose(data: Uint8Array): RaftError | null {
    return this.raft.step(
      newMessage({ type: MessageType.MsgProp, from: this.raft.id, entries: [{ term: 0, index: 0, type: EntryType.Normal, data }] }),
    );
  }

  /** Proposes many entries at once (one MsgProp, one batch in the log). */
  proposeBatch(datas: Uint8Array[]): RaftError | null {
    assert(datas.length > 0, 'proposeBatch needs at least one entry');
    const entries = datas.map((data) => ({ term: 0, index: 0, type: EntryType.Normal, data }));
    return this.raft.step(newMessage({ type: MessageType.MsgProp, from: this.raft.id, entries }));
  }

  proposeConfChange(cc: ConfChange): RaftError | null {
    const entry: Entry = { term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) };
    return this.raft.step(newMessage({ type: MessageType.MsgProp, from: this.raft.id, entries: [entry] }));
  }

  /** Applies a committed conf change; returns the new configuration. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /** Requests a linearizable read point; the answer comes as a ReadState carrying ctx (or never: retry). */
  readIndex(ctx: Uint8Array): void {
    this.raft.step(
      newMessage({ type: MessageType.MsgReadIndex, from: this.raft.id, entries: [{ term: 0, index: 0, type: EntryType.Normal, data: ctx }] }),
    );
  }

  transferLeader(transferee: NodeId): void {
    this.raft.step(newMessage({ type: MessageType.MsgTransferLeader, from: transferee }));
  }

  /** Feeds a message received from a peer. */
  step(m: Message): RaftError | null {
    if (isLocalMsg(m.type)) return ErrStepLocalMsg;
    if (isResponseMsg(m.type) && !this.raft.trk.progress.has(m.from)) return ErrStepPeerNotFound;
    return this.raft.step(m);
  }

  reportUnreachable(id: NodeId): void {
    this.raft.step(newMessage({ type: MessageType.MsgUnreachable, from: id }));
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(newMessage({ type: MessageType.MsgSnapStatus, from: id, reject: !ok }));
  }

  hasReady(): boolean {
    const r = this.raft;
    if (this.outstanding !== undefined) return false;
    const ss = r.softState();
    if (ss.lead !== this.prevSoftSt.lead || ss.role !== this.prevSoftSt.role) return true;
    if (!hardStateEqual(r.hardState(), this.prevHardSt)) return true;
    if (r.raftLog.unstable.snapshot !== undefined) return true;
    if (r.raftLog.unstable.entries.length > 0) return true;
    if (r.msgs.length > 0 || r.msgsAfterAppend.length > 0 || this.released.length > 0) return true;
    if (r.raftLog.hasNextCommittedEnts()) return true;
    return r.readStates.length > 0;
  }

  ready(): Ready {
    assert(this.outstanding === undefined, 'ready() called again before advance()');
    const r = this.raft;
    const rd: Ready = {
      readStates: r.readStates,
      entries: r.raftLog.unstableEntries(),
      committedEntries: r.raftLog.nextCommittedEnts(),
      messages: [],
      mustSync: false,
    };
    r.readStates = [];
    const ss = r.softState();
    if (ss.lead !== this.prevSoftSt.lead || ss.role !== this.prevSoftSt.role) {
      rd.softState = ss;
      this.prevSoftSt = ss;
    }
    const hs = r.hardState();
    let termOrVoteChanged = false;
    if (!hardStateEqual(hs, this.prevHardSt)) {
      rd.hardState = hs;
      termOrVoteChanged = hs.term !== this.prevHardSt.term || hs.vote !== this.prevHardSt.vote;
      this.prevHardSt = hs;
    }
    const snap = r.raftLog.unstable.snapshot;
    if (snap !== undefined) rd.snapshot = snap;
    rd.mustSync = rd.entries.length > 0 || termOrVoteChanged || snap !== undefined;

    // Messages: released ones depend only on state persisted before; new ones may go out now
    // unless the term/vote changed; responses always wait for this Ready to be persisted.
    rd.messages = this.released;
    this.released = [];
    if (termOrVoteChanged) {
      this.held = r.msgs.concat(r.msgsAfterAppend);
    } else {
      for (const m of r.msgs) rd.messages.push(m);
      this.held = r.msgsAfterAppend;
    }
    r.msgs = [];
    r.msgsAfterAppend = [];
    this.outstanding = rd;
    return rd;
  }

  /** Acknowledges that rd was fully handled: persisted, sent, applied. */
  advance(rd: Ready): void {
    assert(this.outstanding === rd, 'advance() must be called with the Ready returned by the last ready()');
    const r = this.raft;
    if (rd.snapshot !== undefined) r.raftLog.stableSnapTo(rd.snapshot.metadata.index);
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      r.raftLog.stableTo(last.index, last.term);
    }
    if (rd.snapshot !== undefined && rd.snapshot.metadata.index > r.raftLog.applied) {
      r.raftLog.appliedTo(rd.snapshot.metadata.index);
    }
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1]!;
      r.raftLog.appliedTo(last.index);
      if (r.state === StateRole.Leader) r.reduceUncommittedSize(rd.committedEntries);
    }
    this.outstanding = undefined;
    const held = this.held;
    this.held = [];
    for (const m of held) {
      if (m.to === r.id) r.step(m); // our own vote / log acknowledgement, now durable
      else this.released.push(m);
    }
  }

  // ---- a read-only view for the application (so that no caller reaches into raft's fields) ----

  get id(): NodeId {
    return this.raft.id;
  }

  /** The leader this node knows of (0n: none). */
  get lead(): NodeId {
    return this.raft.lead;
  }

  get term(): number {
    return this.raft.term;
  }

  /** The highest log index known to be committed. */
  get committed(): number {
    return this.raft.raftLog.committed;
  }

  isLearner(): boolean {
    return this.raft.trk.learners.has(this.raft.id);
  }

  /** Whether `id` is in the current configuration (voter or learner). */
  hasMember(id: NodeId): boolean {
    return this.raft.trk.progress.has(id);
  }

  /** What the leader tracks of `id` (match index, heard from within an election timeout);
   *  undefined for an unknown id. Meaningful on the leader only. */
  progressOf(id: NodeId): { readonly match: number; readonly recentActive: boolean } | undefined {
    return this.raft.trk.progress.get(id);
  }

  status(): Status {
    const r = this.raft;
    const st: Status = {
      id: r.id,
      hardState: r.hardState(),
      softState: r.softState(),
      applied: r.raftLog.applied,
      leadTransferee: r.leadTransferee,
    };
    if (r.state === StateRole.Leader) st.progress = r.trk.progress;
    return st;
  }
}
