// Deterministic whole-cluster simulation: nodes, a faulty network, a disk that loses unsynced writes
// on crash, and clients issuing writes, linearizable reads, membership changes and leadership
// transfers. One seeded RNG drives everything, so a seed replays exactly.
//
// Time is measured in units; every node ticks once per TICK_UNITS (with its own phase). A run has a
// fault phase, then a heal phase (network healed, crashed members restarted, no new client work)
// within which a leader must emerge and every pending request resolve (liveness).

import { Rng } from '../../src/util/rng';
import {
  ConfChangeType,
  decodeConfChange,
  describeMessage,
  EntryType,
  MemoryStorage,
  RawNode,
  StateRole,
} from '../../src/raft';
import type { ConfState, Entry, Message, NodeId, Ready } from '../../src/raft';
import { Checker, SimViolation } from './checker';
import type { FaultMix } from './faults';
import { Kv, encodeWrite } from './kv';

export const TICK_UNITS = 4;
const ELECTION_TICK = 10;
/** A client gives up waiting and retries after this many ticks. */
const CLIENT_RETRY_TICKS = 40;
const READY_LOOPS_PER_UNIT_MAX = 4;
const VERBOSE = process.env['SIM_VERBOSE'] === '1';

interface InFlight {
  msg: Message;
}

interface PendingWrite {
  reqId: number;
  key: string;
  value: string;
  retryAt: number;
  ackIndex?: number;
}

interface PendingRead {
  readId: number;
  key: string;
  /** Highest index of a write acknowledged before this read started. */
  mustCover: number;
  retryAt: number;
  attempts: number;
  done: boolean;
}

class SimNode {
  raw!: RawNode;
  kv = new Kv();
  alive = true;
  removed = false;
  /** Members this node applied a removal of: their messages are dropped (etcd's transport does so). */
  removedPeers = new Set<NodeId>();
  confState: ConfState = { voters: [], learners: [] };
  appliedIndex = 0;
  lastSnapIndex = 0;
  tickPhase: number;
  writing: { rd: Ready; doneAt: number } | undefined = undefined;
  /** ReadStates received, waiting for applied >= index. */
  readsWaiting: { readId: number; index: number }[] = [];

  constructor(
    readonly id: NodeId,
    public storage: MemoryStorage,
    tickPhase: number,
  ) {
    this.tickPhase = tickPhase;
  }
}

export interface SimResult {
  seed: number;
  ticks: number;
  writesAcked: number;
  readsServed: number;
  leaderChanges: number;
  crashes: number;
  confChanges: number;
  snapshotsSent: number;
  messages: number;
}

export class Simulation {
  readonly rng: Rng;
  readonly checker = new Checker();
  private nodes = new Map<NodeId, SimNode>();
  private net = new Map<number, InFlight[]>();
  private now = 0;
  private partition: ((from: NodeId, to: NodeId) => boolean) | undefined = undefined;
  private healing = false;
  private nextReqId = 1;
  private nextReadId = 1;
  private nextNodeId: bigint;
  private writes = new Map<number, PendingWrite>();
  private reads = new Map<number, PendingRead>();
  private maxAckedIndex = 0;
  private lastLeader: NodeId = 0n;
  private trace: string[] = [];
  readonly result: SimResult;

  constructor(
    readonly seed: number,
    readonly mix: FaultMix,
  ) {
    this.rng = new Rng(seed);
    this.result = {
      seed,
      ticks: 0,
      writesAcked: 0,
      readsServed: 0,
      leaderChanges: 0,
      crashes: 0,
      confChanges: 0,
      snapshotsSent: 0,
      messages: 0,
    };
    const voters: bigint[] = [];
    for (let i = 1; i <= mix.clusterSize; i++) voters.push(BigInt(i));
    this.nextNodeId = BigInt(mix.clusterSize + 1);
    for (const id of voters) this.startNode(id, MemoryStorage.bootstrap(voters));
  }

  private log(s: string): void {
    if (VERBOSE) console.log(`t=${this.now} ${s}`);
    this.trace.push(`t=${this.now} ${s}`);
    if (this.trace.length > 40) this.trace.shift();
  }

  recentTrace(): string {
    return this.trace.join('\n');
  }

  // ---- nodes, disk ----

  private startNode(id: NodeId, storage: MemoryStorage): SimNode {
    let n = this.nodes.get(id);
    if (n === undefined) {
      n = new SimNode(id, storage, this.rng.int(TICK_UNITS));
      this.nodes.set(id, n);
    }
    n.alive = true;
    n.writing = undefined;
    n.readsWaiting = [];
    const snap = storage.snapshot();
    if (typeof snap === 'string') throw new Error('memory storage always has a snapshot');
    n.kv = Kv.decode(snap.data);
    n.confState = storage.initialState().confState;
    n.appliedIndex = snap.metadata.index;
    n.lastSnapIndex = snap.metadata.index;
    n.raw = new RawNode(
      {
        id,
        electionTick: ELECTION_TICK,
        heartbeatTick: 1,
        preVote: this.mix.preVote,
        checkQuorum: this.mix.checkQuorum,
        maxSizePerMsg: this.mix.maxSizePerMsg,
        maxInflightMsgs: this.mix.maxInflightMsgs,
        seed: this.rng.nextU32(),
        // The state machine restarts from the snapshot, which may be ahead of the compaction point.
        applied: snap.metadata.index,
        bugs: this.mix.bugs,
      },
      storage,
    );
    this.checker.onReset(id, n.raw.raft.raftLog.committed, n.appliedIndex);
    return n;
  }

  private crash(n: SimNode): void {
    n.alive = false;
    n.writing = undefined; // unsynced writes are lost
    this.result.crashes++;
    this.log(`crash ${n.id}`);
  }

  private restart(n: SimNode): void {
    this.log(`restart ${n.id}`);
    this.startNode(n.id, n.storage);
  }

  /** Handles Readys: send now, persist after the disk latency, then apply and advance. */
  private processNode(n: SimNode): void {
    for (let loop = 0; loop < READY_LOOPS_PER_UNIT_MAX && n.alive; loop++) {
      if (n.writing !== undefined) {
        if (n.writing.doneAt > this.now) return;
        const rd = n.writing.rd;
        n.writing = undefined;
        this.completeReady(n, rd);
        continue;
      }
      if (!n.raw.hasReady()) return;
      const rd = n.raw.ready();
      if (VERBOSE) this.log(`ready ${n.id}: hs=${JSON.stringify(rd.hardState, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))} ents=${rd.entries.map((e) => e.term + '/' + e.index).join(',')} committed=${rd.committedEntries.map((e) => e.index).join(',')} msgs=${rd.messages.length}`);
      this.observe(n);
      for (const m of rd.messages) this.send(m);
      const latency = rd.mustSync ? this.rng.int(this.mix.maxDiskLatencyUnits + 1) : 0;
      n.writing = { rd, doneAt: this.now + latency };
    }
  }

  private completeReady(n: SimNode, rd: Ready): void {
    const st = n.storage;
    if (rd.snapshot !== undefined) {
      st.applySnapshot(rd.snapshot);
      n.kv = Kv.decode(rd.snapshot.data);
      n.confState = rd.snapshot.metadata.confState;
      n.appliedIndex = rd.snapshot.metadata.index;
      n.lastSnapIndex = rd.snapshot.metadata.index;
      this.checker.onReset(n.id, Math.max(rd.snapshot.metadata.index, n.raw.raft.raftLog.committed), rd.snapshot.metadata.index);
    }
    if (rd.entries.length > 0) {
      st.append(rd.entries);
      this.checker.onPersist(n.id, rd.entries, (i) => {
        const t = st.term(i);
        return typeof t === 'number' ? t : undefined;
      });
    }
    if (rd.hardState !== undefined) st.setHardState(rd.hardState);
    for (const e of rd.committedEntries) this.apply(n, e);
    for (const rs of rd.readStates) {
      const readId = Number(new TextDecoder().decode(rs.ctx).split('.')[0]);
      const r = this.reads.get(readId);
      if (r !== undefined) this.checker.onReadState(n.id, readId, rs.index, r.mustCover);
      n.readsWaiting.push({ readId, index: rs.index });
    }
    n.raw.advance(rd);
    this.observe(n);
    this.serveReads(n);
    this.maybeSnapshot(n);
  }

  private apply(n: SimNode, e: Entry): void {
    this.checker.onApply(n.id, e);
    n.appliedIndex = e.index;
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      n.confState = n.raw.applyConfChange(cc);
      this.result.confChanges++;
      this.log(`node ${n.id} applied conf change ${ConfChangeType[cc.type]} ${cc.nodeId} at ${e.index}`);
      // The membership store survives restarts (it lives in the backend in etcd).
      if (cc.type === ConfChangeType.RemoveNode) n.removedPeers.add(cc.nodeId);
      this.onConfChangeApplied(cc.type, cc.nodeId);
      // Snapshot right after a membership change, so a joining member is in the snapshot it gets.
      n.lastSnapIndex = -Infinity;
      return;
    }
    const res = n.kv.apply(e);
    if (res === undefined) return;
    const w = this.writes.get(res.reqId);
    if (w !== undefined && w.ackIndex === undefined) {
      w.ackIndex = res.firstIndex;
      this.writes.delete(res.reqId);
      this.result.writesAcked++;
      if (res.firstIndex > this.maxAckedIndex) this.maxAckedIndex = res.firstIndex;
    }
  }

  private onConfChangeApplied(type: ConfChangeType, id: NodeId): void {
    if (type === ConfChangeType.AddLearnerNode && !this.nodes.has(id)) {
      this.log(`start new member ${id}`);
      this.startNode(id, new MemoryStorage());
    }
    if (type === ConfChangeType.RemoveNode) {
      const n = this.nodes.get(id);
      if (n !== undefined) n.removed = true;
    }
  }

  private serveReads(n: SimNode): void {
    if (n.readsWaiting.length === 0) return;
    const still: { readId: number; index: number }[] = [];
    for (const w of n.readsWaiting) {
      if (n.appliedIndex < w.index) {
        still.push(w);
        continue;
      }
      const r = this.reads.get(w.readId);
      if (r === undefined || r.done) continue;
      r.done = true;
      void n.kv.values.get(r.key); // the value a client would get: state at applied >= read index
      this.reads.delete(w.readId);
      this.result.readsServed++;
    }
    n.readsWaiting = still;
  }

  private maybeSnapshot(n: SimNode): void {
    if (n.appliedIndex - n.lastSnapIndex < this.mix.snapshotInterval || n.appliedIndex === 0) return;
    const st = n.storage;
    if (n.appliedIndex > st.lastIndex()) return;
    const snap = st.createSnapshot(n.appliedIndex, n.confState, n.kv.encode());
    n.lastSnapIndex = n.appliedIndex;
    if (snap === 'out-of-date') return;
    const compactTo = n.appliedIndex - this.mix.compactionLag;
    if (compactTo > st.firstIndex()) st.compact(compactTo);
  }

  /** Cheap per-step observation of raft state for the safety checker. */
  private observe(n: SimNode): void {
    const r = n.raw.raft;
    this.checker.onCommit(n.id, r.term, r.raftLog, r.state === StateRole.Leader);
    if (r.state === StateRole.Leader) {
      this.checker.onLeader(n.id, r.term, r.raftLog);
      if (this.lastLeader !== n.id) {
        this.lastLeader = n.id;
        if (!this.healing && this.partition === undefined && this.rng.chance(this.mix.isolateNewLeaderRate)) {
          const victim = n.id;
          this.partition = (a, b) => a === victim || b === victim;
          this.log(`partition isolate new leader ${victim}`);
        }
        this.result.leaderChanges++;
        this.log(`leader ${n.id} term ${r.term}`);
      }
    }
  }

  // ---- network ----

  private send(m: Message): void {
    this.result.messages++;
    if (m.snapshot !== undefined) this.result.snapshotsSent++;
    const from = this.nodes.get(m.from);
    const drop = !this.healing && this.rng.chance(this.mix.dropRate);
    const cut = this.partition !== undefined && this.partition(m.from, m.to);
    if (drop || cut) {
      if (m.snapshot !== undefined && from !== undefined && from.alive) from.raw.reportSnapshot(m.to, false);
      else if (from !== undefined && from.alive && this.rng.chance(0.1)) from.raw.reportUnreachable(m.to);
      return;
    }
    const copies = !this.healing && this.rng.chance(this.mix.dupRate) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const at = this.now + 1 + this.rng.int(this.mix.maxDelayUnits);
      let q = this.net.get(at);
      if (q === undefined) this.net.set(at, (q = []));
      q.push({ msg: m });
    }
  }

  private deliver(): void {
    const q = this.net.get(this.now);
    if (q === undefined) return;
    this.net.delete(this.now);
    for (const { msg } of q) {
      const to = this.nodes.get(msg.to);
      const lost = to === undefined || !to.alive || (this.partition !== undefined && this.partition(msg.from, msg.to));
      if (lost || to === undefined) {
        // The transport must report a snapshot it failed to deliver, or the leader waits forever.
        const from = this.nodes.get(msg.from);
        if (msg.snapshot !== undefined && from !== undefined && from.alive) from.raw.reportSnapshot(msg.to, false);
        continue;
      }
      // Like etcd's transport, members drop traffic from removed members (IDs are never reused):
      // a removed node that never learned of its removal would otherwise keep calling elections.
      if (to.removedPeers.has(msg.from)) continue;
      if (VERBOSE) this.log(`deliver ${describeMessage(msg)}`);
      to.raw.step(msg);
      this.observe(to);
      if (msg.snapshot !== undefined) {
        const from = this.nodes.get(msg.from);
        if (from !== undefined && from.alive) from.raw.reportSnapshot(msg.to, true);
      }
    }
  }

  // ---- faults ----

  private members(): SimNode[] {
    return [...this.nodes.values()].filter((n) => !n.removed);
  }

  private faults(): void {
    const m = this.mix;
    const members = this.members();
    if (this.partition === undefined && this.rng.chance(m.partitionRate) && members.length > 1) {
      const kind = this.rng.int(3);
      const ids = members.map((n) => n.id);
      if (kind === 0) {
        // symmetric split into two sides
        const side = new Set(ids.filter(() => this.rng.chance(0.5)));
        this.partition = (a, b) => side.has(a) !== side.has(b);
        this.log(`partition symmetric {${[...side].join(',')}}`);
      } else if (kind === 1) {
        // asymmetric: one node cannot send to some others (but hears them)
        const victim = this.rng.pick(ids);
        const deaf = new Set(ids.filter((x) => x !== victim && this.rng.chance(0.7)));
        this.partition = (a, b) => a === victim && deaf.has(b);
        this.log(`partition asymmetric ${victim} -/-> {${[...deaf].join(',')}}`);
      } else {
        // Isolate a node; half the time the current leader (old leaders with divergent tails).
        const l = this.leader();
        const victim = l !== undefined && this.rng.chance(0.5) ? l.id : this.rng.pick(ids);
        this.partition = (a, b) => a === victim || b === victim;
        this.log(`partition isolate ${victim}`);
      }
    } else if (this.partition !== undefined && this.rng.chance(m.healRate)) {
      this.partition = undefined;
      this.log('partition healed');
    }
    if (this.rng.chance(m.crashRate)) {
      const alive = members.filter((n) => n.alive);
      if (alive.length > 0) this.crash(this.rng.pick(alive));
    }
    if (this.rng.chance(m.restartRate)) {
      const dead = members.filter((n) => !n.alive);
      if (dead.length > 0) this.restart(this.rng.pick(dead));
    }
  }

  // ---- clients ----

  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (!n.alive || n.raw.raft.state !== StateRole.Leader) continue;
      if (best === undefined || n.raw.raft.term > best.raw.raft.term) best = n;
    }
    return best;
  }

  private pickTarget(): SimNode | undefined {
    const l = this.leader();
    if (l !== undefined && this.rng.chance(0.5)) return l;
    // Sometimes a node that believes it leads (maybe a stale leader behind a partition): clients
    // are not partitioned from servers, and such a node must neither lose writes nor serve stale reads.
    const leaders = [...this.nodes.values()].filter((n) => n.alive && n.raw.raft.state === StateRole.Leader);
    if (leaders.length > 0 && this.rng.chance(0.5)) return this.rng.pick(leaders);
    const alive = this.members().filter((n) => n.alive);
    return alive.length === 0 ? undefined : this.rng.pick(alive);
  }

  private sendWrite(w: PendingWrite): void {
    w.retryAt = this.now + CLIENT_RETRY_TICKS * TICK_UNITS;
    const n = this.pickTarget();
    if (n === undefined) return;
    const err = n.raw.propose(encodeWrite(w.reqId, w.key, w.value));
    this.observe(n);
    if (err !== null) w.retryAt = this.now + TICK_UNITS; // dropped: retry soon elsewhere
  }

  private sendRead(r: PendingRead): void {
    r.retryAt = this.now + CLIENT_RETRY_TICKS * TICK_UNITS;
    const n = this.pickTarget();
    if (n === undefined) return;
    // Each attempt needs its own ctx: raft matches heartbeat acks to requests by ctx, so reusing
    // one would let a late ack from an earlier round confirm a later request (a stale read; the
    // simulation found this in the first version of this client). Every attempt's answer must
    // satisfy the read's bound.
    r.attempts++;
    n.raw.readIndex(new TextEncoder().encode(`${r.readId}.${r.attempts}`));
    this.observe(n);
  }

  private clients(): void {
    const m = this.mix;
    if (!this.healing) {
      if (this.rng.chance(m.writeRate)) {
        const w: PendingWrite = { reqId: this.nextReqId++, key: `k${this.rng.int(5)}`, value: `v${this.now}`, retryAt: 0 };
        this.writes.set(w.reqId, w);
        this.sendWrite(w);
      }
      if (this.rng.chance(m.readRate)) {
        const r: PendingRead = { readId: this.nextReadId++, key: `k${this.rng.int(5)}`, mustCover: this.maxAckedIndex, retryAt: 0, attempts: 0, done: false };
        this.reads.set(r.readId, r);
        this.sendRead(r);
      }
      if (this.rng.chance(m.confChangeRate)) this.changeMembership();
      if (this.rng.chance(m.transferRate)) {
        const l = this.leader();
        if (l !== undefined) {
          const voters = l.confState.voters.filter((v) => v !== l.id);
          if (voters.length > 0) {
            const to = this.rng.pick(voters);
            this.log(`transfer leadership ${l.id} -> ${to}`);
            l.raw.transferLeader(to);
            this.observe(l);
          }
        }
      }
    }
    for (const w of this.writes.values()) if (w.retryAt <= this.now) this.sendWrite(w);
    for (const r of this.reads.values()) if (r.retryAt <= this.now) this.sendRead(r);
  }

  private changeMembership(): void {
    const l = this.leader();
    if (l === undefined) return;
    const cs = l.confState;
    const size = this.mix.clusterSize;
    let type: ConfChangeType;
    let id: NodeId;
    if (cs.learners.length > 0) {
      type = ConfChangeType.AddNode; // promote
      id = this.rng.pick(cs.learners);
    } else if (cs.voters.length <= size && this.nextNodeId <= BigInt(size + 3)) {
      type = ConfChangeType.AddLearnerNode;
      id = this.nextNodeId++;
    } else if (cs.voters.length > size) {
      type = ConfChangeType.RemoveNode;
      id = this.rng.pick(cs.voters);
    } else {
      return;
    }
    this.log(`propose conf change ${ConfChangeType[type]} ${id} at leader ${l.id}`);
    l.raw.proposeConfChange({ type, nodeId: id });
    this.observe(l);
  }

  // ---- the run ----

  private stepUnit(): void {
    for (const n of this.nodes.values()) {
      if (n.alive && (this.now + n.tickPhase) % TICK_UNITS === 0) {
        n.raw.tick();
        this.observe(n);
      }
    }
    this.deliver();
    if (this.now % TICK_UNITS === 0) {
      this.result.ticks++;
      if (!this.healing) this.faults();
      this.clients();
    }
    for (const n of this.nodes.values()) this.processNode(n);
    this.now++;
  }

  private heal(): void {
    this.healing = true;
    this.partition = undefined;
    for (const n of this.members()) if (!n.alive) this.restart(n);
    this.log('heal: network healed, members restarted');
  }

  /** Runs the fault phase and the heal phase. Throws SimViolation on a broken invariant. */
  run(): SimResult {
    const faultUnits = this.mix.faultTicks * TICK_UNITS;
    while (this.now < faultUnits) this.stepUnit();
    this.heal();
    const deadline = this.now + this.mix.healTicks * TICK_UNITS;
    while (this.now < deadline) {
      this.stepUnit();
      if (this.settled()) return this.result;
    }
    const l = this.leader();
    throw new SimViolation(
      `liveness: ${this.mix.healTicks} ticks after healing, leader=${l?.id ?? 'none'}, ` +
        `${this.writes.size} writes and ${this.reads.size} reads still pending`,
    );
  }

  private settled(): boolean {
    if (this.writes.size > 0 || this.reads.size > 0) return false;
    const l = this.leader();
    return l !== undefined && !l.removed;
  }
}

export interface SeedOutcome {
  ok: boolean;
  seed: number;
  mixName: string;
  error?: string;
  result?: SimResult;
}

export function isViolation(e: unknown): boolean {
  return e instanceof SimViolation;
}
