// Safety invariants, checked incrementally as the simulation runs (so every step is checked without
// rescanning whole logs). A violation throws SimViolation, which the runner reports with its seed.
//
//   Election safety       at most one leader per term.
//   Log matching          an (index, term) pair names one entry, whose predecessor has one term: by
//                         induction, logs that share an (index, term) agree on every earlier entry.
//   Leader completeness   an entry observed committed by a node at term t is in the log of every
//                         leader elected in a term > t.
//   State machine safety  every node applies the same entry at each index, indexes contiguous.
//   Linearizable reads    a ReadIndex result is >= the index of every write acknowledged before the
//                         read started (so serving at applied >= that index observes the write).

import type { Entry, NodeId } from '../../src/raft';
import type { RaftLog } from '../../src/raft/log';

export class SimViolation extends Error {
  override name = 'SimViolation';
}

interface CommittedRecord {
  term: number;
  /** Term of the observer when it saw the entry committed. */
  observedAtTerm: number;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a === b || Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export class Checker {
  private leaderOfTerm = new Map<number, NodeId>();
  private entryAt = new Map<string, { e: Entry; prevTerm: number | undefined }>();
  private committed = new Map<number, CommittedRecord>();
  private maxCommitted = 0;
  private appliedAt = new Map<number, Entry>();
  private lastApplied = new Map<NodeId, number>();
  private lastCommitSeen = new Map<NodeId, number>();
  checks = 0;

  fail(msg: string): never {
    throw new SimViolation(msg);
  }

  /** Election safety; and leader completeness when `id` just became leader. */
  onLeader(id: NodeId, term: number, log: RaftLog): void {
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== id) this.fail(`election safety: term ${term} has two leaders ${prev} and ${id}`);
    if (prev === id) return;
    this.leaderOfTerm.set(term, id);
    this.checks++;
    const lo = log.firstIndex();
    for (let i = lo; i <= this.maxCommitted; i++) {
      const rec = this.committed.get(i);
      if (rec === undefined || rec.observedAtTerm >= term) continue;
      const t = log.term(i);
      if (t !== rec.term) {
        this.fail(`leader completeness: leader ${id} of term ${term} has term ${t} at ${i}, committed entry has term ${rec.term}`);
      }
    }
  }

  /**
   * Records entries newly observed committed at node id (whose current term is `term`). When the
   * node is leader, also checks Raft's commit rule (section 5.4.2): a leader advances its commit
   * index only to an entry of its own term, never by counting replicas of an older entry.
   */
  onCommit(id: NodeId, term: number, log: RaftLog, isLeader: boolean): void {
    const from = this.lastCommitSeen.get(id) ?? 0;
    const to = log.committed;
    if (to <= from) return;
    if (isLeader) {
      const t = log.term(to);
      if (t !== undefined && t !== term) this.fail(`commit rule: leader ${id} of term ${term} advanced commit to ${to} whose entry has term ${t}`);
    }
    this.lastCommitSeen.set(id, to);
    for (let i = Math.max(from + 1, log.firstIndex()); i <= to; i++) {
      const t = log.term(i);
      if (t === undefined) continue;
      const rec = this.committed.get(i);
      if (rec === undefined) {
        this.committed.set(i, { term: t, observedAtTerm: term });
      } else {
        if (rec.term !== t) this.fail(`commit safety: node ${id} committed term ${t} at ${i}, another node committed term ${rec.term}`);
        if (term < rec.observedAtTerm) rec.observedAtTerm = term;
      }
    }
    if (to > this.maxCommitted) this.maxCommitted = to;
  }

  /** A node restarted or installed a snapshot: its commit/apply positions restart from `index`. */
  onReset(id: NodeId, commit: number, applied: number): void {
    this.lastCommitSeen.set(id, commit);
    this.lastApplied.set(id, applied);
  }

  /** Log matching, on every durable append. prevTerm is the node's term at entries[0].index - 1. */
  onPersist(id: NodeId, entries: Entry[], termOf: (i: number) => number | undefined): void {
    for (const e of entries) {
      const key = `${e.index}/${e.term}`;
      const prevTerm = termOf(e.index - 1);
      const rec = this.entryAt.get(key);
      if (rec === undefined) {
        this.entryAt.set(key, { e, prevTerm });
        continue;
      }
      if (rec.e.type !== e.type || !sameBytes(rec.e.data, e.data)) {
        this.fail(`log matching: node ${id} has a different entry at ${key}`);
      }
      if (rec.prevTerm !== undefined && prevTerm !== undefined && rec.prevTerm !== prevTerm) {
        this.fail(`log matching: node ${id} has term ${prevTerm} before ${key}, another log has ${rec.prevTerm}`);
      }
    }
  }

  /** State machine safety. */
  onApply(id: NodeId, e: Entry): void {
    const last = this.lastApplied.get(id) ?? 0;
    if (e.index !== last + 1) this.fail(`node ${id} applied ${e.index} after ${last}: applies must be contiguous`);
    this.lastApplied.set(id, e.index);
    const prev = this.appliedAt.get(e.index);
    if (prev === undefined) {
      this.appliedAt.set(e.index, e);
      return;
    }
    if (prev.term !== e.term || prev.type !== e.type || !sameBytes(prev.data, e.data)) {
      this.fail(`state machine safety: node ${id} applied ${e.term}/${e.index}, another node applied ${prev.term}/${prev.index}`);
    }
  }

  /** A ReadIndex answer must cover every write acknowledged before the read began. */
  onReadState(id: NodeId, readId: number, index: number, mustCover: number): void {
    this.checks++;
    if (index < mustCover) {
      this.fail(`stale read: read ${readId} at node ${id} got read index ${index}, but a write at ${mustCover} was acknowledged before it started`);
    }
  }
}
