// The world a golden trace runs in (after etcd-io/raft's rafttest.InteractionEnv): RawNodes with
// MemoryStorage, one queue of in-flight messages, and an output buffer. Nothing happens unless a
// command says so: no clock, no background delivery. Each node runs the Ready loop of
// docs/raft.md synchronously when told to (process-ready), and messages move only on
// deliver-msgs / stabilize, so every interleaving in a trace is spelled out.
//
// The core has no logger; the INFO/DEBUG lines of a trace are derived here by comparing a node's
// state before and after each call into it (a new campaign round, role and term, configuration,
// the leader's view of each follower's progress state).

import { assert } from '../../../src/util/assert';
import { decodeConfChange, EntryType, MemoryStorage, MessageType, ProgressState, RawNode, StateRole } from '../../../src/raft';
import type { Config, ConfState, Message, NodeId, RaftError, Ready, Snapshot } from '../../../src/raft';
import { describeConfState, describeEntry, describeMessage, describeProgress, describeReady } from './describe';

export type LogLevel = 'none' | 'info' | 'debug';

/** One member: its RawNode, its "disk", and its state machine's history (for snapshots). */
export interface Node {
  readonly id: NodeId;
  readonly raw: RawNode;
  readonly storage: MemoryStorage;
  readonly config: Config;
  /**
   * The state machine after each applied index: an appender (the data of every applied normal
   * entry, concatenated) plus the configuration. compact and conf changes snapshot from it.
   */
  readonly history: Snapshot[];
}

/** Bound on stabilize's rounds: a scenario that does not quiesce is a bug, not a long test. */
export const STABILIZE_ROUNDS_MAX = 1000;

interface Observed {
  role: StateRole;
  term: number;
  conf: string;
  progress: Map<NodeId, ProgressState>;
  /** The node's own (pre-)vote responses queued: each campaign round queues one. */
  ownVotes: number;
}

const ROLE_NAMES: Record<StateRole, string> = {
  [StateRole.Follower]: 'follower',
  [StateRole.PreCandidate]: 'pre-candidate',
  [StateRole.Candidate]: 'candidate',
  [StateRole.Leader]: 'leader',
};

export function configString(cs: ConfState): string {
  let s = `voters=(${cs.voters.join(' ')})`;
  if (cs.learners.length > 0) s += ` learners=(${cs.learners.join(' ')})`;
  return s;
}

export class InteractionEnv {
  readonly nodes = new Map<NodeId, Node>();
  /** In-flight messages in the order they were sent (no reordering unless a command picks). */
  messages: Message[] = [];
  /** Nodes cut off from everyone: messages from or to them are dropped on delivery. */
  readonly isolated = new Set<NodeId>();
  level: LogLevel = 'debug';
  private out: string[] = [];
  private indent = '';

  // ---- output ----

  /** Harness output (Readys, messages): shown unless the level is none. */
  write(line: string): void {
    if (this.level !== 'none') for (const l of line.split('\n')) this.out.push(this.indent + l);
  }

  /** Errors from raft (a dropped proposal): always shown. */
  writeError(line: string): void {
    this.out.push(this.indent + line);
  }

  private log(level: 'info' | 'debug', line: string): void {
    if (this.level === 'none' || (level === 'debug' && this.level !== 'debug')) return;
    this.out.push(`${this.indent}${level.toUpperCase()} ${line}`);
  }

  withIndent(f: () => void): void {
    const saved = this.indent;
    this.indent += '  ';
    try {
      f();
    } finally {
      this.indent = saved;
    }
  }

  /** The output since the last call ("ok" if there was none). */
  takeOutput(): string {
    const s = this.out.join('\n');
    this.out = [];
    return s === '' ? 'ok' : s;
  }

  // ---- nodes ----

  node(id: NodeId): Node {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id} (nodes: ${[...this.nodes.keys()].join(', ')})`);
    return n;
  }

  /** Adds node `id` on `storage` (bootstrapped or empty); `base` is its state machine at the snapshot. */
  addNode(config: Config, storage: MemoryStorage, base: Snapshot): Node {
    assert(!this.nodes.has(config.id), `node ${config.id} exists`);
    const raw = new RawNode(config, storage);
    const n: Node = { id: config.id, raw, storage, config, history: [base] };
    this.nodes.set(n.id, n);
    const r = raw.raft;
    this.log(
      'info',
      `${n.id} started as ${ROLE_NAMES[r.state]} at term ${r.term}: ${configString(r.trk.confState())}` +
        ` commit=${r.raftLog.committed} applied=${r.raftLog.applied} last=${r.raftLog.lastTerm()}/${r.raftLog.lastIndex()}`,
    );
    return n;
  }

  /** Sorted ids (bigint-safe). */
  ids(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  // ---- observing state changes ----

  private observe(n: Node): Observed {
    const r = n.raw.raft;
    const progress = new Map<NodeId, ProgressState>();
    if (r.state === StateRole.Leader) for (const [id, pr] of r.trk.progress) progress.set(id, pr.state);
    const ownVotes = r.msgsAfterAppend.filter(
      (m) => m.to === n.id && (m.type === MessageType.MsgVoteResp || m.type === MessageType.MsgPreVoteResp),
    ).length;
    return { role: r.state, term: r.term, conf: configString(r.trk.confState()), progress, ownVotes };
  }

  /** Runs f against node n and logs what changed: campaign rounds, role and term, configuration, progress states. */
  call<T>(n: Node, f: () => T): T {
    const before = this.observe(n);
    const res = f();
    const after = this.observe(n);
    const rounds = after.ownVotes - before.ownVotes;
    if (rounds > 0) this.log('info', `${n.id} is starting a new election at term ${before.term}${rounds > 1 ? ` (${rounds} rounds)` : ''}`);
    if (before.role !== after.role || before.term !== after.term) {
      this.log('info', `${n.id} became ${ROLE_NAMES[after.role]} at term ${after.term}`);
    }
    if (before.conf !== after.conf) this.log('info', `${n.id} switched to configuration ${after.conf}`);
    if (after.role === StateRole.Leader && before.role === StateRole.Leader && before.term === after.term) {
      for (const [id, st] of after.progress) {
        if (id === n.id || before.progress.get(id) === st) continue;
        const pr = describeProgress(n.raw.raft.trk.progress.get(id)!);
        if (before.progress.has(id)) this.log('debug', `${n.id} switched progress of ${id} to ${pr}`);
        else this.log('debug', `${n.id} started tracking ${id}: ${pr}`);
      }
    }
    return res;
  }

  /** Runs a call that may return a raft error and prints the error. */
  callErr(n: Node, f: () => RaftError | null): void {
    const err = this.call(n, f);
    if (err !== null) this.writeError(err.message);
  }

  // ---- the Ready loop ----

  /** Handles one Ready of node id: persist, apply, queue the messages, advance. */
  processReady(id: NodeId): void {
    const n = this.node(id);
    if (!n.raw.hasReady()) {
      this.write('<empty Ready>');
      return;
    }
    const r = n.raw.raft;
    const queued = [...r.msgs, ...r.msgsAfterAppend];
    const rd = n.raw.ready();
    const handedOut = new Set(rd.messages);
    this.write(describeReady(rd, queued.filter((m) => !handedOut.has(m))).join('\n'));
    this.call(n, () => {
      this.persist(n, rd);
      this.apply(n, rd);
      this.messages.push(...rd.messages);
      n.raw.advance(rd);
    });
  }

  private persist(n: Node, rd: Ready): void {
    if (rd.snapshot !== undefined) {
      const err = n.storage.applySnapshot(rd.snapshot);
      assert(err === null, `node ${n.id}: snapshot ${rd.snapshot.metadata.index} is out of date`);
    }
    n.storage.append(rd.entries);
    if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
  }

  private apply(n: Node, rd: Ready): void {
    if (rd.snapshot !== undefined) n.history.push(rd.snapshot);
    for (const e of rd.committedEntries) {
      const prev = n.history[n.history.length - 1]!;
      assert(e.index === prev.metadata.index + 1, `node ${n.id} applies ${e.index} after ${prev.metadata.index}`);
      let cs = prev.metadata.confState;
      let data = prev.data;
      if (e.type === EntryType.ConfChange) {
        cs = n.raw.applyConfChange(decodeConfChange(e.data));
      } else {
        data = Buffer.concat([data, e.data]);
      }
      const snap: Snapshot = { data, metadata: { index: e.index, term: e.term, confState: cs } };
      n.history.push(snap);
      // The Ready contract (docs/raft.md): a member added later learns the configuration from a
      // snapshot, so the application snapshots right after applying a conf change.
      if (e.type === EntryType.ConfChange) n.storage.createSnapshot(e.index, cs, data);
    }
  }

  /** The state machine of node n at applied index `index`, if it is still known. */
  stateAt(n: Node, index: number): Snapshot | undefined {
    return n.history.find((s) => s.metadata.index === index);
  }

  // ---- the network ----

  private dropped(m: Message): boolean {
    return this.isolated.has(m.from) || this.isolated.has(m.to);
  }

  /**
   * Delivers (or, for ids in `drop`, drops) the queued messages to each recipient in turn, in
   * queue order; `type` restricts to one message type. Returns how many were taken off the queue.
   */
  deliverMsgs(recipients: { id: NodeId; drop: boolean }[], type?: number): number {
    let count = 0;
    for (const rcpt of recipients) {
      const mine = this.messages.filter((m) => m.to === rcpt.id && (type === undefined || m.type === type));
      this.messages = this.messages.filter((m) => !mine.includes(m));
      count += mine.length;
      for (const m of mine) {
        const lost = rcpt.drop || this.dropped(m);
        this.write(`${lost ? 'dropped: ' : ''}${describeMessage(m)}`);
        if (!lost) {
          const to = this.node(m.to);
          this.callErr(to, () => to.raw.step(m));
        }
        if (m.type === MessageType.MsgSnap) this.reportSnapshot(m, !lost);
      }
    }
    return count;
  }

  /**
   * The transport's duty (docs/raft.md): once a MsgSnap is delivered or lost, tell the sender, or
   * it keeps the follower in StateSnapshot.
   */
  private reportSnapshot(m: Message, ok: boolean): void {
    const from = this.nodes.get(m.from);
    if (from === undefined) return;
    this.write(`reported snapshot ${m.from}->${m.to}: ${ok ? 'delivered' : 'failed'}`);
    this.call(from, () => from.raw.reportSnapshot(m.to, ok));
  }

  /**
   * Until nothing changes: every node with a Ready handles it, then every node receives the
   * messages queued for it. Messages to nodes outside `ids` stay queued.
   */
  stabilize(ids: NodeId[]): void {
    for (let round = 0; round < STABILIZE_ROUNDS_MAX; round++) {
      let done = true;
      for (const id of ids) {
        if (!this.node(id).raw.hasReady()) continue;
        done = false;
        this.write(`> ${id} handling Ready`);
        this.withIndent(() => this.processReady(id));
      }
      for (const id of ids) {
        if (!this.messages.some((m) => m.to === id)) continue;
        done = false;
        this.write(`> ${id} receiving messages`);
        this.withIndent(() => this.deliverMsgs([{ id, drop: false }]));
      }
      if (done) return;
    }
    throw new Error(`stabilize: still not quiescent after ${STABILIZE_ROUNDS_MAX} rounds`);
  }

  // ---- inspection ----

  /** The stable log in storage, one entry a line (etcd's raft-log). */
  describeLog(n: Node): string[] {
    const fi = n.storage.firstIndex();
    const li = n.storage.lastIndex();
    if (li < fi) return [`log is empty: first index=${fi}, last index=${li}`];
    const ents = n.storage.entries(fi, li + 1, Number.MAX_SAFE_INTEGER);
    assert(typeof ents !== 'string', `node ${n.id}: entries [${fi}, ${li}] unavailable`);
    return ents.map(describeEntry);
  }

  describeStatus(n: Node): string[] {
    const st = n.raw.status();
    const r = n.raw.raft;
    let head = `Term:${st.hardState.term} Lead:${st.softState.lead} State:State${st.softState.role}`;
    head += ` Commit:${st.hardState.commit} Applied:${st.applied} ${describeConfState(r.trk.confState())}`;
    if (st.leadTransferee !== 0n) head += ` LeadTransferee:${st.leadTransferee}`;
    const lines = [head];
    if (st.progress !== undefined) {
      for (const id of [...st.progress.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
        lines.push(`${id}: ${describeProgress(st.progress.get(id)!)}`);
      }
    }
    return lines;
  }
}
